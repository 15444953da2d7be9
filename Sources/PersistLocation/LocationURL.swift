import Foundation

/// Where a blob store lives, parsed from a location URL.
public enum BlobLocation: Hashable, Sendable {
    /// `mem://` (or `mem://name` to tell several in-memory stores apart).
    case memory(name: String)
    /// `file:///absolute/dir`: a `FileBlob` rooted there.
    case file(path: String)
    /// `s3://bucket[/prefix]?endpoint=https://host:port&region=...&path_style=true`
    /// (parameters: see `S3Location`); the endpoint may also be `http://` or
    /// `unix:///path.sock`, and without one it is AWS's regional HTTPS endpoint.
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
    /// `postgres://user@host:port/db[?password_file=/path&max_connections=N&sslmode=...&sslrootcert=/ca.pem]`
    /// (or `postgres://user@/db?host=/socket/dir`): a PostgreSQL or CockroachDB database
    /// holding the consensus table. Opened by PersistPostgres, not by this module.
    case postgres(PostgresLocation)
}

/// An S3 bucket (and optional key prefix), how to reach it and where its key pair is.
///
/// The URL parameters: `endpoint=` (`https://host[:port]`, `http://host[:port]` or
/// `unix:///path.sock`; none means AWS's regional endpoint over HTTPS), `region=`
/// (lower-case letters, digits and `-`, as AWS's region names are), `path_style=true|false`
/// (custom endpoints default to path style, AWS's own to virtual-host style unless the
/// bucket name has a `.`, which AWS's certificates do not cover there), `credentials_file=`
/// and `profile=` (an AWS shared-credentials file and its profile; how they rank against
/// the AWS environment variables is documented on `S3CredentialSource` in PersistS3),
/// `ca_file=` (a PEM file of extra trusted roots for HTTPS) and `tls_verify=false` (no
/// certificate check: unsafe, for tests only).
public struct S3Location: Hashable, Sendable {
    public var bucket: String
    /// Prepended to every key (no leading slash; empty for none).
    public var prefix: String
    /// A custom endpoint (`https://s3.example.com`, `http://127.0.0.1:9000`, or
    /// `unix:///run/blob.sock` for a server on a Unix socket), or nil for AWS's regional
    /// endpoint.
    public var endpoint: String?
    public var region: String?
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-host style.
    public var pathStyle: Bool
    /// `credentials_file=`: an absolute path to an AWS shared-credentials file (INI) to take
    /// the key pair from, or nil.
    public var credentialsFile: String?
    /// `profile=`: the section of the credentials file to use, or nil for the default.
    public var profile: String?
    /// `ca_file=`: an absolute path to a PEM file whose certificates are trusted, besides
    /// the system's roots, for an HTTPS endpoint.
    public var caFile: String?
    /// `tls_verify=false` turns off the certificate and host name check of an HTTPS
    /// endpoint. Unsafe (anyone on the path can read and alter the traffic); for tests.
    public var tlsVerify: Bool

    public init(
        bucket: String, prefix: String = "", endpoint: String? = nil, region: String? = nil, pathStyle: Bool = false,
        credentialsFile: String? = nil, profile: String? = nil, caFile: String? = nil, tlsVerify: Bool = true
    ) {
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.pathStyle = pathStyle
        self.credentialsFile = credentialsFile
        self.profile = profile
        self.caFile = caFile
        self.tlsVerify = tlsVerify
    }

    /// Whether requests go over TLS: an `https://` endpoint, or none (AWS's own).
    public var usesTLS: Bool {
        guard let endpoint else { return true }
        return URLComponents(string: endpoint)?.scheme?.lowercased() == "https"
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
        var seen: Set<String> = []
        var pathStyle: Bool?
        for item in c.queryItems ?? [] {
            guard seen.insert(item.name).inserted else {
                throw LocationParseError(text: text, reason: "parameter \"\(item.name)\" is given twice")
            }
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
            case "region":
                // It goes into host names and signatures: nothing else belongs there.
                guard let v = item.value, isRegionName(v) else {
                    throw LocationParseError(text: text, reason: "region must be lower-case letters, digits and - (like eu-west-1)")
                }
                location.region = v
            case "path_style":
                guard let v = item.value, v == "true" || v == "false" else {
                    throw LocationParseError(text: text, reason: "path_style must be true or false")
                }
                pathStyle = v == "true"
            case "credentials_file":
                location.credentialsFile = try absolutePath(text, item)
            case "profile":
                guard let v = item.value, !v.isEmpty, !v.contains(where: { $0 == "[" || $0 == "]" || $0.isNewline }) else {
                    throw LocationParseError(text: text, reason: "profile must be a non-empty profile name")
                }
                location.profile = v
            case "ca_file":
                location.caFile = try absolutePath(text, item)
            case "tls_verify":
                guard let v = item.value, v == "true" || v == "false" else {
                    throw LocationParseError(text: text, reason: "tls_verify must be true or false")
                }
                location.tlsVerify = v == "true"
            default:
                throw LocationParseError(text: text, reason: "unknown parameter \"\(item.name)\"")
            }
        }
        // Custom endpoints default to path style, AWS's own to virtual-host style, except
        // for a bucket name with dots: AWS's wildcard certificate for
        // *.s3.REGION.amazonaws.com covers a single label, so `a.b.s3...` would not verify
        // (the AWS SDKs switch to path style for such names too).
        location.pathStyle = pathStyle ?? (location.endpoint != nil || location.bucket.contains("."))
        if !location.usesTLS, location.caFile != nil || !location.tlsVerify {
            throw LocationParseError(text: text, reason: "ca_file and tls_verify apply to https endpoints only")
        }
        if location.caFile != nil, !location.tlsVerify {
            throw LocationParseError(text: text, reason: "ca_file has no use with tls_verify=false (nothing is verified)")
        }
        return location
    }

    /// Whether `text` has the form of a region name: one or more lower-case ASCII letters,
    /// digits and `-`.
    static func isRegionName(_ text: String) -> Bool {
        let letters = UInt8(ascii: "a")...UInt8(ascii: "z")
        let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
        return !text.isEmpty && text.utf8.allSatisfy { letters.contains($0) || digits.contains($0) || $0 == UInt8(ascii: "-") }
    }

    /// A parameter whose value must be an absolute file path.
    static func absolutePath(_ text: String, _ item: URLQueryItem) throws(LocationParseError) -> String {
        guard let v = item.value, v.hasPrefix("/"), v.count > 1 else {
            throw LocationParseError(text: text, reason: "\(item.name) must be an absolute path")
        }
        return v
    }
}
