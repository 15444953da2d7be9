import Foundation
import NIOCore
import NIOPosix
import PersistConformance
import PersistCore
import PersistLocation
import PersistServices
import Synchronization
import Testing

@testable import PersistS3

/// `S3Blob` over HTTPS: against moto serving TLS with a certificate from a test CA (path
/// style, virtual-host style, the CA added with `ca_file=`, verification switched off),
/// and the refusals: a certificate no trusted root issued, one that names another host,
/// a server that does not speak TLS, one that never finishes the handshake, and unusable
/// CA files. Plus the pure parts: endpoints from URLs, the name a certificate must carry.
@Suite struct S3BlobTLSTests {
    /// The names the test server's certificate carries: `localhost` (the endpoint) and
    /// the virtual host of one bucket. Not 127.0.0.1: reaching it by address must fail.
    static let certificateNames = ["localhost", "vhost-bucket.localhost"]

    /// Runs `body` against a moto serving HTTPS with fresh test certificates.
    static func withTLSMoto(_ label: String, _ body: (MotoServer, TestCertificates) async throws -> Void) async throws {
        let directory = BlobStoreTestDirectory("tls-\(label)")
        defer { directory.remove() }
        let certificates = try await TestCertificates.make(in: directory.path, names: certificateNames)
        try await MotoServer.with(label, tls: certificates) { moto in try await body(moto, certificates) }
    }

    /// Sets, gets, lists and deletes one object through `blob`.
    static func roundTrip(_ blob: any Blob, key: String) async throws {
        let value = Array("over TLS: \(key)".utf8)
        try await blob.set(key, value)
        #expect(try await blob.get(key) == value)
        #expect(try await blob.list(prefix: "").map(\.key) == [key])
        #expect(try await blob.delete(key) == value.count)
        #expect(try await blob.get(key) == nil)
    }

    @Test func roundTripsOverHTTPS() async throws {
        try await Self.withTLSMoto("round-trip") { moto, certificates in
            try await moto.createBucket("tls-path")
            try await moto.createBucket("vhost-bucket")
            let https = "https://localhost:\(moto.port)"
            let pathStyle = try Backends.blob(
                "s3://tls-path?endpoint=\(https)&ca_file=\(certificates.authority)", credentials: MotoServer.anyCredentials)
            let virtualHost = try Backends.blob(
                "s3://vhost-bucket?endpoint=\(https)&path_style=false&ca_file=\(certificates.authority)",
                credentials: MotoServer.anyCredentials)
            let unverified = try Backends.blob("s3://tls-path?endpoint=\(https)&tls_verify=false", credentials: MotoServer.anyCredentials)
            try await withCleanup {
                try await Self.roundTrip(pathStyle.backend, key: "path-style")
                try await Self.roundTrip(virtualHost.backend, key: "virtual-host")
                try await Self.roundTrip(unverified.backend, key: "unverified")
                // Each named its bucket its own way (moto logs every request line).
                let log = (try? String(contentsOfFile: moto.logPath, encoding: .utf8)) ?? ""
                #expect(log.contains("\"PUT /tls-path/path-style HTTP/1.1\""), "\(moto.logTail())")
                #expect(log.contains("\"PUT /virtual-host HTTP/1.1\""), "\(moto.logTail())")
            } cleanup: {
                await pathStyle.close()
                await virtualHost.close()
                await unverified.close()
            }
        }
    }

