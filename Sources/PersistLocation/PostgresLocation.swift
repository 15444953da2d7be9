import Foundation

/// A PostgreSQL (or CockroachDB) database that holds the consensus table, parsed from a
/// `postgres://` location URL.
///
/// The URL never carries a password: it ends up in command lines, logs and process
/// listings. The password comes from `password_file` or the `PGPASSWORD` environment
/// variable when the location is opened (PersistPostgres); this type only says where.
public struct PostgresLocation: Hashable, Sendable {
    /// How to reach the server.
    public enum Endpoint: Hashable, Sendable {
        /// TCP to `host:port` (a name, an IPv4 or an IPv6 address).
        case tcp(host: String, port: Int)
        /// The server's Unix socket in `directory`, named after `port` as PostgreSQL
        /// names it: `<directory>/.s.PGSQL.<port>`.
        case unixSocket(directory: String, port: Int)
    }

    /// Whether and how TLS is used, with libpq's names and meanings.
    public enum TLSMode: String, Hashable, Sendable, CaseIterable {
        /// Never.
        case disable
        /// When the server offers it, without checking its certificate (the default).
        case prefer
        /// Always, without checking the certificate.
        case require
        /// Always, with the certificate checked against the system's trust roots (and
        /// those of `trustRootsFile`) and the host name.
        case verifyFull = "verify-full"
    }

    public var endpoint: Endpoint
    public var user: String
    public var database: String
    /// An absolute path to a file whose first line is the password, or nil to use
    /// `PGPASSWORD` (or no password at all).
    public var passwordFile: String?
    /// The most connections the client opens, or nil for its default.
    public var maxConnections: Int?
    public var tls: TLSMode
    /// An absolute path to a PEM file of CA certificates trusted besides the system's
    /// roots (`sslrootcert=`, for a private CA), or nil. Only set with `verifyFull` on a
    /// TCP endpoint; the file is read when the location is opened.
    public var trustRootsFile: String?

    public init(
        endpoint: Endpoint, user: String, database: String, passwordFile: String? = nil, maxConnections: Int? = nil,
        tls: TLSMode = .prefer, trustRootsFile: String? = nil
    ) {
        self.endpoint = endpoint
        self.user = user
        self.database = database
        self.passwordFile = passwordFile
        self.maxConnections = maxConnections
        self.tls = tls
        self.trustRootsFile = trustRootsFile
    }

    /// PostgreSQL's port when the URL names none.
    public static let defaultPort = 5432

    /// The most `max_connections` accepted (a guard against typos, far above any sane pool).
    public static let maxConnectionsLimit = 1000

    /// The socket file of a `unixSocket` endpoint, nil for TCP.
    public var socketPath: String? {
        guard case .unixSocket(let directory, let port) = endpoint else { return nil }
        return (directory.hasSuffix("/") ? String(directory.dropLast()) : directory) + "/.s.PGSQL.\(port)"
    }

    /// `text` with the password of a `user:password@` part, and the value of a `password=`
    /// parameter, replaced by `***`, so error messages and logs never repeat a secret.
    /// Text without either comes back unchanged.
    public static func redactingPassword(_ text: String) -> String {
        // Split off the fragment and the query; the rest is scheme, authority and path.
        var rest = Substring(text)
        var fragment: Substring?
        if let hash = rest.firstIndex(of: "#") {
            fragment = rest[rest.index(after: hash)...]
            rest = rest[..<hash]
        }
        var query: Substring?
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var head = String(rest)
        // user:password@ in the authority (between "://" and the next "/").
        if let schemeEnd = head.range(of: "://") {
            let authority = head[schemeEnd.upperBound...].prefix { $0 != "/" }
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                head = String(head[..<head.index(after: colon)]) + "***" + String(head[at...])
            }
        }
        if let query {
            let items = query.split(separator: "&", omittingEmptySubsequences: false).map { item -> String in
                let name = item.prefix { $0 != "=" }
                return name.lowercased() == "password" && name.count < item.count ? "\(name)=***" : String(item)
            }
            head += "?" + items.joined(separator: "&")
        }
        if let fragment { head += "#" + fragment }
        return head
    }
}

extension LocationURL {
    /// The query parameters a `postgres://` URL accepts.
    static let postgresParameters = ["password_file", "host", "max_connections", "sslmode", "sslrootcert"]

