/// A backend opened from a location URL, with the way to release it.
public struct OpenedBackend<Backend: Sendable>: Sendable {
    public let backend: Backend
    /// What the URL named, for logs (`log:///var/lib/x`, `consensus://h:7100`).
    public let location: String
    /// Flushes and releases the backend (closes a log, a connection pool).
    public let close: @Sendable () async -> Void

    public init(backend: Backend, location: String, close: @escaping @Sendable () async -> Void) {
        self.backend = backend
        self.location = location
        self.close = close
    }
}