    /// A refused handshake is a determinate error that says why, is not retried (the
    /// message would say "gave up after"), and sends nothing: moto sees no request.
    @Test func untrustedOrMisnamedCertificatesAreRefused() async throws {
        try await Self.withTLSMoto("refusals") { moto, certificates in
            try await moto.createBucket("tls-path")
            let https = "https://localhost:\(moto.port)"
            let cases: [(url: String, expected: String)] = [
                ("s3://tls-path?endpoint=\(https)", "the server's certificate is not trusted"),
                ("s3://tls-path?endpoint=\(https)&ca_file=\(certificates.otherAuthority)", "the server's certificate is not trusted"),
                ("s3://tls-path?endpoint=https://127.0.0.1:\(moto.port)&ca_file=\(certificates.authority)", "does not name 127.0.0.1"),
                (
                    "s3://other-bucket?endpoint=\(https)&path_style=false&ca_file=\(certificates.authority)",
                    "does not name other-bucket.localhost"
                ),
            ]
            for (url, expected) in cases {
                let opened = try Backends.blob(url, credentials: MotoServer.anyCredentials)
                let refused = await S3BlobClientTests.storageError { try await opened.backend.set("never-sent", [1]) }
                await opened.close()
                #expect(refused?.isDeterminate == true && refused?.code == .rejected, "\(url): \(String(describing: refused))")
                #expect(refused?.message.contains(expected) == true, "\(url): \(String(describing: refused))")
                #expect(refused?.message.contains("TLS handshake with") == true, "\(url): \(String(describing: refused))")
                #expect(refused?.message.contains("gave up after") == false, "retried: \(String(describing: refused))")
            }
            let log = (try? String(contentsOfFile: moto.logPath, encoding: .utf8)) ?? ""
            #expect(!log.contains("never-sent"), "a refused client sent a request:\n\(moto.logTail())")
            // The same server, trusted, still works.
            let trusted = try Backends.blob(
                "s3://tls-path?endpoint=\(https)&ca_file=\(certificates.authority)", credentials: MotoServer.anyCredentials)
            try await withCleanup { try await Self.roundTrip(trusted.backend, key: "trusted") } cleanup: { await trusted.close() }
        }
    }

    /// HTTPS to a server that speaks plain HTTP fails the handshake determinately, before
    /// any request; the plain endpoint of the same server works.
    @Test func httpsToAPlainServerFailsAndHTTPStillWorks() async throws {
        try await MotoServer.with("plain") { moto in
            try await moto.createBucket("plain")
            let wrong = try Backends.blob(
                "s3://plain?endpoint=https://127.0.0.1:\(moto.port)&tls_verify=false", credentials: MotoServer.anyCredentials)
            let right = try Backends.blob("s3://plain?endpoint=\(moto.url)", credentials: MotoServer.anyCredentials)
            try await withCleanup {
                let refused = await S3BlobClientTests.storageError { try await wrong.backend.set("never-sent", [1]) }
                #expect(refused?.isDeterminate == true, "\(String(describing: refused))")
                #expect(refused?.message.contains("TLS handshake with https://127.0.0.1:\(moto.port)") == true, "\(String(describing: refused))")
                try await Self.roundTrip(right.backend, key: "plain")
                let log = (try? String(contentsOfFile: moto.logPath, encoding: .utf8)) ?? ""
                #expect(!log.contains("never-sent"), "\(moto.logTail())")
            } cleanup: {
                await wrong.close()
                await right.close()
            }
        }
    }

    /// A server that accepts connections and never answers the handshake: each attempt
    /// ends at the connect timeout with a determinate timeout (nothing was sent), retried
    /// as the policy allows and no more. The request timeout is far longer, so an attempt
    /// that came back at all was cut short by the handshake's own bound.
    @Test func aHandshakeWithoutAnswerTimesOutDeterminately() async throws {
        let accepted = AcceptCounter()
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                accepted.count()
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(silent.localAddress?.port)
        let pauses = PauseRecorder()
        let requestTimeout = Duration.seconds(300)
        let blob = S3Blob(
            S3Blob.Configuration(
                endpoint: .https(host: "127.0.0.1", port: port), bucket: "b", credentials: MotoServer.anyCredentials,
                connectTimeout: .seconds(2), requestTimeout: requestTimeout, retry: S3Blob.RetryPolicy(maxAttempts: 2, jitterSeed: 7)),
            sleep: { try await pauses.sleep($0) })
        let started = ContinuousClock.now
        let refused = await S3BlobClientTests.storageError { try await blob.set("k", [1]) }
        let elapsed = ContinuousClock.now - started
        await blob.shutdown()
        try await silent.close()
        let error = try #require(refused)
        #expect(error.code == .timeout && error.isDeterminate, "\(error)")
        #expect(elapsed < requestTimeout, "the stalled handshake was not bounded by the connect timeout: \(error)")
        // Two attempts, each of which connected (the stall was the handshake's), and one pause.
        #expect(pauses.pauses.count == 1, "\(pauses.pauses)")
        let deadline = ContinuousClock.now + .seconds(30)
        while accepted.value < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(accepted.value == 2)
    }