    /// Parses `postgres://user@host[:port]/database[?...]`; `c` are `text`'s components.
    static func postgres(_ text: String, _ c: URLComponents) throws(LocationParseError) -> PostgresLocation {
        let shown = PostgresLocation.redactingPassword(text)
        func refuse(_ reason: String) -> LocationParseError { LocationParseError(text: shown, reason: reason) }

        let queryItems = c.queryItems ?? []
        // Redaction changes the text exactly when it holds a password (even an empty one).
        if c.password != nil || shown != text || queryItems.contains(where: { $0.name.lowercased() == "password" }) {
            throw refuse(
                "a password in the URL is refused: URLs end up in command lines, logs and process listings. "
                    + "Put the password in a file readable only by this account and add ?password_file=/path/to/file, "
                    + "or set the PGPASSWORD environment variable")
        }
        guard let user = c.user, !user.isEmpty else {
            throw refuse("missing user name (postgres://user@host:port/database)")
        }
        let database = String(c.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw refuse("missing or invalid database name after the host (postgres://user@host:port/database)")
        }
        guard c.fragment == nil else { throw refuse("unexpected fragment #\(c.fragment ?? "")") }
        var port = PostgresLocation.defaultPort
        if let p = c.port {
            guard (1...65535).contains(p) else { throw refuse("invalid port \(p)") }
            port = p
        }

        var passwordFile: String?
        var socketDirectory: String?
        var maxConnections: Int?
        var tls = PostgresLocation.TLSMode.prefer
        var trustRootsFile: String?
        var seen: Set<String> = []
        for item in queryItems {
            guard seen.insert(item.name).inserted else { throw refuse("parameter \"\(item.name)\" given twice") }
            let value = item.value ?? ""
            switch item.name {
            case "password_file":
                guard value.hasPrefix("/") else { throw refuse("password_file must be an absolute path") }
                passwordFile = value
            case "host":
                guard value.hasPrefix("/") else {
                    throw refuse("host= takes the absolute path of the server's socket directory (for a TCP host, put it in the URL)")
                }
                socketDirectory = value
            case "max_connections":
                guard let n = Int(value), (1...PostgresLocation.maxConnectionsLimit).contains(n) else {
                    throw refuse("max_connections must be a number from 1 to \(PostgresLocation.maxConnectionsLimit)")
                }
                maxConnections = n
            case "sslmode":
                guard let mode = PostgresLocation.TLSMode(rawValue: value) else {
                    throw refuse(
                        "sslmode must be one of \(PostgresLocation.TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                tls = mode
            case "sslrootcert":
                guard value.hasPrefix("/") else {
                    throw refuse("sslrootcert must be an absolute path to a PEM file of CA certificates")
                }
                trustRootsFile = value
            default:
                throw refuse(
                    "unknown parameter \"\(item.name)\" (accepted: \(postgresParameters.joined(separator: ", ")))")
            }
        }

        var host = c.host ?? ""
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let endpoint: PostgresLocation.Endpoint
        if let socketDirectory {
            guard host.isEmpty else {
                throw refuse("give either a host in the URL or host=/socket/dir, not both (postgres://user@/database?host=/run/postgresql)")
            }
            guard trustRootsFile == nil else { throw refuse("sslrootcert does not apply to a Unix socket (no TLS there)") }
            guard tls == .prefer || tls == .disable else { throw refuse("sslmode=\(tls.rawValue) does not apply to a Unix socket") }
            endpoint = .unixSocket(directory: socketDirectory, port: port)
            // sockaddr_un holds 108 bytes including the terminating zero.
            let path = PostgresLocation(endpoint: endpoint, user: user, database: database).socketPath ?? ""
            guard path.utf8.count < 108 else {
                throw refuse("the socket path \(path) is longer than a Unix socket address can hold (107 bytes)")
            }
        } else {
            guard !host.isEmpty else { throw refuse("missing host (postgres://user@host:port/database, or host=/socket/dir)") }
            // Other modes check no certificate, so extra roots would be silently unused.
            guard trustRootsFile == nil || tls == .verifyFull else {
                throw refuse(
                    "sslrootcert only applies with sslmode=verify-full (sslmode=\(tls.rawValue) does not check the server's certificate)")
            }
            endpoint = .tcp(host: host, port: port)
        }
        return PostgresLocation(
            endpoint: endpoint, user: user, database: database, passwordFile: passwordFile, maxConnections: maxConnections,
            tls: tls, trustRootsFile: trustRootsFile)
    }
}
