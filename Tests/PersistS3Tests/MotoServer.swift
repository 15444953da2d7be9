#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PersistCore
import Testing

@testable import PersistS3

@testable import PersistConformance

/// moto's S3 in server mode (`python3 -m moto.server`, from the `moto[server]` package that
/// tools/requirements.txt pins): an S3 implementation independent of ours, started by the
/// test on a free loopback port and stopped at its end.
///
/// moto takes port 0 and reports the port it got ("Running on http://127.0.0.1:PORT"), so
/// no port is guessed. By default it checks no signatures; `enableAuthentication` makes it
/// verify every request's SigV4 signature with botocore's code, against an access key it
/// issued. Everything it stores lives in its memory and goes with the process.
///
/// With `tls` it serves HTTPS only, with the certificate and key given (see
/// `TestCertificates`); then it is reached as `localhost`, the name the test certificates
/// carry.
struct MotoServer: Sendable {
    let pid: pid_t
    let port: Int
    let directory: BlobStoreTestDirectory
    /// The certificates it serves HTTPS with, or nil for plain HTTP.
    var tls: TestCertificates? = nil
    /// With `tls`, the client its own requests go through (one for the server's life, so
    /// the trust store is read once, not per request).
    var tlsClient: S3Blob? = nil

    var logPath: String { directory.path + "/moto.log" }
    var endpoint: S3Blob.Endpoint { tls == nil ? .tcp(host: "127.0.0.1", port: port) : .https(host: "localhost", port: port) }
    /// TLS options that trust the test CA (the defaults for a plain-HTTP moto).
    var tlsOptions: S3Blob.TLSOptions { S3Blob.TLSOptions(additionalTrustRootFiles: tls.map { [$0.authority] } ?? []) }
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`), as location URLs and foreign
    /// clients take an endpoint.
    var url: String { tls == nil ? "http://127.0.0.1:\(port)" : "https://localhost:\(port)" }

    /// What to do when moto cannot be started.
    static let setupHint =
        "the S3 tests against moto need python3 with moto[server] (pinned in tools/requirements.txt): run tools/setup.sh"

    /// Any key pair: moto accepts every request until `enableAuthentication`.
    static let anyCredentials = S3Credentials(accessKeyID: "AKIDMOTOTESTANYTHING", secretAccessKey: "not checked")

    /// Starts a server, runs `body`, and stops the server whether `body` returned or threw.
    static func with<T: Sendable>(
        _ label: String, tls: TestCertificates? = nil, _ body: (MotoServer) async throws -> T
    ) async throws -> T {
        let server = try await start(label, tls: tls)
        return try await withCleanup { try await body(server) } cleanup: { await server.stop() }
    }

    /// Starts `python3 -m moto.server` and returns once it listens. Fails (naming
    /// tools/setup.sh) when python3 or moto is missing or the server does not come up.
    static func start(_ label: String, tls: TestCertificates? = nil) async throws -> MotoServer {
        let directory = BlobStoreTestDirectory("moto-\(label)")
        let logPath = directory.path + "/moto.log"
        var environment = ProcessInfo.processInfo.environment
        // One account for every request, whatever key signs it, and none of the user's AWS
        // configuration.
        environment["MOTO_ACCOUNT_ID"] = "123456789012"
        environment["AWS_CONFIG_FILE"] = "/dev/null"
        environment["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        environment["PYTHONUNBUFFERED"] = "1"
        let pid: pid_t
        do {
            pid = try SpawnedServer.spawn(
                "/usr/bin/env",
                ["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"] + (tls.map { ["-c", $0.serverCertificate, "-k", $0.serverKey] } ?? []),
                logPath: logPath, environment: environment)
        } catch {
            directory.remove()
            throw ConformanceFailure("\(setupHint) (cannot start python3: \(error))")
        }
        let port = try await SpawnedServer.offThread { Self.waitForPort(pid: pid, logPath: logPath, limit: .seconds(60)) }
        switch port {
        case .success(let port):
            var server = MotoServer(pid: pid, port: port, directory: directory, tls: tls)
            if tls != nil {
                server.tlsClient = S3Blob(
                    S3Blob.Configuration(
                        endpoint: server.endpoint, bucket: "unused", credentials: Self.anyCredentials, retry: .never,
                        tls: server.tlsOptions))
            }
            return server
        case .failure(let failure):
            directory.remove()
            throw failure
        }
    }

    /// Polls the log (blocking the calling thread) until moto says where it listens, it
    /// exits, or `limit` (a hang guard) passes.
    static func waitForPort(pid: pid_t, logPath: String, limit: Duration) -> Result<Int, ConformanceFailure> {
        let deadline = ContinuousClock.now + limit
        while true {
            if let text = try? String(contentsOfFile: logPath, encoding: .utf8), let port = listeningPort(in: text) {
                return .success(port)
            }
            if let status = SpawnedServer.reap(pid, by: ContinuousClock.now) {
                return .failure(
                    ConformanceFailure("moto exited (status \(status)) before listening; \(setupHint). Its output:\n\(SpawnedServer.tail(logPath))"))
            }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                _ = SpawnedServer.reap(pid, by: ContinuousClock.now + .seconds(30))
                return .failure(ConformanceFailure("moto did not listen within \(limit). Its output:\n\(SpawnedServer.tail(logPath))"))
            }
            usleep(20_000)
        }
    }

    /// The port of Werkzeug's "Running on http://127.0.0.1:PORT" (or https) line.
    static func listeningPort(in log: String) -> Int? {
        guard let range = log.range(of: "Running on http://127.0.0.1:") ?? log.range(of: "Running on https://127.0.0.1:") else { return nil }
        let digits = log[range.upperBound...].prefix { $0.isASCII && $0.isNumber }
        return Int(digits).flatMap { $0 > 0 ? $0 : nil }
    }

    /// Kills moto, reaps it and removes its directory. SIGKILL: moto keeps everything in
    /// memory, so nothing is lost, while a SIGTERM can stay pending for good (posix_spawn
    /// passes on the spawning thread's blocked and ignored signals, and Python does not
    /// reset them; here moto outlived a SIGTERM for the whole 30 s grace).
    func stop() async {
        await tlsClient?.shutdown()
        kill(pid, SIGKILL)
        let pid = self.pid
        _ = try? await SpawnedServer.offThread { SpawnedServer.reap(pid, by: ContinuousClock.now + .seconds(60)) }
        directory.remove()
    }

    func logTail() -> String { SpawnedServer.tail(logPath) }

    // MARK: Requests of its own

    /// Sends one request signed for `service` and `region` and returns the answer.
    /// `host` is the `Host` header (default: the endpoint). Over plain HTTP it goes on a
    /// fresh connection; over TLS through `tlsClient` (a kept-alive connection of an
    /// `S3Blob` that trusts the test CA).
    func send(
        _ method: String, _ target: String, host: String? = nil, headers: [(String, String)] = [], body: [UInt8] = [],
        service: String = "s3", region: String = "us-east-1", credentials: S3Credentials = anyCredentials
    ) async throws -> BlobStoreRawResponse {
        var all: [(name: String, value: String)] =
            [(name: "Host", value: host ?? (tls == nil ? "127.0.0.1:\(port)" : "localhost:\(port)"))] + headers.map { (name: $0.0, value: $0.1) }
        all.append((name: "Content-Length", value: String(body.count)))
        let signing = SigV4Request(method: method, target: target, headers: all)
        let signature = SigV4.sign(
            request: signing, credentials: credentials, region: region, service: service, date: Date(), payloadHash: SigV4.sha256Hex(body))
        all += signature.map { (name: $0.0, value: $0.1) }
        if tls != nil { return try await sendOverTLS(S3HTTPRequest(method: method, target: target, headers: all, body: body)) }
        var text = "\(method) \(target) HTTP/1.1\r\n"
        for (name, value) in all { text += "\(name): \(value)\r\n" }
        text += "Connection: close\r\n\r\n"
        let request = Array(text.utf8) + body
        return try await BlobStoreRawConnection.with(.tcp(host: "127.0.0.1", port: port)) { connection in
            try await connection.send(request)
            return try await connection.response(head: method == "HEAD")
        }
    }

    /// Sends a signed `request` once through `tlsClient`.
    private func sendOverTLS(_ request: S3HTTPRequest) async throws -> BlobStoreRawResponse {
        guard let tlsClient else { throw ConformanceFailure("no TLS client for a plain-HTTP moto") }
        let outcome = await tlsClient.attempt(request, operation: .putObject(key: request.target, body: request.body))
        switch outcome {
        case .answered(let response):
            var headers: [String: String] = [:]
            for (name, value) in response.headers { headers[name.lowercased()] = value }
            return BlobStoreRawResponse(status: response.status, headers: headers, body: response.body)
        case .failed(let error, _):
            throw ConformanceFailure("\(request.method) \(request.target) over TLS: \(error)\n\(logTail())")
        }
    }

    /// CreateBucket, in `region` (outside us-east-1 S3 wants the region named in the body).
    func createBucket(_ bucket: String, region: String = "us-east-1", credentials: S3Credentials = anyCredentials) async throws {
        let body =
            region == "us-east-1"
            ? []
            : Array(
                """
                <CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\
                <LocationConstraint>\(region)</LocationConstraint></CreateBucketConfiguration>
                """.utf8)
        let answer = try await send("PUT", "/" + bucket, body: body, region: region, credentials: credentials)
        guard answer.status == 200 else {
            throw ConformanceFailure("CreateBucket \(bucket) in \(region): HTTP \(answer.status) \(answer.text)\n\(logTail())")
        }
    }

    /// Makes moto check signatures from now on: creates an IAM user allowed every S3
    /// action, issues it an access key, and switches authentication on. Returns the key.
    func enableAuthentication() async throws -> S3Credentials {
        func iam(_ parameters: [(String, String)]) async throws -> String {
            let form = (parameters + [("Version", "2010-05-08")])
                .map { "\(SigV4.uriEncode($0.0, encodeSlash: true))=\(SigV4.uriEncode($0.1, encodeSlash: true))" }
                .joined(separator: "&")
            let answer = try await send(
                "POST", "/", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Array(form.utf8), service: "iam")
            guard answer.status == 200 else {
                throw ConformanceFailure("IAM \(parameters.first?.1 ?? ""): HTTP \(answer.status) \(answer.text)\n\(logTail())")
            }
            return answer.text
        }
        let user = "s3blob-tests"
        _ = try await iam([("Action", "CreateUser"), ("UserName", user)])
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
        _ = try await iam([("Action", "PutUserPolicy"), ("UserName", user), ("PolicyName", "all-of-s3"), ("PolicyDocument", policy)])
        let created = try await iam([("Action", "CreateAccessKey"), ("UserName", user)])
        guard let id = Self.element("AccessKeyId", in: created), let secret = Self.element("SecretAccessKey", in: created) else {
            throw ConformanceFailure("CreateAccessKey answered without a key: \(created)")
        }
        // The number of requests moto still serves without checking them: none.
        let switched = try await send("POST", "/moto-api/reset-auth", headers: [("Content-Type", "application/octet-stream")], body: Array("0".utf8))
        guard switched.status == 200 else { throw ConformanceFailure("reset-auth: HTTP \(switched.status) \(switched.text)") }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret)
    }

    /// The text of the first `<name>` element of an XML document (no entities expected).
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else {
            return nil
        }
        return String(xml[open.upperBound..<close.lowerBound])
    }
}
