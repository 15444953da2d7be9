#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistS3
import Testing

/// The `blob-store` process with failpoints: it dies by SIGKILL where told, an object
/// fsync'd before the crash is served after the restart although its PUT was never
/// answered, and one cut off before its fsync and rename never appears.
@Suite struct BlobStoreFailpointProcessTests {
    static func object(_ name: String) -> [UInt8] { Array("the bytes of \(name) ".utf8) + Array(repeating: 0x5A, count: 4096) }

    /// Starts `blob-store` in `directory` (bucket `bkt`, the test keys, a Unix socket),
    /// with `TXNWAL_FAILPOINTS` set to `failpoints` or removed.
    static func start(_ directory: BlobStoreTestDirectory, _ n: Int, failpoints: String?) async throws -> SpawnedServer {
        let keys = directory.path + "/keys"
        try Data("\(BlobStoreTestKeys.credentials.accessKeyID) \(BlobStoreTestKeys.credentials.secretAccessKey)\n".utf8)
            .write(to: URL(fileURLWithPath: keys))
        var environment = ProcessInfo.processInfo.environment
        environment[Failpoints.variable] = failpoints
        return try await SpawnedServer.launch(
            executable: try SpawnedServer.builtExecutable("blob-store"),
            arguments: [
                "--data-dir", directory.path + "/data", "--listen", "unix:" + directory.path + "/s3.sock", "--metrics-listen", "off",
                "--bucket", "bkt", "--credentials-file", keys, "--log-level", "notice",
            ],
            readyFile: directory.path + "/ready-\(n)", logPath: directory.path + "/server-\(n).log", timeout: .seconds(120),
            environment: environment)
    }

    static func client(_ directory: BlobStoreTestDirectory) -> S3Blob {
        S3Blob(
            S3Blob.Configuration(
                endpoint: .unix(path: directory.path + "/s3.sock"), bucket: "bkt", credentials: BlobStoreTestKeys.credentials,
                connectTimeout: .seconds(60), requestTimeout: .seconds(120)))
    }

    /// Starts a server, writes `a`, then `b` (which the failpoint `spec` must cut short by
    /// killing the server), checks the death, restarts without failpoints and returns
    /// what the new server holds under `a` and `b`.
    static func crashOnSecondPut(_ directory: BlobStoreTestDirectory, spec: String) async throws -> (a: [UInt8]?, b: [UInt8]?) {
        let first = try await start(directory, 0, failpoints: spec)
        let blob = client(directory)
        return try await withCleanup {
            try await blob.set("a", object("a"))
            await #expect(throws: StorageError.self) { try await blob.set("b", object("b")) }
            let status = try #require(await first.exitStatus(within: .seconds(120)), "still running:\n\(first.logTail())")
            #expect(status == -SIGKILL, "\(first.logTail())")
            let point = String(spec.prefix { $0 != "=" })
            let log = try String(contentsOfFile: first.logPath, encoding: .utf8)
            #expect(log.contains("failpoint \(point) fired (hit 2"), "\(first.logTail())")

            let second = try await start(directory, 1, failpoints: nil)
            let reader = client(directory)
            let held = try await withCleanup {
                (try await reader.get("a"), try await reader.get("b"))
            } cleanup: {
                await reader.shutdown()
                second.signal(SIGTERM)
                _ = await second.exitStatus(within: .seconds(120))
            }
            return held
        } cleanup: {
            await blob.shutdown()
            if await first.exitStatus(within: .zero) == nil { await first.killed() }
        }
    }

    @Test func crashAfterFsyncBeforeReplyKeepsTheUnansweredObject() async throws {
        let directory = BlobStoreTestDirectory("fp-after-fsync")
        defer { directory.remove() }
        let (a, b) = try await Self.crashOnSecondPut(directory, spec: "blob.after-fsync-before-reply=crash#2")
        #expect(a == Self.object("a"))
        #expect(b == Self.object("b"), "fsync'd before the crash: durable although the PUT was never answered")
    }

    @Test func crashBeforeFsyncLeavesNoTraceOfTheObject() async throws {
        let directory = BlobStoreTestDirectory("fp-before-fsync")
        defer { directory.remove() }
        let (a, b) = try await Self.crashOnSecondPut(directory, spec: "blob.before-fsync=crash#2")
        #expect(a == Self.object("a"))
        #expect(b == nil, "never renamed into place: absent, not partial")
        // The restarted server swept the crashed writer's temporary file away.
        #expect(!directory.files().contains { $0.contains(".tmp-") }, "\(directory.files())")
    }

    @Test func malformedFailpointsStopTheServerWithExitCode2() async throws {
        let directory = BlobStoreTestDirectory("fp-bad")
        defer { directory.remove() }
        var environment = ProcessInfo.processInfo.environment
        environment[Failpoints.variable] = "blob.before-fsync=crash@2"
        let outcome = try await ChildProgram.run(
            executable: try SpawnedServer.builtExecutable("blob-store"),
            arguments: ["--data-dir", directory.path + "/data", "--listen", "unix:" + directory.path + "/s3.sock", "--allow-anonymous"],
            environment: environment, timeout: .seconds(120))
        #expect(outcome.status == 2, "\(outcome.output)")
        #expect(outcome.output.contains("malformed entry \"blob.before-fsync=crash@2\""), "\(outcome.output)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/data"))
    }
}
