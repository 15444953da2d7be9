#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistS3
import PersistServices
import Testing

/// `S3Blob` against an S3 that is not ours: moto's server mode (see `MotoServer`), with
/// path-style and virtual-host-style addressing, over HTTP and HTTPS, a region,
/// credentials given explicitly, taken from the AWS environment variables and from a
/// credentials file, signatures checked by moto, and objects of 64 MiB (also through our
/// blob-store).
@Suite struct S3BlobMotoTests {
    /// The ways a client can be pointed at moto.
    enum Setup: String, CaseIterable, Sendable, CustomStringConvertible {
        /// `Host: 127.0.0.1:PORT`, `/bucket/key`; us-east-1; listings in pages of 7 (so
        /// moto's continuation tokens are followed).
        case pathStyle
        /// From the location URL `s3://bucket/prefix?endpoint=http://localhost:PORT&
        /// region=eu-west-1&path_style=false`: `Host: bucket.localhost:PORT`, `/key`, the
        /// bucket in eu-west-1, credentials from an AWS environment.
        case virtualHostFromLocation
        /// An explicit `Host: bucket.s3.amazonaws.com` (AWS's own form) over a connection to
        /// 127.0.0.1, with SHA-256 and Content-MD5 bodies.
        case virtualHostHeader
        /// HTTPS from the location URL `s3://vhost-bucket/prefix?endpoint=https://localhost:
        /// PORT&path_style=false&ca_file=CA`: moto serves a certificate for
        /// `vhost-bucket.localhost` from a test CA (see `S3BlobTLSTests`).
        case httpsVirtualHostFromLocation

        var description: String { rawValue }

        var bucket: String {
            switch self {
            case .pathStyle: "path-style"
            case .virtualHostFromLocation: "virtual-host-location"
            case .virtualHostHeader: "virtual-host-header"
            case .httpsVirtualHostFromLocation: "vhost-bucket"
            }
        }

        /// Whether moto serves HTTPS for this setup.
        var usesTLS: Bool { self == .httpsVirtualHostFromLocation }

        var region: String { self == .virtualHostFromLocation ? "eu-west-1" : "us-east-1" }

        /// A client configuration for keys under `prefix`.
        func configuration(_ moto: MotoServer, prefix: String) throws -> S3Blob.Configuration {
            switch self {
            case .pathStyle:
                return S3Blob.Configuration(
                    endpoint: moto.endpoint, bucket: bucket, prefix: prefix, region: region, credentials: MotoServer.anyCredentials,
                    addressing: .pathStyle, listPageSize: 7)
            case .virtualHostFromLocation:
                let text = "s3://\(bucket)/\(prefix)?endpoint=http://localhost:\(moto.port)&region=\(region)&path_style=false"
                guard case .s3(let location) = try LocationURL.blob(text) else { throw ConformanceFailure("not an S3 location: \(text)") }
                let environment = [
                    "AWS_ACCESS_KEY_ID": MotoServer.anyCredentials.accessKeyID,
                    "AWS_SECRET_ACCESS_KEY": MotoServer.anyCredentials.secretAccessKey,
                ]
                guard let credentials = S3Credentials.fromEnvironment(environment) else { throw ConformanceFailure("no credentials") }
                let configuration = try S3Blob.Configuration(location: location, credentials: credentials)
                try #require(configuration.addressing == .virtualHost)
                try #require(configuration.effectiveHostHeader == "\(bucket).localhost:\(moto.port)")
                try #require(configuration.region == region)
                return configuration
            case .virtualHostHeader:
                return S3Blob.Configuration(
                    endpoint: moto.endpoint, bucket: bucket, prefix: prefix, region: region, credentials: MotoServer.anyCredentials,
                    addressing: .virtualHost, hostHeader: "\(bucket).s3.amazonaws.com", payloadIntegrity: .sha256AndMD5)
            case .httpsVirtualHostFromLocation:
                let authority = try #require(moto.tls?.authority)
                let text = "s3://\(bucket)/\(prefix)?endpoint=https://localhost:\(moto.port)&path_style=false&ca_file=\(authority)"
                guard case .s3(let location) = try LocationURL.blob(text) else { throw ConformanceFailure("not an S3 location: \(text)") }
                let configuration = try S3Blob.Configuration(location: location, credentials: MotoServer.anyCredentials)
                try #require(configuration.endpoint == .https(host: "localhost", port: moto.port))
                try #require(configuration.effectiveHostHeader == "\(bucket).localhost:\(moto.port)")
                return configuration
            }
        }
    }

    /// moto's URL routing does not match an object name with a line feed in it (it
    /// answers 404 for any request on such a key), so its hostile-keys check leaves that
    /// key out and checks only that the refusal is a clean, determinate error.
    static let keysMotoCannotRoute: Set<String> = ["new\nline"]

