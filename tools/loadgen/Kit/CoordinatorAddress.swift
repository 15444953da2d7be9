import Foundation
import PersistRPC

/// The coordinator's address as the command line gives it, in the same forms `txnctl`
/// takes: `host:port`, `[ipv6]:port` or `unix:/path/to/socket`.
public enum CoordinatorAddress {
    public static let defaultAddress = "127.0.0.1:7300"

    public static func parse(_ text: String) throws(LoadGenError) -> RPCEndpoint {
        do {
            return try RPCEndpoint(parsing: text)
        } catch {
            throw .usage("--coordinator \(text): \(error.reason)")
        }
    }

    /// The token in a token file, without surrounding whitespace.
    public static func readToken(path: String) throws(LoadGenError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadGenError.usage("--token-file: cannot read \(path)")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw LoadGenError.usage("--token-file: \(path) is empty") }
        return Array(text.utf8)
    }
}
