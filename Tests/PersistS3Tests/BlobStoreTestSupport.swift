#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOPosix
import PersistConformance
import PersistS3
import PersistServices
import ServiceLifecycle
import Testing

/// A fresh directory under the system temp dir for one blob-store test.
struct BlobStoreTestDirectory: Sendable {
    let path: String

    init(_ label: String) {
        var template = Array("/tmp/blob-store-\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buf -> Bool in
            guard let base = buf.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        precondition(made, "mkdtemp failed: \(errno)")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Every regular file below the directory, as paths relative to it.
    func files() -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return [] }
        var out: [String] = []
        while let relative = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue {
                out.append(relative)
            }
        }
        return out.sorted()
    }
}

/// Runs `body`, failing with a `ConformanceFailure` if it has not finished by `limit`.
/// (The limit only bounds a hang; no outcome depends on it. `body` must end when
/// cancelled, or the failure waits for it.)
func withBlobStoreDeadline<T: Sendable>(
    _ limit: Duration = .seconds(60), _ what: String = "test", _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw ConformanceFailure("timed out: \(what)") }
        return value
    }
}

/// Polls `condition` until it holds or `limit` (a hang guard) passes.
func waitForBlobStore(_ what: String, limit: Duration = .seconds(120), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw ConformanceFailure("timed out: \(what)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Runs `body`, then `cleanup` whether `body` returned or threw.
func withCleanup<T>(_ body: () async throws -> T, cleanup: () async -> Void) async throws -> T {
    let result: Result<T, any Error>
    do {
        result = .success(try await body())
    } catch {
        result = .failure(error)
    }
    await cleanup()
    return try result.get()
}

/// The test key pair.
enum BlobStoreTestKeys {
    static let credentials = S3Credentials(accessKeyID: "AKIDBLOBSTORETEST", secretAccessKey: "c2VjcmV0L2tleStmb3IvdGVzdHM=")
    static let table = [credentials.accessKeyID: credentials.secretAccessKey]
}

/// An HTTP response as read off a raw connection.
struct BlobStoreRawResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    /// The S3 error document of the body, if it is one.
    var error: S3ErrorDocument? { try? S3XML.parseError(body) }
}

/// Builds raw HTTP/1.1 requests, signed with SigV4 unless told otherwise.
struct BlobStoreRequestBuilder: Sendable {
    var host = "localhost"
    var credentials: S3Credentials? = BlobStoreTestKeys.credentials
    var region = "us-east-1"
    var date: @Sendable () -> Date = { Date() }

    /// The request's bytes. `payloadHash` defaults to the body's SHA-256; `length` (the
    /// Content-Length) to the body's size, and `omitLength` leaves it out.
    func request(
        _ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = [], payloadHash: String? = nil,
        length: Int? = nil, omitLength: Bool = false
    ) -> [UInt8] {
        var all: [(name: String, value: String)] = [(name: "Host", value: host)] + headers.map { (name: $0.0, value: $0.1) }
        if let credentials {
            let signing = SigV4Request(method: method, target: target, headers: all)
            let added = SigV4.sign(
                request: signing, credentials: credentials, region: region, date: date(), payloadHash: payloadHash ?? SigV4.sha256Hex(body))
            all += added.map { (name: $0.0, value: $0.1) }
        }
        if !omitLength { all.append((name: "Content-Length", value: String(length ?? body.count))) }
        var text = "\(method) \(target) HTTP/1.1\r\n"
        for (name, value) in all { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        return Array(text.utf8) + body
    }
}

/// A client connection that speaks raw bytes, for feeding the server anything at all.
struct BlobStoreRawConnection {
    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    var buffered: [UInt8] = []
    var closed = false

    /// Connects to `address`, runs `body` over the connection, then closes it.
    static func with<T: Sendable>(
        _ address: ListenAddress, _ body: (inout BlobStoreRawConnection) async throws -> T
    ) async throws -> T {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        let initialize: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                    wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
            }
        }
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        switch address {
        case .tcp(let host, let port):
            channel = try await bootstrap.connect(to: try SocketAddress(ipAddress: host, port: port), channelInitializer: initialize)
        case .unix(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initialize)
        }
        return try await channel.executeThenClose { inbound, outbound in
            var connection = BlobStoreRawConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            return try await body(&connection)
        }
    }

    func send(_ bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    func send(_ text: String) async throws { try await send(Array(text.utf8)) }

    /// Closes the sending side only.
    func finishSending() { outbound.finish() }

    /// Reads more bytes; false at end of stream (or when the server reset the connection).
    mutating func fill() async throws -> Bool {
        guard !closed else { return false }
        do {
            guard var chunk = try await inbound.next() else {
                closed = true
                return false
            }
            buffered += chunk.readBytes(length: chunk.readableBytes) ?? []
            return true
        } catch let error as IOError where error.errnoCode == ECONNRESET {
            closed = true
            return false
        }
    }

    /// Reads one response. `head` says the request was a HEAD (no body follows).
    /// Informational (1xx) responses are returned like any other.
    mutating func response(head: Bool = false) async throws -> BlobStoreRawResponse {
        var end: Int?
        while true {
            if let range = findHeaderEnd() {
                end = range
                break
            }
            guard try await fill() else { throw ConformanceFailure("connection closed before a response head") }
        }
        guard let end else { throw ConformanceFailure("no response head") }
        let headText = String(decoding: buffered[..<end], as: UTF8.self)
        buffered.removeSubrange(..<(end + 4))
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        let status = statusLine.count >= 2 ? Int(statusLine[1]) ?? 0 : 0
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body: [UInt8] = []
        if head || status < 200 || status == 204 || status == 304 {
            // no body
        } else if let lengthText = headers["content-length"], let length = Int(lengthText) {
            while buffered.count < length {
                guard try await fill() else { throw ConformanceFailure("connection closed inside a response body") }
            }
            body = Array(buffered[..<length])
            buffered.removeSubrange(..<length)
        } else {
            while try await fill() {}
            body = buffered
            buffered = []
        }
        return BlobStoreRawResponse(status: status, headers: headers, body: body)
    }

    /// Sends `request` without its last `bodyCount` bytes (the body of a request that says
    /// `Expect: 100-continue`) and reads the answer to the head: `100 Continue`, or a
    /// final response that refuses the request before its body.
    mutating func sendHead(of request: [UInt8], bodyCount: Int) async throws -> BlobStoreRawResponse {
        try await send(Array(request.dropLast(bodyCount)))
        return try await response()
    }

    /// Reads until the server closes the connection; returns what arrived.
    mutating func untilClosed() async throws -> [UInt8] {
        while try await fill() {}
        let rest = buffered
        buffered = []
        return rest
    }

    private func findHeaderEnd() -> Int? {
        guard buffered.count >= 4 else { return nil }
        for i in 0...(buffered.count - 4)
        where buffered[i] == 13 && buffered[i + 1] == 10 && buffered[i + 2] == 13 && buffered[i + 3] == 10 {
            return i
        }
        return nil
    }
}

/// A `BlobStoreService` running in this process on port 0.
struct BlobStoreTestServer: Sendable {
    let addresses: [ListenAddress]
    let directory: BlobStoreTestDirectory
    let group: ServiceGroup
    var address: ListenAddress { addresses[0] }

    /// Starts a server with bucket `bkt` (configuration tweaked by `configure`), runs
    /// `body`, then shuts the server down gracefully and checks that it stopped.
    static func with(
        _ label: String, configure: (inout BlobStoreConfiguration) -> Void = { _ in },
        now: @escaping @Sendable () -> Date = { Date() },
        _ body: @escaping @Sendable (BlobStoreTestServer) async throws -> Void
    ) async throws {
        let directory = BlobStoreTestDirectory(label)
        defer { directory.remove() }
        var configuration = BlobStoreConfiguration(
            dataDirectory: directory.path + "/data", listen: [.tcp(host: "127.0.0.1", port: 0)], buckets: ["bkt"],
            credentials: BlobStoreTestKeys.table)
        configure(&configuration)
        let (ready, readyContinuation) = AsyncStream.makeStream(of: [ListenAddress].self)
        var logger = Logger(label: "blob-store-test")
        logger.logLevel = ProcessInfo.processInfo.environment["BLOB_STORE_TEST_LOG"] == nil ? .critical : .trace
        let service = BlobStoreService(
            configuration: configuration, logger: logger, now: now, onListening: { readyContinuation.yield($0) })
        let group = ServiceGroup(services: [service], logger: logger)
        try await withBlobStoreDeadline(.seconds(120), label) {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                var iterator = ready.makeAsyncIterator()
                guard let addresses = await iterator.next() else { throw ConformanceFailure("\(label): the server did not start") }
                let server = BlobStoreTestServer(addresses: addresses, directory: directory, group: group)
                try await withCleanup { try await body(server) } cleanup: { await group.triggerGracefulShutdown() }
                try await tasks.waitForAll()
            }
        }
    }

    /// Sends `request` on a new connection and returns the response.
    func exchange(_ request: [UInt8], head: Bool = false) async throws -> BlobStoreRawResponse {
        try await BlobStoreRawConnection.with(address) { connection in
            try await connection.send(request)
            return try await connection.response(head: head)
        }
    }
}