    @Test(arguments: Setup.allCases)
    func blobConformance(_ setup: Setup) async throws {
        let certificateDirectory = BlobStoreTestDirectory("conformance-certificates")
        defer { certificateDirectory.remove() }
        let certificates =
            setup.usesTLS ? try await TestCertificates.make(in: certificateDirectory.path, names: S3BlobTLSTests.certificateNames) : nil
        try await MotoServer.with("conformance-\(setup)", tls: certificates) { moto in
            try await moto.createBucket(setup.bucket, region: setup.region)
            let clients = BlobStoreClients()
            let harness = ConformanceHarness<any Blob>(
                open: { clients.make(try setup.configuration(moto, prefix: "c-" + UUID().uuidString.lowercased())) },
                reopen: { old in
                    let s3 = try #require(old as? S3Blob)
                    await s3.shutdown()
                    return clients.make(s3.configuration)
                })
            try await withCleanup {
                for check in BlobConformance.checks where check.name != "hostile keys" {
                    do {
                        try await check.run(harness)
                    } catch {
                        Issue.record("\(check.name) over \(setup): \(error)\n\(moto.logTail())")
                    }
                }
                try await Self.hostileKeys(clients.make(try setup.configuration(moto, prefix: "hostile")))
                try await Self.probeAddressing(setup, moto, clients)
            } cleanup: {
                await clients.shutdownAll()
            }
        }
    }

