import PersistRPC

/// Where the coordinator listens, as `txnctl` users write it.
enum CoordinatorAddress {
    static let defaultAddress = "127.0.0.1:7300"
    static let environmentVariable = "TXNCTL_COORDINATOR"

    /// Parses `host:port`, `[ipv6]:port` or `unix:/path/to/socket`.
    static func parse(_ text: String) throws(UsageError) -> RPCEndpoint {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard !path.isEmpty else { throw UsageError("coordinator address \(text): the socket path is empty") }
            return .unix(path: path)
        }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw UsageError("coordinator address \(text): expected [ipv6]:port")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw UsageError("coordinator address \(text): expected host:port or unix:/path")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else {
                throw UsageError("coordinator address \(text): write an IPv6 host in brackets, [::1]:7300")
            }
        }
        guard !host.isEmpty else { throw UsageError("coordinator address \(text): the host is empty") }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw UsageError("coordinator address \(text): the port must be 1-65535")
        }
        return .tcp(host: String(host), port: port)
    }

    /// The address to use: the flag, else the environment variable, else the default.
    static func resolve(flag: String?, environment: [String: String]) throws(UsageError) -> RPCEndpoint {
        if let flag { return try parse(flag) }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty {
            do {
                return try parse(fromEnvironment)
            } catch {
                throw UsageError("\(environmentVariable): \(error.message)")
            }
        }
        return try parse(defaultAddress)
    }
}
