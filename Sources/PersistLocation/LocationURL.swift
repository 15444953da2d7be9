import Foundation

/// Where a blob store lives, parsed from a location URL.
public enum BlobLocation: Hashable, Sendable {
    /// `mem://` (or `mem://name` to tell several in-memory stores apart).
    case memory(name: String)
    /// `file:///absolute/dir`: a `FileBlob` rooted there.
    case file(path: String)
    /// `s3://bucket[/prefix]?endpoint=http://host:port&region=...&path_style=true`; the
    /// endpoint may also be `unix:///path.sock`.
    case s3(S3Location)
}

/// Where a consensus store lives, parsed from a location URL.
public enum ConsensusLocation: Hashable, Sendable {
    /// `mem://` (or `mem://name`).
    case memory(name: String)
    /// `log:///absolute/dir`: a `LogConsensus` in that directory.
    case log(path: String)
    /// `consensus://host:port[?token_file=/path]`: a consensus server over TCP.
    case remote(host: String, port: Int, tokenFile: String?)
    /// `consensus+unix:///absolute/path.sock[?token_file=/path]`: a consensus server over
    /// a Unix socket.
    case remoteUnix(path: String, tokenFile: String?)
    /// `postgres://user@host:port/db[?password_file=/path&max_connections=N&sslmode=...]`
    /// (or `postgres://user@/db?host=/socket/dir`): a PostgreSQL or CockroachDB database
    /// holding the consensus table. Opened by PersistPostgres, not by this module.
    case postgres(PostgresLocation)
}

/// An S3 bucket (and optional key prefix) and how to reach it.
public struct S3Location: Hashable, Sendable {
    public var bucket: String
    /// Prepended to every key (no leading slash; empty for none).
    public var prefix: String
    /// A custom endpoint (`http://127.0.0.1:9000`, or `unix:///run/blob.sock` for a server on
    /// a Unix socket), or nil for AWS's regional endpoint.
    public var endpoint: String?
    public var region: String?
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-host style.
    public var pathStyle: Bool

    public init(bucket: String, prefix: String = "", endpoint: String? = nil, region: String? = nil, pathStyle: Bool = false) {
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.pathStyle = pathStyle
    }
}

/// Why a location URL was refused.
public struct LocationParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public let text: String
    public let reason: String

    public var description: String { "invalid location \"\(text)\": \(reason)" }
}

/// Parsing of the location URLs every tool and server accepts (one place, one syntax).
public enum LocationURL {
    public static func blob(_ text: String) throws(LocationParseError) -> BlobLocation {
        let (scheme, c) = try components(text)
        switch scheme {
        case "mem": return .memory(name: c.host ?? "")
        case "file": return .file(path: try localPath(text, c))
        case "s3": return .s3(try s3(text, c))
        default:
            throw LocationParseError(text: text, reason: "unknown blob scheme \"\(scheme)\" (use mem://, file:///dir or s3://bucket)")
        }
    }

    public static func consensus(_ text: String) throws(LocationParseError) -> ConsensusLocation {
        let (scheme, c) = try components(text)
        switch scheme {
        case "mem": return .memory(name: c.host ?? "")
        case "log": return .log(path: try localPath(text, c))
        case "consensus":
            guard let host = c.host, !host.isEmpty else { throw LocationParseError(text: text, reason: "missing host") }
            guard let port = c.port, (1...65535).contains(port) else {
                throw LocationParseError(text: text, reason: "missing or invalid port")
            }
            guard c.path.isEmpty || c.path == "/" else { throw LocationParseError(text: text, reason: "unexpected path \(c.path)") }
            return .remote(host: host, port: port, tokenFile: try tokenFile(text, c))
        case "consensus+unix":
            var bare = c
            bare.query = nil
            return .remoteUnix(path: try localPath(text, bare), tokenFile: try tokenFile(text, c))
        case "postgres", "postgresql":
            return .postgres(try postgres(text, c))
        default:
            throw LocationParseError(
                text: text,
                reason: "unknown consensus scheme \"\(scheme)\" (use mem://, log:///dir, consensus://host:port, "
                    + "consensus+unix:///path or postgres://user@host:port/db)")
        }
    }

    /// The only query parameter a consensus server URL takes: where its token is.
    static func tokenFile(_ text: String, _ c: URLComponents) throws(LocationParseError) -> String? {
        var tokenFile: String?
        for item in c.queryItems ?? [] {
            guard item.name == "token_file" else {
                throw LocationParseError(text: text, reason: "unknown parameter \"\(item.name)\" (only token_file is accepted)")
            }
            guard let v = item.value, v.hasPrefix("/") else {
                throw LocationParseError(text: text, reason: "token_file must be an absolute path")
            }
            tokenFile = v
        }
        return tokenFile
    }

    static func components(_ text: String) throws(LocationParseError) -> (String, URLComponents) {
        guard let c = URLComponents(string: text), let scheme = c.scheme?.lowercased() else {
            // The text may be a mistyped database URL with a password in it.
            throw LocationParseError(text: PostgresLocation.redactingPassword(text), reason: "not a URL")
        }
        return (scheme, c)
    }

    /// `scheme:///absolute/path`: no host, an absolute path, no query.
    static func localPath(_ text: String, _ c: URLComponents) throws(LocationParseError) -> String {
        guard c.host?.isEmpty ?? true else {
            throw LocationParseError(text: text, reason: "expected an absolute path after three slashes, found host \"\(c.host ?? "")\"")
        }
        guard c.path.hasPrefix("/"), c.path.count > 1 else { throw LocationParseError(text: text, reason: "missing absolute path") }
        guard c.query == nil else { throw LocationParseError(text: text, reason: "no query parameters are accepted") }
        return c.path
    }

    static func s3(_ text: String, _ c: URLComponents) throws(LocationParseError) -> S3Location {
        guard let bucket = c.host, !bucket.isEmpty else { throw LocationParseError(text: text, reason: "missing bucket") }
        var location = S3Location(
            bucket: bucket, prefix: String(c.path.drop { $0 == "/" }), endpoint: nil, region: nil, pathStyle: false)
        for item in c.queryItems ?? [] {
            switch item.name {
            case "endpoint":
                guard let e = item.value, let u = URLComponents(string: e) else {
                    throw LocationParseError(text: text, reason: "endpoint must be an http(s) URL or unix:///path.sock")
                }
                switch u.scheme?.lowercased() {
                case "http", "https":
                    guard let host = u.host, !host.isEmpty else { throw LocationParseError(text: text, reason: "endpoint \(e) has no host") }
                case "unix":
                    // An S3 endpoint on a Unix socket: no host, an absolute socket path.
                    guard u.host?.isEmpty ?? true, u.path.hasPrefix("/"), u.path.count > 1, u.query == nil else {
                        throw LocationParseError(text: text, reason: "a unix endpoint must be unix:///absolute/path.sock")
                    }
                default:
                    throw LocationParseError(text: text, reason: "endpoint must be an http(s) URL or unix:///path.sock")
                }
                location.endpoint = e
                location.pathStyle = true  // custom endpoints default to path style
            case "region":
                location.region = item.value
            case "path_style":
                guard let v = item.value, v == "true" || v == "false" else {
                    throw LocationParseError(text: text, reason: "path_style must be true or false")
                }
                location.pathStyle = v == "true"
            default:
                throw LocationParseError(text: text, reason: "unknown parameter \"\(item.name)\"")
            }
        }
        return location
    }
}
