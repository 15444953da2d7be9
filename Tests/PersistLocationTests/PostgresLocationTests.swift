import PersistLocation
import Testing

/// `postgres://` consensus locations: what parses to what, what is refused and why, and
/// that no password ever comes back in an error.
@Suite struct PostgresLocationTests {
    struct NotPostgres: Error {}

    static func parse(_ text: String) throws -> PostgresLocation {
        guard case .postgres(let location) = try LocationURL.consensus(text) else { throw NotPostgres() }
        return location
    }

    @Test func tcpLocations() throws {
        #expect(
            try Self.parse("postgres://app@db.internal:6432/txn")
                == PostgresLocation(endpoint: .tcp(host: "db.internal", port: 6432), user: "app", database: "txn"))
        #expect(
            try Self.parse("postgresql://app@127.0.0.1/txn")
                == PostgresLocation(endpoint: .tcp(host: "127.0.0.1", port: 5432), user: "app", database: "txn"))
        #expect(
            try Self.parse("postgres://app@[::1]:5433/txn").endpoint == .tcp(host: "::1", port: 5433))
        #expect(
            try Self.parse(
                "postgres://app@h:26257/defaultdb?password_file=/etc/txn/pg&max_connections=32&sslmode=verify-full")
                == PostgresLocation(
                    endpoint: .tcp(host: "h", port: 26257), user: "app", database: "defaultdb", passwordFile: "/etc/txn/pg",
                    maxConnections: 32, tls: .verifyFull))
        #expect(try Self.parse("postgres://app@h/db?sslmode=disable").tls == .disable)
        #expect(try Self.parse("postgres://app@h/db").tls == .prefer)
        // Percent-encoded names are decoded.
        #expect(try Self.parse("postgres://app%40corp@h/my%20db").user == "app@corp")
        #expect(try Self.parse("postgres://app%40corp@h/my%20db").database == "my db")
    }

    @Test func trustRootsFileGoesWithVerifyFull() throws {
        let l = try Self.parse("postgres://app@db:5432/txn?sslmode=verify-full&sslrootcert=/etc/txn/pg-ca.pem")
        #expect(l == PostgresLocation(
            endpoint: .tcp(host: "db", port: 5432), user: "app", database: "txn", tls: .verifyFull,
            trustRootsFile: "/etc/txn/pg-ca.pem"))
        // In any order.
        #expect(try Self.parse("postgres://app@db/txn?sslrootcert=/ca.pem&sslmode=verify-full").trustRootsFile == "/ca.pem")
        #expect(try Self.parse("postgres://app@db/txn?sslmode=verify-full").trustRootsFile == nil)
    }

    @Test func unixSocketLocations() throws {
        let l = try Self.parse("postgres://app@/txn?host=/var/run/postgresql")
        #expect(l.endpoint == .unixSocket(directory: "/var/run/postgresql", port: 5432))
        #expect(l.socketPath == "/var/run/postgresql/.s.PGSQL.5432")
        let p = try Self.parse("postgres://app@:5433/txn?host=/tmp/sock/")
        #expect(p.socketPath == "/tmp/sock/.s.PGSQL.5433")
        #expect(try Self.parse("postgres://app@h/txn").socketPath == nil)
    }

    @Test(arguments: [
        ("postgres://h:5432/db", "user"),
        ("postgres://@h:5432/db", "user"),
        ("postgres://app@h:5432", "database"),
        ("postgres://app@h:5432/", "database"),
        ("postgres://app@h:5432/a/b", "database"),
        ("postgres://app@/db", "host"),
        ("postgres://app@h:0/db", "port"),
        ("postgres://app@h/db?password_file=relative", "absolute"),
        ("postgres://app@h/db?host=relative/dir", "socket directory"),
        ("postgres://app@h/db?host=/run/pg", "not both"),
        ("postgres://app@h/db?max_connections=0", "max_connections"),
        ("postgres://app@h/db?max_connections=lots", "max_connections"),
        ("postgres://app@h/db?sslmode=sometimes", "sslmode"),
        ("postgres://app@/db?host=/run/pg&sslmode=require", "Unix socket"),
        ("postgres://app@h/db?dbname=x", "unknown parameter"),
        ("postgres://app@h/db?sslmode=disable&sslmode=prefer", "twice"),
        ("postgres://app@h/db?sslmode=verify-full&sslrootcert=ca.pem", "sslrootcert must be an absolute path"),
        ("postgres://app@h/db?sslmode=verify-full&sslrootcert=", "sslrootcert must be an absolute path"),
        ("postgres://app@h/db?sslrootcert=/ca.pem", "only applies with sslmode=verify-full (sslmode=prefer"),
        ("postgres://app@h/db?sslmode=require&sslrootcert=/ca.pem", "only applies with sslmode=verify-full (sslmode=require"),
        ("postgres://app@h/db?sslmode=disable&sslrootcert=/ca.pem", "only applies with sslmode=verify-full"),
        ("postgres://app@/db?host=/run/pg&sslrootcert=/ca.pem", "sslrootcert does not apply to a Unix socket"),
        ("postgres://app@/db?host=/run/pg&sslmode=verify-full&sslrootcert=/ca.pem", "Unix socket"),
        ("postgres://app@h/db?sslmode=verify-full&sslrootcert=/a.pem&sslrootcert=/b.pem", "twice"),
        ("postgres://app@/db?host=/" + String(repeating: "d", count: 100), "longer"),
    ])
    func badLocationsAreRefusedWithTheReason(_ text: String, _ reason: String) {
        #expect {
            try LocationURL.consensus(text)
        } throws: { error in
            let description = (error as? LocationParseError)?.description ?? ""
            return description.contains(reason)
        }
    }

    @Test(arguments: [
        "postgres://app:hunter2@db:5432/txn",
        "postgres://app:hunter2@db/txn?sslmode=disable",
        "postgres://app:@db/txn",
        "postgres://app@db/txn?password=hunter2",
        "postgres://app@db/txn?sslmode=disable&PASSWORD=hunter2",
    ])
    func passwordsInTheURLAreRefusedWithoutRepeatingThem(_ text: String) {
        #expect {
            try LocationURL.consensus(text)
        } throws: { error in
            let description = (error as? LocationParseError)?.description ?? ""
            return !description.contains("hunter2") && description.contains("password_file")
                && description.contains("PGPASSWORD") && description.contains("***")
        }
    }

    @Test func redaction() {
        #expect(PostgresLocation.redactingPassword("postgres://u:p@h:1/d?x=1#f") == "postgres://u:***@h:1/d?x=1#f")
        #expect(PostgresLocation.redactingPassword("postgres://u@h/d?a=1&password=p&b=2") == "postgres://u@h/d?a=1&password=***&b=2")
        #expect(PostgresLocation.redactingPassword("postgres://u@h:5432/d") == "postgres://u@h:5432/d")
        #expect(PostgresLocation.redactingPassword("log:///dir") == "log:///dir")
        #expect(PostgresLocation.redactingPassword("postgres://u:p@h/d?password_file=/x") == "postgres://u:***@h/d?password_file=/x")
        // Even text that is no URL at all.
        #expect(PostgresLocation.redactingPassword("postgres://u:p w@h/d") == "postgres://u:***@h/d")
    }

    @Test func unparsableTextIsRedactedToo() {
        #expect {
            try LocationURL.consensus("postgres://u:sec ret@h/d")
        } throws: { error in
            !"\(error)".contains("sec ret")
        }
    }

    @Test func unknownSchemesMentionPostgres() {
        #expect {
            try LocationURL.consensus("mysql://u@h/d")
        } throws: { error in
            "\(error)".contains("postgres://")
        }
    }
}