    /// The setup's requests name the bucket the way it says (moto logs each request line),
    /// and what it writes is the object a plain path-style client finds under the same
    /// bucket and key: the addressing is not merely consistent with itself.
    static func probeAddressing(_ setup: Setup, _ moto: MotoServer, _ clients: BlobStoreClients) async throws {
        let probe = clients.make(try setup.configuration(moto, prefix: "probe"))
        try await probe.set("object", [1, 2, 3])
        let target = setup == .pathStyle ? "/\(setup.bucket)/probe/object" : "/probe/object"
        let log = (try? String(contentsOfFile: moto.logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("\"PUT \(target) HTTP/1.1\""), "no PUT \(target) in moto's log:\n\(moto.logTail())")
        let plain = clients.make(
            S3Blob.Configuration(
                endpoint: moto.endpoint, bucket: setup.bucket, prefix: "probe", region: setup.region, credentials: MotoServer.anyCredentials,
                tls: moto.tlsOptions))
        #expect(try await plain.get("object") == [1, 2, 3])
        #expect(try await plain.list(prefix: "") == [BlobMetadata(key: "object", sizeBytes: 3)])
    }

    /// The conformance suite's hostile-keys check, less the keys moto cannot route.
    static func hostileKeys(_ blob: S3Blob) async throws {
        let keys = BlobConformance.hostileKeys.filter { !keysMotoCannotRoute.contains($0) }
        #expect(keys.count == BlobConformance.hostileKeys.count - keysMotoCannotRoute.count)
        for (i, key) in keys.enumerated() { try await blob.set(key, Array("value \(i)".utf8)) }
        for (i, key) in keys.enumerated() {
            #expect(try await blob.get(key) == Array("value \(i)".utf8), "\(key.debugDescription)")
        }
        let listed = try await blob.list(prefix: "").map { Array($0.key.utf8) }
        #expect(listed == keys.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) })
        for (i, key) in keys.enumerated() {
            #expect(try await blob.delete(key) == "value \(i)".utf8.count, "\(key.debugDescription)")
        }
        #expect(try await blob.list(prefix: "") == [])
        for key in keysMotoCannotRoute {
            do {
                try await blob.set(key, [1])
                #expect(try await blob.get(key) == [1], "stored after all: it must read back")
            } catch {
                #expect(error.isDeterminate, "\(error)")
            }
        }
    }

    // MARK: Signatures and credentials

    @Test func motoVerifiesTheSignatures() async throws {
        try await MotoServer.with("signatures") { moto in
            try await moto.createBucket("signed")
            let key = try await moto.enableAuthentication()
            func blob(_ credentials: S3Credentials) -> S3Blob {
                S3Blob(S3Blob.Configuration(endpoint: moto.endpoint, bucket: "signed", credentials: credentials, retry: .never))
            }
            let good = blob(key)
            let wrongSecret = blob(S3Credentials(accessKeyID: key.accessKeyID, secretAccessKey: key.secretAccessKey + "x"))
            let unknownKey = blob(S3Credentials(accessKeyID: "AKIAUNKNOWNUNKNOWN00", secretAccessKey: key.secretAccessKey))
            try await withCleanup {
                // moto rebuilds the signed request from its decoded URL, which garbles
                // reserved characters in a query (a listing's prefix with "/"); the keys and
                // prefixes here keep clear of that.
                try await good.set("signed-a", [1, 2, 3])
                try await good.set("dir/signed-b", Array(repeating: 7, count: 300_000))
                #expect(try await good.get("signed-a") == [1, 2, 3])
                #expect(try await good.get("dir/signed-b") == Array(repeating: 7, count: 300_000))
                #expect(try await good.list(prefix: "signed").map(\.key) == ["signed-a"])
                #expect(try await good.list(prefix: "").map(\.key) == ["dir/signed-b", "signed-a"])
                #expect(try await good.delete("signed-a") == 3)
                #expect(try await good.get("signed-a") == nil)

                let mismatch = await S3BlobClientTests.storageError { try await wrongSecret.set("signed-c", [1]) }
                #expect(mismatch?.code == .rejected && mismatch?.isDeterminate == true)
                #expect(mismatch?.message.contains("SignatureDoesNotMatch") == true, "\(String(describing: mismatch))")
                let unknown = await S3BlobClientTests.storageError { _ = try await unknownKey.get("dir/signed-b") }
                #expect(unknown?.code == .rejected)
                #expect(unknown?.message.contains("InvalidAccessKeyId") == true, "\(String(describing: unknown))")
                #expect(try await good.list(prefix: "").map(\.key) == ["dir/signed-b"], "the refused PUT stored nothing")
            } cleanup: {
                await good.shutdown()
                await wrongSecret.shutdown()
                await unknownKey.shutdown()
            }
        }
    }

    /// An `s3://` URL with `credentials_file=` and `profile=` opens (through `Backends`) a
    /// blob that signs with that profile's key pair, which moto checks, although the
    /// environment holds other keys; the same file's default profile, with a key moto
    /// never issued, is refused.
    @Test func aCredentialsFileInTheURLSignsTheRequests() async throws {
        try await MotoServer.with("credentials-file") { moto in
            try await moto.createBucket("from-file", region: "eu-west-1")
            let key = try await moto.enableAuthentication()
            let path = moto.directory.path + "/aws credentials"
            try """
            [default]
            aws_access_key_id = AKIAUNKNOWNUNKNOWN00
            aws_secret_access_key = not-a-secret-moto-knows

            ; the key moto issued
            [moto]
            aws_access_key_id = \(key.accessKeyID)
            aws_secret_access_key = \(key.secretAccessKey)
            """.write(toFile: path, atomically: true, encoding: .utf8)
            let file = try #require(path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed))
            // No key prefix: moto garbles a listing's prefix with "/" in it when it checks the
            // signature (see motoVerifiesTheSignatures).
            let base = "s3://from-file?endpoint=\(moto.url)&region=eu-west-1&credentials_file=\(file)"
            let environment = ["AWS_ACCESS_KEY_ID": "AKIAFROMTHEENVIRONMT", "AWS_SECRET_ACCESS_KEY": "env-secret"]
            let good = try Backends.blob(base + "&profile=moto", environment: environment)
            let unknown = try Backends.blob(base, environment: environment)
            try await withCleanup {
                let value = Array("from a credentials file".utf8)
                try await good.backend.set("object", value)
                #expect(try await good.backend.get("object") == value)
                #expect(try await good.backend.list(prefix: "") == [BlobMetadata(key: "object", sizeBytes: value.count)])
                let refused = await S3BlobClientTests.storageError { _ = try await unknown.backend.get("object") }
                #expect(refused?.code == .rejected && refused?.isDeterminate == true, "\(String(describing: refused))")
                #expect(refused?.message.contains("InvalidAccessKeyId") == true, "\(String(describing: refused))")
                #expect(try await good.backend.delete("object") == value.count)
            } cleanup: {
                await good.close()
                await unknown.close()
            }
        }
    }

    /// A `txn-coordinator` process whose blob is the S3 location `s3://...` takes its key
    /// pair from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: with them (and moto checking
    /// every signature) it opens its shard, writing its state to the bucket; without them
    /// it refuses to start.
    @Test func aCoordinatorTakesItsCredentialsFromTheEnvironment() async throws {
        try await MotoServer.with("environment") { moto in
            let region = "eu-west-1"
            try await moto.createBucket("coordinator", region: region)
            let key = try await moto.enableAuthentication()
            let blobURL = "s3://coordinator?endpoint=\(moto.url)&region=\(region)"
            let scratch = moto.directory.path
            var environment = ProcessInfo.processInfo.environment
            for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE"] {
                environment[name] = nil
            }
            // No ~/.aws/credentials of the user's either.
            environment["HOME"] = scratch
            let arguments = [
                "--blob", blobURL, "--consensus", "mem://moto", "--listen", "unix:\(scratch)/coordinator.sock", "--metrics-listen", "off",
                "--log-level", "warning",
            ]
            let executable = try SpawnedServer.builtExecutable("txn-coordinator")

            let without = try await ChildProgram.run(
                executable: executable, arguments: arguments, environment: environment, timeout: .seconds(120))
            #expect(without.status == 2, "\(without.output)")
            #expect(without.output.contains("AWS_ACCESS_KEY_ID"), "\(without.output)")

            environment["AWS_ACCESS_KEY_ID"] = key.accessKeyID
            environment["AWS_SECRET_ACCESS_KEY"] = key.secretAccessKey
            let coordinator = try await SpawnedServer.launch(
                executable: executable, arguments: arguments, readyFile: scratch + "/coordinator.ready",
                logPath: scratch + "/coordinator.log", timeout: .seconds(120), environment: environment)
            let reader = S3Blob(S3Blob.Configuration(endpoint: moto.endpoint, bucket: "coordinator", region: region, credentials: key))
            try await withCleanup {
                let stored = try await reader.list(prefix: "")
                #expect(!stored.isEmpty, "the coordinator wrote nothing to the bucket\n\(coordinator.logTail())")
                coordinator.signal(SIGTERM)
                #expect(await coordinator.exitStatus(within: .seconds(120)) == 0, "\(coordinator.logTail())")
            } cleanup: {
                await reader.shutdown()
                if await coordinator.exitStatus(within: .zero) == nil { await coordinator.killed() }
            }
        }
    }

