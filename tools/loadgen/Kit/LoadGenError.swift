/// Why a load generator run could not go on. Transaction errors are never thrown as
/// these: they are outcomes, recorded and counted.
public enum LoadGenError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The flags make no sense (exit status 2).
    case usage(String)
    /// The coordinator could not be reached, or kept refusing, for the whole setup time
    /// (exit status 4).
    case setupFailed(String)
    /// The bank's shards already hold a state this run cannot continue from.
    case bankStateMismatch(String)
    /// The history or summary could not be written.
    case output(String)

    public var description: String {
        switch self {
        case .usage(let m): m
        case .setupFailed(let m): "setup failed: \(m)"
        case .bankStateMismatch(let m): "bank state mismatch: \(m)"
        case .output(let m): m
        }
    }
}
