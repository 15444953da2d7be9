import Foundation
import PersistS3

/// Everything a `BlobStoreService` needs to know, as the `blob-store` flags set it.
public struct BlobStoreConfiguration: Sendable {
    /// Objects live under `<dataDirectory>/buckets/<bucket>`.
    public var dataDirectory: String
    /// Where the S3 API is served; at least one address.
    public var listen: [ListenAddress]
    /// Buckets created at start (buckets already in the data directory are served too).
    public var buckets: [String]
    /// Access key ID -> secret access key. Requests must be signed with one of these.
    public var credentials: [String: String]
    /// Whether unsigned requests are served (signed ones are still verified).
    public var allowAnonymous: Bool
    /// The region signatures must be scoped to.
    public var region: String
    /// The largest object a PutObject may store, in bytes.
    public var maxObjectSize: Int
    /// How far a request's signing time may be from the server's clock.
    public var maxClockSkew: Duration
    /// A connection that sends nothing for this long while the server waits for it (a
    /// new request or more of the current one) is closed. Nil: never.
    public var idleTimeout: Duration?

    /// 1 GiB: large enough for any batch part, small enough to buffer (S3's own limit for
    /// a single PUT is 5 GiB).
    public static let defaultMaxObjectSize = 1 << 30

    /// A configuration with S3's defaults where a flag has one; see the properties.
    public init(
        dataDirectory: String, listen: [ListenAddress] = [.tcp(host: "127.0.0.1", port: 9000)], buckets: [String] = [],
        credentials: [String: String] = [:], allowAnonymous: Bool = false, region: String = "us-east-1",
        maxObjectSize: Int = defaultMaxObjectSize, maxClockSkew: Duration = .seconds(900), idleTimeout: Duration? = .seconds(120)
    ) {
        self.dataDirectory = dataDirectory
        self.listen = listen
        self.buckets = buckets
        self.credentials = credentials
        self.allowAnonymous = allowAnonymous
        self.region = region
        self.maxObjectSize = maxObjectSize
        self.maxClockSkew = maxClockSkew
        self.idleTimeout = idleTimeout
    }
}

/// A credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line, separated by
/// spaces or tabs. Blank lines and lines starting with `#` are ignored.
public enum BlobStoreCredentialsFile {
    /// Why a credentials file was refused.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        /// The 1-based line number (0 when the file as a whole is refused).
        public var line: Int
        /// What is wrong with the line.
        public var reason: String
        public var description: String { "credentials file line \(line): \(reason)" }
    }

    /// Parses the file's text into access key ID -> secret.
    public static func parse(_ text: String) throws(ParseError) -> [String: String] {
        var result: [String: String] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2 else {
                throw ParseError(line: index + 1, reason: "expected \"ACCESS_KEY_ID SECRET_ACCESS_KEY\", found \(fields.count) fields")
            }
            let id = String(fields[0])
            guard result[id] == nil else { throw ParseError(line: index + 1, reason: "access key \(id) is listed twice") }
            result[id] = String(fields[1])
        }
        return result
    }

    /// The access keys to accept: the credentials file's when `file` is given (it must
    /// list at least one), else the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` pair from
    /// `environment`, else none.
    public static func load(file: String?, environment: [String: String]) throws -> [String: String] {
        if let file {
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw ParseError(line: 0, reason: "cannot read \(file): \(error.localizedDescription)")
            }
            let keys = try parse(text)
            guard !keys.isEmpty else { throw ParseError(line: 0, reason: "\(file) lists no keys") }
            return keys
        }
        if let pair = S3Credentials.fromEnvironment(environment) { return [pair.accessKeyID: pair.secretAccessKey] }
        return [:]
    }
}
