import Crypto
import Dispatch
import NIOCore
import Synchronization

/// The MD5 of a received object, which is its ETag: how it is (or will be) known.
///
/// A `Content-MD5` must be checked before anything is stored, so it is computed as the
/// body arrives (`known`). Otherwise nothing stored depends on it, and it is computed on
/// another thread while the body arrives (`pending`), or, for bodies whose framing hides
/// the object bytes from the connection shell (aws-chunked), after it arrived while the
/// object is written (`unknown`). Each way, each byte is hashed once.
enum BlobStoreObjectMD5: Sendable {
    case known([UInt8])
    case pending(BlobStoreBackgroundMD5)
    case unknown

    /// The digest of `object`, the body it was received with.
    func digest(of object: [UInt8]) async -> [UInt8] {
        switch self {
        case .known(let digest): return digest
        case .pending(let hasher): return await hasher.digest()
        case .unknown: return BlobStoreBodyReceiver.md5(of: object)
        }
    }
}

/// An MD5 computed on its own serial queue from buffers handed over as they arrive, so
/// that hashing overlaps receiving, checking and writing the body. Buffers are batched
/// (`batchBytes`) to keep the hand-overs few.
final class BlobStoreBackgroundMD5: Sendable {
    private struct Batch {
        var buffers: [ByteBuffer] = []
        var bytes = 0

        mutating func take() -> [ByteBuffer] {
            defer { self = Batch() }
            return buffers
        }
    }

    static let batchBytes = 1 << 20

    private let queue = DispatchQueue(label: "blob-store.md5")
    /// Filled by the receiving side.
    private let batch = Mutex(Batch())
    /// Only touched on `queue`, so never contended.
    private let md5 = Mutex(Insecure.MD5())

    init() {}

    /// Adds `buffer`'s readable bytes, after everything added before.
    func update(_ buffer: ByteBuffer) {
        let ready = batch.withLock { b -> [ByteBuffer]? in
            b.buffers.append(buffer)
            b.bytes += buffer.readableBytes
            return b.bytes >= Self.batchBytes ? b.take() : nil
        }
        if let ready { queue.async { self.hash(ready) } }
    }

    /// The digest of everything added; call once, after the last `update`.
    func digest() async -> [UInt8] {
        let rest = batch.withLock { $0.take() }
        return await withCheckedContinuation { continuation in
            queue.async {
                self.hash(rest)
                continuation.resume(returning: self.md5.withLock { Array($0.finalize()) })
            }
        }
    }

    private func hash(_ buffers: [ByteBuffer]) {
        md5.withLock { md5 in
            for buffer in buffers { buffer.withUnsafeReadableBytes { md5.update(bufferPointer: $0) } }
        }
    }
}
