import PersistRPC

/// Where the coordinator listens, as `txnctl` users write it.
enum CoordinatorAddress {
    static let defaultAddress = "127.0.0.1:7300"
    static let environmentVariable = "TXNCTL_COORDINATOR"

    /// Parses `host:port`, `[ipv6]:port` or `unix:/path/to/socket`.
    static func parse(_ text: String) throws(UsageError) -> RPCEndpoint {
        do {
            return try RPCEndpoint(parsing: text)
        } catch {
            throw UsageError("coordinator \(error)")
        }
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