    // MARK: Large objects

    static let largeSize = 64 << 20

    @Test func a64MiBObjectRoundTripsThroughMoto() async throws {
        try await MotoServer.with("large") { moto in
            try await moto.createBucket("large")
            let blob = S3Blob(
                S3Blob.Configuration(
                    endpoint: moto.endpoint, bucket: "large", prefix: "big", credentials: MotoServer.anyCredentials,
                    requestTimeout: .seconds(300)))
            try await withCleanup { try await Self.roundTrip(blob, seed: 64) } cleanup: { await blob.shutdown() }
        }
    }

    @Test func a64MiBObjectRoundTripsThroughTheBlobStore() async throws {
        try await BlobStoreServerProcess.with("large") { server in
            var configuration = server.s3Configuration(server.tcp, prefix: "big")
            configuration.requestTimeout = .seconds(300)
            let blob = S3Blob(configuration)
            try await withCleanup { try await Self.roundTrip(blob, seed: 65) } cleanup: { await blob.shutdown() }
            #expect(try await server.stop() == 0, "\(server.process.logTail())")
        }
    }

    /// Writes a seeded 64 MiB object, reads it back byte for byte, lists and deletes it.
    static func roundTrip(_ blob: S3Blob, seed: UInt64) async throws {
        let value = seededBytes(count: largeSize, seed: seed)
        try await blob.set("object", value)
        let back = try #require(try await blob.get("object"), "the object vanished")
        #expect(back.count == value.count)
        #expect(sameBytes(back, value), "the object came back changed")
        #expect(try await blob.list(prefix: "") == [BlobMetadata(key: "object", sizeBytes: largeSize)])
        #expect(try await blob.delete("object") == largeSize)
        #expect(try await blob.get("object") == nil)
    }

    /// `count` bytes from a `SeededGenerator`, eight at a time.
    static func seededBytes(count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(seed: seed)
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset + 8 <= raw.count {
                raw.storeBytes(of: generator.next().littleEndian, toByteOffset: offset, as: UInt64.self)
                offset += 8
            }
            var last = generator.next()
            while offset < raw.count {
                raw[offset] = UInt8(truncatingIfNeeded: last)
                last >>= 8
                offset += 1
            }
        }
        return bytes
    }

    /// Whether two byte arrays are equal, compared with memcmp (an element-wise `==` is
    /// slow on 64 MiB in a debug build).
    static func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in
            b.withUnsafeBytes { y in
                guard let p = x.baseAddress, let q = y.baseAddress else { return true }
                return memcmp(p, q, x.count) == 0
            }
        }
    }

    @Test func seededBytesAreReproducible() {
        let a = Self.seededBytes(count: 1003, seed: 1)
        #expect(a == Self.seededBytes(count: 1003, seed: 1))
        #expect(a != Self.seededBytes(count: 1003, seed: 2))
        #expect(Self.sameBytes(a, a) && !Self.sameBytes(a, Array(a.dropLast())))
        var changed = a
        changed[1002] ^= 1
        #expect(!Self.sameBytes(a, changed))
        #expect(Set(a).count > 200, "not constant")
    }
}
