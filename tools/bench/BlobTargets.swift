#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistS3
import Synchronization

/// What the blob benchmark stores objects in and reads them back from.
enum BlobTarget: String, CaseIterable, Codable, Sendable {
    /// One file per object written with `write` and `fdatasync`, read with `read`: the
    /// disk's own rate, with no rename, no directory fsync and no protocol.
    case raw
    /// `FileBlob` in this process: temporary file, fsync, rename, directory fsync.
    case fileBlob = "file-blob"
    /// A `blob-store` server process (`FileBlob` behind HTTP/1.1 and SigV4), reached
    /// through `S3Blob`.
    case blobStore = "blob-store"

    var displayName: String {
        switch self {
        case .raw: return "raw disk"
        case .fileBlob: return "FileBlob"
        case .blobStore: return "blob-store"
        }
    }
}

/// The three operations the blob benchmark needs from a target, keyed by name.
struct BlobTargetOperations: Sendable {
    var put: @Sendable (String, [UInt8]) async throws(BenchError) -> Void
    var get: @Sendable (String) async throws(BenchError) -> [UInt8]
    var remove: @Sendable (String) async throws(BenchError) -> Void
}

/// Files written and read with plain system calls: the raw disk rate.
///
/// The blocking calls run on a concurrent Dispatch queue, as `FileBlob`'s do, so
/// concurrent requests really overlap and Swift's cooperative threads never block.
struct RawFileTarget: Sendable {
    let directory: String

    private static let queue = DispatchQueue(
        label: "persist-bench.raw-io", qos: .userInitiated, attributes: .concurrent)

    init(directory: String) throws(BenchError) {
        self.directory = directory
        try System.makeDirectory(directory)
    }

    var operations: BlobTargetOperations {
        let directory = self.directory
        return BlobTargetOperations(
            put: { key, bytes throws(BenchError) in
                try await Self.offload { () throws(BenchError) in try Self.writeFile(bytes, to: "\(directory)/\(key)") }
            },
            get: { key throws(BenchError) in
                try await Self.offload { () throws(BenchError) in try Self.readFile("\(directory)/\(key)") }
            },
            remove: { key throws(BenchError) in
                guard unlink("\(directory)/\(key)") == 0 else {
                    throw BenchError("unlink \(directory)/\(key): \(System.errnoText())")
                }
            })
    }

