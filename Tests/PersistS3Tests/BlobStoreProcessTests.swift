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

/// A `blob-store` process (a `SpawnedServer`) started from the built binary in a fresh
/// directory, with bucket `bkt`, the test keys, a TCP and a Unix socket listener, and a
/// metrics endpoint.
struct BlobStoreServerProcess: Sendable {
    let process: SpawnedServer
    let directory: BlobStoreTestDirectory
    /// The ready file's entries, parsed: listener name -> addresses, in the order written.
    let endpoints: [String: [ListenAddress]]

    var tcp: ListenAddress {
        endpoints["s3"]?.first { if case .tcp = $0 { true } else { false } } ?? .tcp(host: "127.0.0.1", port: 1)
    }
    var unix: ListenAddress {
        endpoints["s3"]?.first { if case .unix = $0 { true } else { false } } ?? .unix(path: "/nonexistent")
    }
    var metrics: ListenAddress { endpoints["metrics"]?.first ?? .tcp(host: "127.0.0.1", port: 1) }
    var dataDirectory: String { directory.path + "/data" }

    /// `http://host:port` of the TCP listener, as foreign clients take an endpoint.
    var httpEndpoint: String {
        get throws {
            guard case .tcp(let host, let port) = tcp else { throw ConformanceFailure("no TCP listener: \(endpoints)") }
            return "http://\(host):\(port)"
        }
    }

    /// The environment for a foreign client (boto3, the aws CLI): the test keys, and none
    /// of the user's AWS configuration.
    var awsEnvironment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = BlobStoreTestKeys.credentials.accessKeyID
        environment["AWS_SECRET_ACCESS_KEY"] = BlobStoreTestKeys.credentials.secretAccessKey
        environment["AWS_DEFAULT_REGION"] = "us-east-1"
        environment["AWS_CONFIG_FILE"] = "/dev/null"
        environment["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        return environment
    }

    /// Starts a server, runs `body`, then kills the server if `body` left it running (it
    /// failed before stopping it) and removes the directory.
    static func with(_ label: String, _ body: (BlobStoreServerProcess) async throws -> Void) async throws {
        let server = try await start(label)
        try await withCleanup { try await body(server) } cleanup: {
            if await server.process.exitStatus(within: .zero) == nil { await server.process.killed() }
            server.directory.remove()
        }
    }

    static func start(_ label: String) async throws -> BlobStoreServerProcess {
        let directory = BlobStoreTestDirectory(label)
        let keys = directory.path + "/keys"
        try Data("# test keys\n\(BlobStoreTestKeys.credentials.accessKeyID) \(BlobStoreTestKeys.credentials.secretAccessKey)\n".utf8)
            .write(to: URL(fileURLWithPath: keys))
        let process = try await SpawnedServer.launch(
            executable: try SpawnedServer.builtExecutable("blob-store"),
            arguments: [
                "--data-dir", directory.path + "/data", "--listen", "127.0.0.1:0", "--listen", "unix:" + directory.path + "/s3.sock",
                "--metrics-listen", "127.0.0.1:0", "--bucket", "bkt", "--credentials-file", keys, "--log-level", "debug",
            ],
            readyFile: directory.path + "/ready", logPath: directory.path + "/server.log", timeout: .seconds(120))
        let endpoints = try process.listeners.mapValues { try $0.map { try ListenAddress(parsing: $0) } }
        guard endpoints["s3"]?.count == 2, endpoints["metrics"]?.count == 1 else {
            await process.killed()
            throw ConformanceFailure("ready file: \(endpoints)")
        }
        return BlobStoreServerProcess(process: process, directory: directory, endpoints: endpoints)
    }

    /// The process's exit status once it ends (bounded by a generous hang guard).
    func exited() async throws -> Int32 {
        guard let status = await process.exitStatus(within: .seconds(120)) else {
            throw ConformanceFailure("blob-store did not exit:\n\(process.logTail())")
        }
        return status
    }

    /// SIGTERM, then the exit status.
    func stop() async throws -> Int32 {
        process.signal(SIGTERM)
        return try await exited()
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
        try await BlobStoreServerProcess.with("conformance-\(transport.rawValue)") { server in
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
            #expect(try await server.stop() == 0, "\(server.process.logTail())")
        }
    }

