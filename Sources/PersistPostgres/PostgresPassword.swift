import Foundation
import PersistCore

/// Where a `postgres://` location's password comes from: never the URL.
public enum PostgresPassword {
    /// The environment variable read when the URL names no password file (libpq's name).
    public static let environmentVariable = "PGPASSWORD"

    /// The password for a location: the first line of `passwordFile` when one is given
    /// (without its line ending), else `PGPASSWORD` from `environment` when set, else nil
    /// (for servers that trust the connection or use another method).
    ///
    /// - Throws: a determinate `invalidArgument` error when the file cannot be read or its
    ///   first line is empty.
    public static func resolve(
        passwordFile: String?, environment: [String: String],
        readFile: (String) -> Data? = { FileManager.default.contents(atPath: $0) }
    ) throws(StorageError) -> String? {
        guard let passwordFile else { return environment[environmentVariable] }
        guard let data = readFile(passwordFile) else {
            throw .determinate(.invalidArgument, "cannot read the PostgreSQL password file \(passwordFile)")
        }
        // By bytes: Swift reads "\r\n" as one character, which a split on "\n" would miss.
        var line = data.prefix { $0 != 0x0A }
        if line.last == 0x0D { line = line.dropLast() }
        let password = String(decoding: line, as: UTF8.self)
        guard !password.isEmpty else {
            throw .determinate(.invalidArgument, "the PostgreSQL password file \(passwordFile) is empty")
        }
        return password
    }
}