    /// Runs blocking `work` on the queue and waits for it without holding a thread.
    private static func offload<T: Sendable>(
        _ work: @escaping @Sendable () throws(BenchError) -> T
    ) async throws(BenchError) -> T {
        let outcome: Result<T, BenchError> = await withCheckedContinuation { continuation in
            queue.async {
                do throws(BenchError) {
                    continuation.resume(returning: .success(try work()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try outcome.get()
    }

    /// Creates (or truncates) `path`, writes `bytes` and fdatasyncs it.
    private static func writeFile(_ bytes: [UInt8], to path: String) throws(BenchError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchError("open \(path): \(System.errnoText())") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { buffer -> Int in
            var done = 0
            while done < buffer.count {
                guard let base = buffer.baseAddress else { return done }
                let n = write(fd, base + done, buffer.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return -1
                }
                done += n
            }
            return done
        }
        guard written == bytes.count else { throw BenchError("write \(path): \(System.errnoText())") }
        while fdatasync(fd) != 0 {
            guard errno == EINTR else { throw BenchError("fdatasync \(path): \(System.errnoText())") }
        }
    }

    /// The whole contents of `path`, sized with `fstat` and read with `read`.
    private static func readFile(_ path: String) throws(BenchError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("open \(path): \(System.errnoText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw BenchError("fstat \(path): \(System.errnoText())") }
        let size = Int(info.st_size)
        var failed = false
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            var done = 0
            while done < size, let base = buffer.baseAddress {
                let n = read(fd, base + done, size - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
            failed = done != size
            // Whatever was not read is zeroed so the array is fully initialized.
            if done < size, let base = buffer.baseAddress { (base + done).initialize(repeating: 0, count: size - done) }
            initialized = size
        }
        guard !failed else { throw BenchError("read \(path): short read or \(System.errnoText())") }
        return bytes
    }
}

/// The benchmark operations of any `Blob`; `name` prefixes error messages.
func storeOperations(_ blob: some Blob, name: String) -> BlobTargetOperations {
    BlobTargetOperations(
        put: { key, bytes throws(BenchError) in
            do {
                try await blob.set(key, bytes)
            } catch {
                throw BenchError("\(name) set \(key): \(error)")
            }
        },
        get: { key throws(BenchError) in
            let value: [UInt8]?
            do {
                value = try await blob.get(key)
            } catch {
                throw BenchError("\(name) get \(key): \(error)")
            }
            guard let value else { throw BenchError("\(name) get \(key): the object is missing") }
            return value
        },
        remove: { key throws(BenchError) in
            do {
                _ = try await blob.delete(key)
            } catch {
                throw BenchError("\(name) delete \(key): \(error)")
            }
        })
}

/// A `blob-store` server process started for the benchmark, serving one bucket from a
/// data directory of its own, with generated credentials.
struct BlobStoreProcess: Sendable {
    static let bucket = "bench"

    let server: BenchServer
    let credentials: S3Credentials

    var pid: pid_t { server.pid }
    var endpoint: S3Blob.Endpoint {
        switch server.endpoint {
        case .tcp(let host, let port): .tcp(host: host, port: port)
        case .unix(let path): .unix(path: path)
        }
    }

    /// Starts the server on `directory/blobs`, listening on loopback TCP (a port the
    /// kernel picks) or, with `unix`, on a socket. Objects up to `maxObjectBytes` are accepted.
    static func start(directory: String, unix: Bool, maxObjectBytes: Int) throws(BenchError) -> BlobStoreProcess {
        let executable = try System.siblingExecutable("blob-store", neededBy: "the blob benchmark")
        let credentials = S3Credentials(
            accessKeyID: "BENCH" + System.randomHex(8), secretAccessKey: System.randomHex(20))
        let credentialsFile = "\(directory)/blob-store.keys"
        try System.writePrivateFile(credentialsFile, "\(credentials.accessKeyID) \(credentials.secretAccessKey)\n")
        let server = try BenchServer.start(
            name: "the blob-store server", executable: executable,
            arguments: [
                "--data-dir", "\(directory)/blobs", "--bucket", bucket, "--credentials-file", credentialsFile,
                "--max-object-size", "\(maxObjectBytes)",
            ],
            directory: directory, unix: unix, socketName: "blob-store.sock", listener: "s3")
        return BlobStoreProcess(server: server, credentials: credentials)
    }

    /// Sends SIGTERM, waits for the exit and fails unless the server exited 0.
    func stop() throws(BenchError) {
        try server.stop()
    }

    /// A client of the server with up to `connections` connections.
    func client(connections: Int) -> S3Blob {
        S3Blob(
            S3Blob.Configuration(
                endpoint: endpoint, bucket: Self.bucket, credentials: credentials, maxConnections: connections,
                requestTimeout: .seconds(600)))
    }
}

/// Hands out the indices `0..<count` once each to concurrent workers.
final class IndexDispenser: Sendable {
    private let next = Mutex(0)
    let count: Int

    init(count: Int) { self.count = count }

    /// The next index not yet handed out, or nil when all are.
    func take() -> Int? {
        next.withLock { n in
            guard n < count else { return nil }
            defer { n += 1 }
            return n
        }
    }
}

/// Collects the objects a GET phase returns, by index, for checking after the clock stops.
final class ReceivedObjects: Sendable {
    private let slots: Mutex<[[UInt8]?]>

    init(count: Int) { slots = Mutex([[UInt8]?](repeating: nil, count: count)) }

    func store(_ bytes: [UInt8], at index: Int) { slots.withLock { $0[index] = bytes } }

    func all() -> [[UInt8]?] { slots.withLock { $0 } }
}

/// The wall time of one phase and each request's latency.
struct PhaseTiming: Sendable {
    var seconds: Double
    var latencyNanoseconds: [UInt64]
}

/// Runs `operation` for every index in `0..<count` with `concurrency` workers, each
/// taking the next index when its previous request is done, and times the whole phase
/// and each request.
func drivePhase(
    count: Int, concurrency: Int, _ operation: @escaping @Sendable (Int) async throws(BenchError) -> Void
) async throws(BenchError) -> PhaseTiming {
    let dispenser = IndexDispenser(count: count)
    let clock = ContinuousClock()
    let start = clock.now
    let perWorker: [[UInt64]]
    do {
        perWorker = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<max(1, concurrency) {
                group.addTask {
                    var latencies: [UInt64] = []
                    while let index = dispenser.take() {
                        let t0 = clock.now
                        try await operation(index)
                        latencies.append((clock.now - t0).nanoseconds)
                    }
                    return latencies
                }
            }
            var all: [[UInt64]] = []
            for try await latencies in group { all.append(latencies) }
            return all
        }
    } catch let error as BenchError {
        throw error
    } catch {
        throw BenchError("\(error)")
    }
    let seconds = (clock.now - start).seconds
    return PhaseTiming(seconds: seconds, latencyNanoseconds: perWorker.flatMap { $0 })
}