    @Test func sigtermLetsAPutInFlightFinish() async throws {
        try await BlobStoreServerProcess.with("sigterm") { server in
            let body = Array(repeating: UInt8(42), count: 200_000)
            let request = BlobStoreRequestBuilder().request("PUT", "/bkt/in-flight", headers: [("Expect", "100-continue")], body: body)
            try await BlobStoreRawConnection.with(server.tcp) { connection in
                #expect(try await connection.sendHead(of: request, bodyCount: body.count).status == 100)
                server.process.signal(SIGTERM)
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
            #expect(try await server.exited() == 0, "\(server.process.logTail())")
            let stored = FileManager.default.contents(atPath: server.dataDirectory + "/buckets/bkt/@in-flight")
            #expect(stored.map(Array.init) == body)
        }
    }

    @Test func metricsCountRequests() async throws {
        try await BlobStoreServerProcess.with("metrics") { server in
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
    }

    @Test func helpDocumentsEveryFlag() async throws {
        let help = try await ChildProgram.run(executable: try SpawnedServer.builtExecutable("blob-store"), arguments: ["--help"])
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
        let binary = try SpawnedServer.builtExecutable("blob-store")
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
            // No AWS_* variables: credentials can only come from the flags.
            let result = try await ChildProgram.run(executable: binary, arguments: arguments, environment: ["PATH": "/usr/bin:/bin"])
            #expect(result.status != 0, "\(arguments) was accepted: \(result.output)")
        }
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs a program found on `PATH`.
    static func runFromPath(_ arguments: [String], environment: [String: String]? = nil) async throws -> ChildProgram.Outcome {
        try await ChildProgram.run(executable: "/usr/bin/env", arguments: arguments, environment: environment)
    }

    @Test func boto3AgainstTheServer() async throws {
        let probe = try await Self.runFromPath(["python3", "-c", "import boto3; print(boto3.__version__)"])
        try #require(
            probe.status == 0,
            "boto3 is not importable by python3 (run tools/setup.sh, which installs tools/requirements.txt): \(probe.output)")
        try await BlobStoreServerProcess.with("boto3") { server in
            let script = Self.repositoryRoot.appendingPathComponent("tools/s3-compat/test_boto3.py").path
            let result = try await Self.runFromPath(
                ["python3", script, "--endpoint", try server.httpEndpoint, "--bucket", "bkt"], environment: server.awsEnvironment)
            print(result.output)
            #expect(result.status == 0, "boto3 checks failed:\n\(result.output)")
            #expect(result.output.contains(" passed, 0 failed"))
            #expect(try await server.stop() == 0)
        }
    }

    @Test(.enabled("the aws CLI is not installed") { try await runFromPath(["aws", "--version"]).status == 0 })
    func awsCLIAgainstTheServer() async throws {
        try await BlobStoreServerProcess.with("awscli") { server in
            let endpoint = ["--endpoint-url", try server.httpEndpoint]
            let file = server.directory.path + "/upload.txt"
            let content = Data("uploaded by the aws CLI\n".utf8)
            try content.write(to: URL(fileURLWithPath: file))
            func aws(_ arguments: [String]) async throws -> ChildProgram.Outcome {
                try await Self.runFromPath(["aws"] + arguments + endpoint, environment: server.awsEnvironment)
            }
            let put = try await aws(["s3api", "put-object", "--bucket", "bkt", "--key", "cli/one.txt", "--body", file])
            #expect(put.status == 0, "\(put.output)")
            let copy = try await aws(["s3", "cp", file, "s3://bkt/cli/two.txt"])
            #expect(copy.status == 0, "\(copy.output)")
            let nested = try await aws(["s3", "cp", file, "s3://bkt/cli/sub dir/three.txt"])
            #expect(nested.status == 0, "\(nested.output)")
            let download = server.directory.path + "/download.txt"
            let get = try await aws(["s3", "cp", "s3://bkt/cli/two.txt", download])
            #expect(get.status == 0, "\(get.output)")
            #expect(FileManager.default.contents(atPath: download) == content)
            let list = try await aws(["s3api", "list-objects-v2", "--bucket", "bkt", "--prefix", "cli/"])
            #expect(list.status == 0 && list.output.contains("cli/one.txt") && list.output.contains("cli/two.txt"), "\(list.output)")

            // `aws s3 ls` lists with delimiter "/": directories are the common prefixes.
            let root = try await aws(["s3", "ls", "s3://bkt/"])
            #expect(root.status == 0, "\(root.output)")
            #expect(Self.lines(root.output) == ["PRE cli/"], "\(root.output)")
            let folder = try await aws(["s3", "ls", "s3://bkt/cli/"])
            #expect(folder.status == 0, "\(folder.output)")
            let entries = Self.lines(folder.output).map { $0.split(separator: " ").last.map(String.init) ?? "" }
            #expect(Self.lines(folder.output).first == "PRE sub dir/", "\(folder.output)")
            #expect(entries.suffix(2) == ["one.txt", "two.txt"], "\(folder.output)")
            let recursive = try await aws(["s3", "ls", "--recursive", "s3://bkt/"])
            #expect(recursive.status == 0 && recursive.output.contains("cli/sub dir/three.txt"), "\(recursive.output)")

            let delete = try await aws(["s3api", "delete-object", "--bucket", "bkt", "--key", "cli/one.txt"])
            #expect(delete.status == 0, "\(delete.output)")
            let head = try await aws(["s3api", "head-object", "--bucket", "bkt", "--key", "cli/one.txt"])
            #expect(head.status != 0 && head.output.contains("404"), "\(head.output)")
            #expect(try await server.stop() == 0)
        }
    }

    /// The non-empty lines of a program's output, trimmed.
    static func lines(_ output: String) -> [String] {
        output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