    /// A server name that SNI cannot carry (here: more than 255 bytes, from a long bucket
    /// name with virtual-host addressing) fails opening, determinately and saying why;
    /// a client made without the throwing initializer fails every request that way,
    /// unretried.
    @Test func aServerNameSNICannotCarryIsRefusedWhenOpening() async throws {
        let bucket = String(repeating: "b", count: 250)
        for url in ["s3://\(bucket)?path_style=false", "s3://\(bucket)?endpoint=https://localhost:1&path_style=false"] {
            do {
                let opened = try Backends.blob(url, credentials: MotoServer.anyCredentials)
                await opened.close()
                Issue.record("\(url) was opened")
            } catch let error as StorageError {
                #expect(error.code == .invalidArgument && error.isDeterminate, "\(error)")
                #expect(error.message.contains("more than the 255"), "\(error)")
                #expect(error.message.contains("path_style=true"), "\(error)")
            }
        }
        // Path style names the bucket in the path: the same bucket opens.
        let pathStyle = try Backends.blob("s3://\(bucket)?endpoint=https://localhost:1", credentials: MotoServer.anyCredentials)
        await pathStyle.close()
        let blob = S3Blob(
            S3Blob.Configuration(
                endpoint: .https(host: "localhost", port: 1), bucket: "b", credentials: MotoServer.anyCredentials,
                hostHeader: "bad\u{0}name", retry: .standard))
        let outcome = await blob.attempt(.getObject(key: "k"))
        let refused = await S3BlobClientTests.storageError { _ = try await blob.get("k") }
        await blob.shutdown()
        guard case .failed(let error, let retryable) = outcome else {
            Issue.record("answered: \(outcome)")
            return
        }
        #expect(error.code == .invalidArgument && error.isDeterminate && !retryable, "\(error)")
        #expect(error.message.contains("NUL"), "\(error)")
        #expect(refused?.code == .invalidArgument && refused?.message.contains("gave up after") == false, "\(String(describing: refused))")
    }

    @Test func serverNamesSNICannotCarry() {
        #expect(S3TLS.problem(withServerName: "bucket.s3.eu-west-1.amazonaws.com") == nil)
        #expect(S3TLS.problem(withServerName: String(repeating: "a", count: 255)) == nil)
        #expect(S3TLS.problem(withServerName: String(repeating: "a", count: 256))?.contains("256 bytes") == true)
        // Bytes of UTF-8 count, not characters.
        #expect(S3TLS.problem(withServerName: String(repeating: "é", count: 128)) != nil)
        #expect(S3TLS.problem(withServerName: "") != nil)
        #expect(S3TLS.problem(withServerName: "a\u{0}b")?.contains("NUL") == true)
        #expect(S3TLS.problem(withServerName: "127.0.0.1") != nil)
        #expect(S3TLS.problem(withServerName: "::1") != nil)
    }

    @Test func unusableCAFilesAreRefusedWhenOpening() throws {
        let directory = BlobStoreTestDirectory("tls-ca-files")
        defer { directory.remove() }
        let garbage = directory.path + "/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        // One byte over the 1 MiB a CA file may have.
        let huge = directory.path + "/huge.pem"
        #expect(FileManager.default.createFile(atPath: huge, contents: Data(repeating: 0x41, count: (1 << 20) + 1)))
        let cases = [
            (directory.path + "/missing.pem", "does not exist"), (garbage, "the CA file \(garbage)"), (directory.path, "is a directory"),
            (huge, "is larger than 1048576 bytes"),
        ]
        for (file, expected) in cases {
            do {
                _ = try Backends.blob("s3://b?endpoint=https://localhost:1&ca_file=\(file)", credentials: MotoServer.anyCredentials)
                Issue.record("\(file) was accepted")
            } catch let error as StorageError {
                #expect(error.code == .invalidArgument && error.isDeterminate, "\(error)")
                #expect(error.message.contains(expected), "\(error)")
            }
        }
    }

    // MARK: Pure parts

    static func configuration(_ url: String) throws -> S3Blob.Configuration {
        guard case .s3(let location) = try LocationURL.blob(url) else { throw ConformanceFailure("not s3: \(url)") }
        return try S3Blob.Configuration(location: location, credentials: MotoServer.anyCredentials)
    }

