#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import PersistConformance
import PersistCore
import PersistLocation
import PersistS3
import PersistServices
import Synchronization
import Testing

/// A program run to completion: its exit status and everything it printed.
struct BlobStoreCommandResult: Sendable {
    var status: Int32
    var output: String
}

/// A child process whose exit can be awaited without blocking a thread. `Process` is
/// not `Sendable`; it is only touched here, on start and to read its pid.
final class BlobStoreChildProcess: @unchecked Sendable {
    let process = Process()
    private let exits: AsyncStream<Int32>
    private let exitContinuation: AsyncStream<Int32>.Continuation
    let outputPath: String

    /// Starts `executable` with `arguments`; stdout and stderr go to `outputPath`.
    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, outputPath: String) throws {
        (exits, exitContinuation) = AsyncStream.makeStream(of: Int32.self, bufferingPolicy: .bufferingNewest(1))
        self.outputPath = outputPath
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        let continuation = exitContinuation
        // Exit status, or 128 + signal for a process killed by a signal (as shells say).
        process.terminationHandler = { p in
            continuation.yield(p.terminationReason == .exit ? p.terminationStatus : 128 + p.terminationStatus)
            continuation.finish()
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    func signal(_ number: Int32) { kill(pid, number) }

    /// The exit status, once the process has ended (within `limit`).
    func exitStatus(within limit: Duration = .seconds(60)) async throws -> Int32 {
        let exits = self.exits
        return try await withBlobStoreDeadline(limit, "process exit") {
            for await status in exits { return status }
            return -1
        }
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Runs a program to completion.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, limit: Duration = .seconds(300)
    ) async throws -> BlobStoreCommandResult {
        let directory = BlobStoreTestDirectory("command")
        defer { directory.remove() }
        let child = try BlobStoreChildProcess(executable, arguments, environment: environment, outputPath: directory.path + "/output")
        let status = try await child.exitStatus(within: limit)
        return BlobStoreCommandResult(status: status, output: child.output)
    }
}

/// A `blob-store` process started from the built binary, with bucket `bkt`, the test
/// keys, a TCP and a Unix socket listener, and a metrics endpoint.
struct BlobStoreServerProcess: Sendable {
    let child: BlobStoreChildProcess
    let directory: BlobStoreTestDirectory
    /// The ready file's lines: listener name -> addresses, in the order written.
    let endpoints: [String: [ListenAddress]]

    var tcp: ListenAddress {
        endpoints["s3"]?.first { if case .tcp = $0 { true } else { false } } ?? .tcp(host: "127.0.0.1", port: 1)
    }
    var unix: ListenAddress {
        endpoints["s3"]?.first { if case .unix = $0 { true } else { false } } ?? .unix(path: "/nonexistent")
    }
    var metrics: ListenAddress { endpoints["metrics"]?.first ?? .tcp(host: "127.0.0.1", port: 1) }

    /// Parses a ready file in which a name may have several lines.
    static func parseReadyFile(_ text: String) throws -> [String: [ListenAddress]] {
        var result: [String: [ListenAddress]] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            try #require(parts.count == 2, "bad ready file line \(line)")
            result[String(parts[0]), default: []].append(try ListenAddress(parsing: String(parts[1])))
        }
        return result
    }
    var dataDirectory: String { directory.path + "/data" }

    static func binary(_ name: String) throws -> String {
        let exe = try #require(try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        let path = (exe as NSString).deletingLastPathComponent + "/" + name
        try #require(FileManager.default.isExecutableFile(atPath: path), "\(name) not built at \(path)")
        return path
    }

    static func start(_ label: String, extraArguments: [String] = []) async throws -> BlobStoreServerProcess {
        let directory = BlobStoreTestDirectory(label)
        let keys = directory.path + "/keys"
        try Data("# test keys\n\(BlobStoreTestKeys.credentials.accessKeyID) \(BlobStoreTestKeys.credentials.secretAccessKey)\n".utf8)
            .write(to: URL(fileURLWithPath: keys))
        let ready = directory.path + "/ready"
        let child = try BlobStoreChildProcess(
            try binary("blob-store"),
            [
                "--data-dir", directory.path + "/data", "--listen", "127.0.0.1:0", "--listen", "unix:" + directory.path + "/s3.sock",
                "--metrics-listen", "127.0.0.1:0", "--bucket", "bkt", "--credentials-file", keys, "--ready-file", ready,
                "--log-level", "debug",
            ] + extraArguments,
            outputPath: directory.path + "/server.log")
        try await waitForBlobStore("the ready file of \(label)") {
            guard child.process.isRunning else { throw BlobStoreTestTimeout(what: "blob-store exited early: \(child.output)") }
            return FileManager.default.fileExists(atPath: ready)
        }
        let endpoints = try parseReadyFile(try String(contentsOfFile: ready, encoding: .utf8))
        try #require(endpoints["s3"]?.count == 2 && endpoints["metrics"]?.count == 1, "ready file: \(endpoints)")
        return BlobStoreServerProcess(child: child, directory: directory, endpoints: endpoints)
    }

    /// SIGTERM, then the exit status.
    func stop() async throws -> Int32 {
        child.signal(SIGTERM)
        return try await child.exitStatus()
    }

    func s3Configuration(_ address: ListenAddress, prefix: String) -> S3Blob.Configuration {
        let endpoint: S3Blob.Endpoint
        switch address {
        case .tcp(let host, let port): endpoint = .tcp(host: host, port: port)
        case .unix(let path): endpoint = .unix(path: path)
        }
        return S3Blob.Configuration(endpoint: endpoint, bucket: "bkt", prefix: prefix, credentials: BlobStoreTestKeys.credentials)
    }
}

