/// Why an address could not be read as an `RPCEndpoint`.
public struct EndpointParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public var text: String
    public var reason: String
    public var description: String { "address \(text): \(reason)" }
}

extension RPCEndpoint {
    /// Reads an address as operators write it: `host:port`, `[ipv6]:port` or
    /// `unix:/path/to/socket` (the forms `description` prints).
    public init(parsing text: String) throws(EndpointParseError) {
        func bad(_ reason: String) -> EndpointParseError { EndpointParseError(text: text, reason: reason) }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard !path.isEmpty else { throw bad("the socket path is empty") }
            self = .unix(path: path)
            return
        }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw bad("expected [ipv6]:port")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw bad("expected host:port or unix:/path") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else { throw bad("write an IPv6 host in brackets, [::1]:7300") }
        }
        guard !host.isEmpty else { throw bad("the host is empty") }
        guard let port = Int(portText), (1...65535).contains(port) else { throw bad("the port must be 1-65535") }
        self = .tcp(host: String(host), port: port)
    }
}