    @Test func endpointsFromLocations() throws {
        let https = try Self.configuration("s3://b?endpoint=https://s3.example.com&ca_file=/ca.pem")
        #expect(https.endpoint == .https(host: "s3.example.com", port: 443))
        #expect(https.effectiveHostHeader == "s3.example.com" && https.tlsServerName == "s3.example.com")
        #expect(https.tls == S3Blob.TLSOptions(additionalTrustRootFiles: ["/ca.pem"], verifyCertificates: true))
        let port = try Self.configuration("s3://b?endpoint=https://s3.example.com:8443&path_style=false&tls_verify=false")
        #expect(port.endpoint == .https(host: "s3.example.com", port: 8443))
        #expect(port.effectiveHostHeader == "b.s3.example.com:8443" && port.tlsServerName == "b.s3.example.com")
        #expect(port.tls == S3Blob.TLSOptions(verifyCertificates: false))
        let http = try Self.configuration("s3://b?endpoint=http://h")
        #expect(http.endpoint == .tcp(host: "h", port: 80) && http.effectiveHostHeader == "h")
        let v6 = try Self.configuration("s3://b?endpoint=https://[::1]:9000")
        #expect(v6.endpoint == .https(host: "::1", port: 9000) && v6.effectiveHostHeader == "[::1]:9000" && v6.tlsServerName == nil)
        #expect(v6.endpoint.description == "https://[::1]:9000")
        // AWS's own endpoint, over HTTPS: the bucket's host name, or the regional one with path style.
        let aws = try Self.configuration("s3://my-bucket/p?region=eu-west-1")
        #expect(aws.endpoint == .https(host: "my-bucket.s3.eu-west-1.amazonaws.com", port: 443))
        #expect(aws.addressing == .virtualHost && aws.effectiveHostHeader == "my-bucket.s3.eu-west-1.amazonaws.com")
        #expect(aws.tlsServerName == "my-bucket.s3.eu-west-1.amazonaws.com" && aws.region == "eu-west-1" && aws.prefix == "p")
        let awsPath = try Self.configuration("s3://my-bucket?path_style=true")
        #expect(awsPath.endpoint == .https(host: "s3.us-east-1.amazonaws.com", port: 443))
        #expect(awsPath.addressing == .pathStyle && awsPath.tlsServerName == "s3.us-east-1.amazonaws.com")
        // A bucket name with dots goes path style by default (AWS's certificates cover one label).
        let dotted = try Self.configuration("s3://dotted.bucket.name?region=eu-west-1")
        #expect(dotted.endpoint == .https(host: "s3.eu-west-1.amazonaws.com", port: 443))
        #expect(dotted.addressing == .pathStyle && dotted.effectiveHostHeader == "s3.eu-west-1.amazonaws.com")
        #expect(throws: StorageError.self) { try Self.configuration("s3://b?endpoint=https://h/path") }
    }

    @Test func theNameACertificateMustCarry() {
        #expect(S3TLS.serverName(hostHeader: "bucket.localhost:9000") == "bucket.localhost")
        #expect(S3TLS.serverName(hostHeader: "s3.amazonaws.com") == "s3.amazonaws.com")
        #expect(S3TLS.serverName(hostHeader: "127.0.0.1:9000") == nil)
        #expect(S3TLS.serverName(hostHeader: "[::1]:9000") == nil)
        #expect(S3TLS.host(ofHostHeader: "[::1]:9000") == "::1")
        #expect(S3TLS.host(ofHostHeader: "127.0.0.1:9000") == "127.0.0.1")
        #expect(S3TLS.host(ofHostHeader: "name:") == "name:")
        // An explicit Host header decides, whatever the connection's address.
        let configuration = S3Blob.Configuration(
            endpoint: .https(host: "127.0.0.1", port: 9000), bucket: "b", credentials: MotoServer.anyCredentials,
            addressing: .virtualHost, hostHeader: "b.s3.amazonaws.com")
        #expect(configuration.tlsServerName == "b.s3.amazonaws.com")
    }
}

/// Counts the connections a test server accepted.
final class AcceptCounter: Sendable {
    private let accepted = Mutex(0)

    var value: Int { accepted.withLock { $0 } }

    func count() { accepted.withLock { $0 += 1 } }
}