/// S3Blob clients made during a test, shut down at its end.
final class BlobStoreClients: Sendable {
    private let made = Mutex<[S3Blob]>([])

    func make(_ configuration: S3Blob.Configuration) -> S3Blob {
        let blob = S3Blob(configuration)
        made.withLock { $0.append(blob) }
        return blob
    }

    func shutdownAll() async {
        for blob in made.withLock({ $0 }) { await blob.shutdown() }
    }
}

/// The `blob-store` executable as a real process: the Blob conformance suite through
/// S3Blob over TCP and a Unix socket, graceful SIGTERM, metrics, flags, and foreign
/// clients (boto3, the aws CLI).
@Suite struct BlobStoreProcessTests {
    enum Transport: String, CaseIterable, Sendable { case tcp, unix }

    @Test(arguments: Transport.allCases)
    func blobConformanceThroughS3Blob(_ transport: Transport) async throws {
        let server = try await BlobStoreServerProcess.start("conformance-\(transport.rawValue)")
        defer { server.directory.remove() }
        let clients = BlobStoreClients()
        let address = transport == .tcp ? server.tcp : server.unix
        let harness = ConformanceHarness<any Blob>(
            open: { clients.make(server.s3Configuration(address, prefix: "c-" + UUID().uuidString.lowercased())) },
            reopen: { old in
                let s3 = try #require(old as? S3Blob)
                return clients.make(s3.configuration)
            })
        for check in BlobConformance.checks {
            do {
                try await check.run(harness)
            } catch {
                Issue.record("\(check.name) over \(transport.rawValue): \(error)")
            }
        }
        // Every hostile key fits S3's limit and survives the round trip.
        let prefix = "hostile-\(transport.rawValue)/"
        let blob = clients.make(server.s3Configuration(address, prefix: prefix))
        let fitting = BlobConformance.hostileKeys.filter { (prefix + $0).utf8.count <= BlobStoreRouter.maxKeyBytes }
        #expect(fitting.count == BlobConformance.hostileKeys.count)
        for (i, key) in fitting.enumerated() { try await blob.set(key, Array("value \(i)".utf8)) }
        for (i, key) in fitting.enumerated() {
            #expect(try await blob.get(key) == Array("value \(i)".utf8), "\(key.debugDescription)")
        }
        let listed = try await blob.list(prefix: "").map(\.key)
        #expect(listed == fitting.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        for file in server.directory.files() where !file.hasPrefix("data/buckets/bkt/") {
            #expect(["keys", "ready", "server.log", "s3.sock"].contains(file), "unexpected file \(file)")
        }
        await clients.shutdownAll()
        #expect(try await server.stop() == 0, "\(server.child.output.suffix(2000))")
    }

    @Test func sigtermLetsAPutInFlightFinish() async throws {
        let server = try await BlobStoreServerProcess.start("sigterm")
        defer { server.directory.remove() }
        let body = Array(repeating: UInt8(42), count: 200_000)
        let request = BlobStoreRequestBuilder().request("PUT", "/bkt/in-flight", headers: [("Expect", "100-continue")], body: body)
        try await BlobStoreRawConnection.with(server.tcp) { connection in
            try await connection.send(Array(request.dropLast(body.count)))
            #expect(try await connection.response().status == 100)
            server.child.signal(SIGTERM)
            // Draining has begun once new connections are refused or closed unanswered.
            try await waitForBlobStore("the listener to close") {
                do {
                    let answered = try await BlobStoreRawConnection.with(server.tcp) { probe in
                        try await probe.send(BlobStoreRequestBuilder().request("GET", "/bkt/probe", headers: [("Connection", "close")]))
                        return try await probe.untilClosed()
                    }
                    return answered.isEmpty
                } catch {
                    return true
                }
            }
            try await connection.send(body)
            let response = try await connection.response()
            #expect(response.status == 200)
        }
        #expect(try await server.child.exitStatus() == 0, "\(server.child.output.suffix(2000))")
        let stored = FileManager.default.contents(atPath: server.dataDirectory + "/buckets/bkt/@in-flight")
        #expect(stored.map(Array.init) == body)
    }

    @Test func metricsCountRequests() async throws {
        let server = try await BlobStoreServerProcess.start("metrics")
        defer { server.directory.remove() }
        let put = try await BlobStoreRawConnection.with(server.unix) { connection in
            try await connection.send(BlobStoreRequestBuilder().request("PUT", "/bkt/m", body: [1, 2, 3]))
            return try await connection.response()
        }
        #expect(put.status == 200)
        let metrics = try await BlobStoreRawConnection.with(server.metrics) { connection in
            try await connection.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            return try await connection.response()
        }
        #expect(metrics.text.contains("blob_store_requests_total{op=\"PutObject\",status=\"200\"} 1"), "\(metrics.text)")
        #expect(metrics.text.contains("blob_store_request_duration_seconds"))
        #expect(metrics.text.contains("blob_store_received_bytes_total"))
        #expect(try await server.stop() == 0)
    }

    @Test func helpDocumentsEveryFlag() async throws {
        let help = try await BlobStoreChildProcess.run(try BlobStoreServerProcess.binary("blob-store"), ["--help"])
        #expect(help.status == 0)
        for flag in [
            "--data-dir", "--listen", "--metrics-listen", "--bucket", "--credentials-file", "--allow-anonymous", "--region",
            "--max-object-size", "--idle-timeout", "--log-level", "--ready-file",
        ] {
            #expect(help.output.contains(flag), "\(flag) missing from --help")
        }
        // The command and each of its own flags (the shared server flags aside) show an example.
        #expect(help.output.components(separatedBy: "Example").count > 8, "examples in --help")
    }

    @Test func badFlagsAreRefused() async throws {
        let binary = try BlobStoreServerProcess.binary("blob-store")
        let directory = BlobStoreTestDirectory("flags")
        defer { directory.remove() }
        let cases: [[String]] = [
            ["--data-dir", directory.path, "--allow-anonymous", "--bucket", "Bad_Bucket"],
            ["--data-dir", directory.path, "--allow-anonymous", "--listen", "nowhere"],
            ["--data-dir", directory.path, "--allow-anonymous", "--max-object-size", "0"],
            ["--data-dir", directory.path, "--listen", "127.0.0.1:0"],  // no credentials at all
            ["--data-dir", directory.path, "--credentials-file", directory.path + "/missing"],
        ]
        for arguments in cases {
            let result = try await BlobStoreChildProcess.run(binary, arguments, environment: ["PATH": "/usr/bin:/bin"], limit: .seconds(30))
            #expect(result.status != 0, "\(arguments) was accepted: \(result.output)")
        }
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func boto3AgainstTheServer() async throws {
        let python = "/usr/bin/env"
        let probe = try await BlobStoreChildProcess.run(python, ["python3", "-c", "import boto3; print(boto3.__version__)"])
        try #require(
            probe.status == 0,
            "boto3 is not importable by python3 (run tools/setup.sh, which installs tools/requirements.txt): \(probe.output)")
        let server = try await BlobStoreServerProcess.start("boto3")
        defer { server.directory.remove() }
        guard case .tcp(let host, let port) = server.tcp else { throw BlobStoreTestTimeout(what: "no TCP address") }
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = BlobStoreTestKeys.credentials.accessKeyID
        environment["AWS_SECRET_ACCESS_KEY"] = BlobStoreTestKeys.credentials.secretAccessKey
        environment["AWS_CONFIG_FILE"] = "/dev/null"
        environment["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        let script = Self.repositoryRoot.appendingPathComponent("tools/s3-compat/test_boto3.py").path
        let result = try await BlobStoreChildProcess.run(
            python, ["python3", script, "--endpoint", "http://\(host):\(port)", "--bucket", "bkt"], environment: environment)
        print(result.output)
        #expect(result.status == 0, "boto3 checks failed:\n\(result.output)")
        #expect(result.output.contains(" passed, 0 failed"))
        #expect(try await server.stop() == 0)
    }

    static let awsCLIAvailable: Bool = {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["aws", "--version"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    @Test(.enabled(if: awsCLIAvailable, "the aws CLI is not installed"))
    func awsCLIAgainstTheServer() async throws {
        let server = try await BlobStoreServerProcess.start("awscli")
        defer { server.directory.remove() }
        guard case .tcp(let host, let port) = server.tcp else { throw BlobStoreTestTimeout(what: "no TCP address") }
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = BlobStoreTestKeys.credentials.accessKeyID
        environment["AWS_SECRET_ACCESS_KEY"] = BlobStoreTestKeys.credentials.secretAccessKey
        environment["AWS_DEFAULT_REGION"] = "us-east-1"
        environment["AWS_CONFIG_FILE"] = "/dev/null"
        environment["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        let endpoint = ["--endpoint-url", "http://\(host):\(port)"]
        let file = server.directory.path + "/upload.txt"
        let content = Data("uploaded by the aws CLI\n".utf8)
        try content.write(to: URL(fileURLWithPath: file))
        func aws(_ arguments: [String]) async throws -> BlobStoreCommandResult {
            try await BlobStoreChildProcess.run("/usr/bin/env", ["aws"] + arguments + endpoint, environment: environment)
        }
        let put = try await aws(["s3api", "put-object", "--bucket", "bkt", "--key", "cli/one.txt", "--body", file])
        #expect(put.status == 0, "\(put.output)")
        let copy = try await aws(["s3", "cp", file, "s3://bkt/cli/two.txt"])
        #expect(copy.status == 0, "\(copy.output)")
        let download = server.directory.path + "/download.txt"
        let get = try await aws(["s3", "cp", "s3://bkt/cli/two.txt", download])
        #expect(get.status == 0, "\(get.output)")
        #expect(FileManager.default.contents(atPath: download) == content)
        let list = try await aws(["s3api", "list-objects-v2", "--bucket", "bkt", "--prefix", "cli/"])
        #expect(list.status == 0 && list.output.contains("cli/one.txt") && list.output.contains("cli/two.txt"), "\(list.output)")
        let delete = try await aws(["s3api", "delete-object", "--bucket", "bkt", "--key", "cli/one.txt"])
        #expect(delete.status == 0, "\(delete.output)")
        let head = try await aws(["s3api", "head-object", "--bucket", "bkt", "--key", "cli/one.txt"])
        #expect(head.status != 0 && head.output.contains("404"), "\(head.output)")
        #expect(try await server.stop() == 0)
    }
}
