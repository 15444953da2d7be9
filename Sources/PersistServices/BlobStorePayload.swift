import Crypto
import Foundation
import PersistCodec

/// A checksum algorithm of S3's "additional checksums" (`x-amz-checksum-<name>` headers
/// and trailers). The value on the wire is the base64 of the big-endian digest.
public enum BlobStoreChecksumAlgorithm: String, CaseIterable, Hashable, Sendable {
    case crc32
    case crc32c
    case crc64nvme
    case sha1
    case sha256

    /// The header (or trailer) name that carries the value: `x-amz-checksum-crc32` etc.
    public var headerName: String { "x-amz-checksum-" + rawValue }

    /// The algorithm named by an `x-amz-checksum-*` header name (any case), if known.
    public init?(headerName: String) {
        let lower = headerName.lowercased()
        guard lower.hasPrefix("x-amz-checksum-") else { return nil }
        self.init(rawValue: String(lower.dropFirst("x-amz-checksum-".count)))
    }

    /// Digest length in bytes.
    var digestBytes: Int {
        switch self {
        case .crc32, .crc32c: 4
        case .crc64nvme: 8
        case .sha1: 20
        case .sha256: 32
        }
    }

    /// The upper-case spelling S3 uses in messages (`CRC32`, `SHA256`).
    var displayName: String { rawValue.uppercased() }
}

/// A running checksum of one of the `BlobStoreChecksumAlgorithm`s.
struct BlobStoreChecksum {
    private enum State {
        case crc32(UInt32)
        case crc32c(UInt32)
        case crc64(UInt64)
        case sha1(Insecure.SHA1)
        case sha256(SHA256)
    }

    let algorithm: BlobStoreChecksumAlgorithm
    private var state: State

    init(_ algorithm: BlobStoreChecksumAlgorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .crc32: state = .crc32(0xFFFF_FFFF)
        case .crc32c: state = .crc32c(CRC32C.start)
        case .crc64nvme: state = .crc64(~0)
        case .sha1: state = .sha1(Insecure.SHA1())
        case .sha256: state = .sha256(SHA256())
        }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch state {
        case .crc32(let crc): state = .crc32(Self.crc32Update(crc, bytes))
        case .crc32c(let crc): state = .crc32c(CRC32C.update(crc, bytes))
        case .crc64(let crc): state = .crc64(Self.crc64Update(crc, bytes))
        case .sha1(var h):
            h.update(bufferPointer: bytes)
            state = .sha1(h)
        case .sha256(var h):
            h.update(bufferPointer: bytes)
            state = .sha256(h)
        }
    }

    /// The digest so far, big-endian for the CRCs.
    func digest() -> [UInt8] {
        switch state {
        case .crc32(let crc): Self.bigEndian(UInt64(~crc), bytes: 4)
        case .crc32c(let crc): Self.bigEndian(UInt64(CRC32C.finish(crc)), bytes: 4)
        case .crc64(let crc): Self.bigEndian(~crc, bytes: 8)
        case .sha1(let h): Array(h.finalize())
        case .sha256(let h): Array(h.finalize())
        }
    }

    /// The checksum of `bytes` as S3 sends it: base64 of the digest.
    static func base64(_ algorithm: BlobStoreChecksumAlgorithm, of bytes: [UInt8]) -> String {
        var c = BlobStoreChecksum(algorithm)
        bytes.withUnsafeBytes { c.update($0) }
        return Data(c.digest()).base64EncodedString()
    }

    private static func bigEndian(_ value: UInt64, bytes: Int) -> [UInt8] {
        (0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(bytes - 1 - $0))) }
    }

    // CRC-32 (ISO-HDLC, as zlib): reflected polynomial 0xEDB88320.
    private static let crc32Table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    // CRC-64/NVME: reflected polynomial 0x9A6C9329AC4BC9B5, initial and final value all ones.
    private static let crc64Table: [UInt64] = (0..<256).map { n in
        var c = UInt64(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0x9A6C_9329_AC4B_C9B5 ^ (c >> 1) : c >> 1 }
        return c
    }

    private static func crc32Update(_ state: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        crc32Table.withUnsafeBufferPointer { t in
            var crc = state
            for b in bytes { crc = t[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
            return crc
        }
    }

    private static func crc64Update(_ state: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        crc64Table.withUnsafeBufferPointer { t in
            var crc = state
            for b in bytes { crc = t[Int((crc ^ UInt64(b)) & 0xFF)] ^ (crc >> 8) }
            return crc
        }
    }
}

/// How a PutObject body is framed and which integrity checks it must pass, decided from
/// the request headers before any body byte is read.
///
/// Framing: a plain body, or `aws-chunked` (signalled by an `x-amz-content-sha256` of
/// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` or
/// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`, or, for unsigned requests, by
/// `Content-Encoding: aws-chunked`). Checks: `Content-MD5`, a hex `x-amz-content-sha256`
/// (plain bodies only), an `x-amz-checksum-*` header, and the checksum trailer named by
/// `x-amz-trailer`.
///
/// Not verified: the per-chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` and the
/// `x-amz-trailer-signature` of its `-TRAILER` variant. The request's own signature (which
/// covers the headers, including the declared decoded length and trailer name) is checked
/// as usual, and every checksum the client declared is verified, but a man in the middle
/// could alter chunk data that no checksum covers. ECDSA (SigV4a) streaming is refused as
/// not implemented.
public struct BlobStorePayloadPlan: Hashable, Sendable {
    /// Whether the body is `aws-chunked`.
    public var chunked: Bool
    /// The length of the object the body carries, if the headers declare it
    /// (`x-amz-decoded-content-length` for chunked bodies, `Content-Length` otherwise).
    public var declaredLength: Int?
    /// The SHA-256 a plain body must have (from a hex `x-amz-content-sha256`).
    public var expectedSHA256: [UInt8]?
    /// The MD5 from `Content-MD5`.
    public var expectedMD5: [UInt8]?
    /// A checksum given as a request header: the algorithm and its expected digest.
    public var headerChecksum: BlobStoreChecksumAlgorithm?
    /// The digest that header declares.
    public var headerChecksumValue: [UInt8]?
    /// The checksum the `x-amz-trailer` header promises at the end of a chunked body.
    public var trailerChecksum: BlobStoreChecksumAlgorithm?

    static let streamingMarkers: Set<String> = [
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ]

    /// Reads the plan from the request headers (`header` looks one up by case-insensitive
    /// name). Refuses a declared length above `maxObjectSize` with `EntityTooLarge`,
    /// malformed digests with `InvalidDigest`/`InvalidRequest`/`InvalidArgument`, and
    /// unsupported streaming formats with `NotImplemented`.
    public static func make(header: (String) -> String?, maxObjectSize: Int) throws(BlobStoreError) -> BlobStorePayloadPlan {
        var plan = BlobStorePayloadPlan(chunked: false)
        let sha = header("x-amz-content-sha256")
        let encodings = (header("content-encoding") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if let sha, sha.hasPrefix("STREAMING-") {
            guard streamingMarkers.contains(sha) else { throw .notImplemented("The streaming payload format \(sha)") }
            plan.chunked = true
        } else if sha == nil, encodings.contains("aws-chunked") {
            plan.chunked = true
        } else if let sha, sha != "UNSIGNED-PAYLOAD" {
            guard sha.utf8.count == 64, let digest = hexBytes(sha) else {
                throw .invalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-..., or a hex SHA-256.")
            }
            plan.expectedSHA256 = digest
        }

        let lengthHeader = plan.chunked ? "x-amz-decoded-content-length" : "content-length"
        if let text = header(lengthHeader) {
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= 0 else {
                throw .invalidArgument("The \(lengthHeader) header is not a non-negative integer.")
            }
            plan.declaredLength = n
            guard n <= maxObjectSize else { throw .entityTooLarge(limit: maxObjectSize) }
        }

        if let md5 = header("content-md5") {
            guard let bytes = Data(base64Encoded: md5.trimmingCharacters(in: .whitespaces)), bytes.count == 16 else {
                throw .invalidDigest("The Content-MD5 you specified was invalid.")
            }
            plan.expectedMD5 = Array(bytes)
        }

        for algorithm in BlobStoreChecksumAlgorithm.allCases {
            guard let value = header(algorithm.headerName) else { continue }
            guard plan.headerChecksum == nil else {
                throw .invalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum types are not allowed.")
            }
            guard let bytes = Data(base64Encoded: value.trimmingCharacters(in: .whitespaces)), bytes.count == algorithm.digestBytes else {
                throw .invalidRequest("Value for \(algorithm.headerName) header is invalid.")
            }
            plan.headerChecksum = algorithm
            plan.headerChecksumValue = Array(bytes)
        }

        if let trailer = header("x-amz-trailer") {
            let name = trailer.trimmingCharacters(in: .whitespaces)
            guard plan.chunked else { throw .invalidRequest("The x-amz-trailer header needs an aws-chunked body.") }
            guard let algorithm = BlobStoreChecksumAlgorithm(headerName: name) else {
                throw .invalidRequest("The trailer \"\(name)\" is not a supported checksum (x-amz-checksum-crc32, -crc32c, -crc64nvme, -sha1, -sha256).")
            }
            plan.trailerChecksum = algorithm
        }
        return plan
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let b = Array(text.utf8)
        guard b.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(b.count / 2)
        var i = 0
        while i < b.count {
            guard let hi = BlobStoreRouter.hexValue(b[i]), let lo = BlobStoreRouter.hexValue(b[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// Decodes an `aws-chunked` body incrementally: `<hex size>[;extensions]\r\n<data>\r\n`
/// repeated, a zero-size chunk, then trailer lines `name:value\r\n` and an empty line.
///
/// Input may arrive split anywhere; data is passed on as it is decoded, so nothing but a
/// chunk-size line or trailer line is buffered. Chunk extensions (`chunk-signature=...`)
/// are accepted and not verified.
struct AWSChunkedDecoder {
    enum State: Equatable {
        case sizeLine
        case data(remaining: Int)
        case dataEnd(crSeen: Bool)
        case trailers
        case done
    }

    static let maxLineBytes = 4096
    static let maxTrailerBytes = 16 * 1024

    private(set) var state = State.sizeLine
    private var line: [UInt8] = []
    private var trailerBytes = 0
    /// Trailer fields in arrival order, names lower-cased.
    private(set) var trailers: [(name: String, value: String)] = []

    /// Feeds `input`, handing every decoded data range to `emit`.
    mutating func feed(
        _ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws(BlobStoreError) -> Void
    ) throws(BlobStoreError) {
        var i = 0
        let n = input.count
        while i < n {
            switch state {
            case .sizeLine, .trailers:
                let byte = input[i]
                i += 1
                if byte == UInt8(ascii: "\n") {
                    guard line.last == UInt8(ascii: "\r") else { throw Self.malformed("a line ends without CRLF") }
                    line.removeLast()
                    let text = line
                    line.removeAll(keepingCapacity: true)
                    if state == .sizeLine { try sizeLineEnded(text) } else { try trailerLineEnded(text) }
                } else {
                    line.append(byte)
                    guard line.count <= Self.maxLineBytes else { throw Self.malformed("a chunk header or trailer line is too long") }
                }
            case .data(let remaining):
                let take = min(remaining, n - i)
                try emit(UnsafeRawBufferPointer(rebasing: input[i..<(i + take)]))
                i += take
                state = take == remaining ? .dataEnd(crSeen: false) : .data(remaining: remaining - take)
            case .dataEnd(let crSeen):
                let byte = input[i]
                i += 1
                if !crSeen {
                    guard byte == UInt8(ascii: "\r") else { throw Self.malformed("chunk data is longer than its declared size") }
                    state = .dataEnd(crSeen: true)
                } else {
                    guard byte == UInt8(ascii: "\n") else { throw Self.malformed("chunk data is not followed by CRLF") }
                    state = .sizeLine
                }
            case .done:
                throw Self.malformed("data follows the final chunk")
            }
        }
    }

    /// Checks that the body ended where the encoding says it does.
    func finish() throws(BlobStoreError) {
        guard state == .done else {
            throw .incompleteBody("The aws-chunked body ended before its final chunk and trailers.")
        }
    }

    private mutating func sizeLineEnded(_ text: [UInt8]) throws(BlobStoreError) {
        let digits = text.prefix { $0 != UInt8(ascii: ";") }
        guard !digits.isEmpty, digits.count <= 15 else { throw Self.malformed("bad chunk size") }
        var size = 0
        for d in digits {
            guard let v = BlobStoreRouter.hexValue(d) else { throw Self.malformed("bad chunk size") }
            size = size << 4 | Int(v)
        }
        state = size == 0 ? .trailers : .data(remaining: size)
    }

    private mutating func trailerLineEnded(_ text: [UInt8]) throws(BlobStoreError) {
        if text.isEmpty {
            state = .done
            return
        }
        trailerBytes += text.count
        guard trailerBytes <= Self.maxTrailerBytes else { throw Self.malformed("the trailers are too long") }
        guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else { throw Self.malformed("a trailer line has no colon") }
        let name = String(decoding: text[..<colon], as: UTF8.self).trimmingCharacters(in: .whitespaces).lowercased()
        let value = String(decoding: text[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
        trailers.append((name, value))
    }

    private static func malformed(_ why: String) -> BlobStoreError {
        .invalidRequest("Malformed aws-chunked body: \(why).")
    }
}

/// Receives a PutObject body according to a `BlobStorePayloadPlan`: decodes the framing,
/// enforces the size limit as bytes arrive (so an oversized upload is refused without
/// being buffered), collects the object bytes into one buffer, and at the end verifies
/// every declared digest. Each digest is computed once, piece by piece as the body
/// arrives (while the piece is in the cache). The MD5, which is also the object's ETag,
/// is computed here only when `Content-MD5` must be checked before storing (see
/// `BlobStoreObjectMD5` for the other cases).
struct BlobStoreBodyReceiver {
    let plan: BlobStorePayloadPlan
    let maxObjectSize: Int
    private var decoder: AWSChunkedDecoder?
    private(set) var object: [UInt8] = []
    private var md5: Insecure.MD5?
    private var sha256: SHA256?
    private var headerChecksum: BlobStoreChecksum?
    private var trailerChecksum: BlobStoreChecksum?
    /// Raw body bytes received (before aws-chunked decoding).
    private(set) var rawBytes = 0

    init(plan: BlobStorePayloadPlan, maxObjectSize: Int) {
        self.plan = plan
        self.maxObjectSize = maxObjectSize
        decoder = plan.chunked ? AWSChunkedDecoder() : nil
        md5 = plan.expectedMD5 == nil ? nil : Insecure.MD5()
        sha256 = plan.expectedSHA256 == nil ? nil : SHA256()
        headerChecksum = plan.headerChecksum.map(BlobStoreChecksum.init)
        trailerChecksum = plan.trailerChecksum.map(BlobStoreChecksum.init)
        // Reserve what the client declared, so that the object is assembled in one buffer
        // and never copied to grow it. The request is authenticated by now and the length
        // is within maxObjectSize (the plan checked); a reservation only takes address
        // space, whose pages are committed as bytes arrive, and the limit is enforced on
        // what actually arrives.
        object.reserveCapacity(min(plan.declaredLength ?? 0, maxObjectSize))
    }

    /// Takes the next piece of the raw body.
    mutating func receive(_ bytes: UnsafeRawBufferPointer) throws(BlobStoreError) {
        rawBytes += bytes.count
        if var d = decoder {
            // Moved out while feeding so that `emit` may mutate self.
            decoder = nil
            defer { decoder = d }
            try d.feed(bytes) { (piece) throws(BlobStoreError) in try self.accept(piece) }
        } else {
            try accept(bytes)
        }
    }

    private mutating func accept(_ piece: UnsafeRawBufferPointer) throws(BlobStoreError) {
        guard object.count + piece.count <= maxObjectSize else { throw .entityTooLarge(limit: maxObjectSize) }
        if let declared = plan.declaredLength, object.count + piece.count > declared {
            throw .incompleteBody("The body is longer than the declared length of \(declared) bytes.")
        }
        object.append(contentsOf: piece)
        md5?.update(bufferPointer: piece)
        sha256?.update(bufferPointer: piece)
        headerChecksum?.update(piece)
        trailerChecksum?.update(piece)
    }

    /// Verifies the complete body; returns the object, and its MD5 digest if it was
    /// computed (when `Content-MD5` was given).
    mutating func finish() throws(BlobStoreError) -> (object: [UInt8], md5: [UInt8]?) {
        var trailers: [(name: String, value: String)] = []
        if let decoder {
            try decoder.finish()
            trailers = decoder.trailers
        }
        if let declared = plan.declaredLength, object.count != declared {
            throw .incompleteBody("You did not provide the number of bytes specified (\(declared)); got \(object.count).")
        }
        let md5Digest = md5.map { Array($0.finalize()) }
        if let expected = plan.expectedMD5, expected != md5Digest { throw .badDigest }
        if let expected = plan.expectedSHA256, let sha256, Array(sha256.finalize()) != expected { throw .contentSHA256Mismatch }
        if let checksum = headerChecksum, let expected = plan.headerChecksumValue, checksum.digest() != expected {
            throw .checksumMismatch(checksum.algorithm.displayName)
        }
        if let checksum = trailerChecksum {
            guard let text = trailers.first(where: { $0.name == checksum.algorithm.headerName })?.value else {
                throw .incompleteBody("The body ended without the promised \(checksum.algorithm.headerName) trailer.")
            }
            guard let value = Data(base64Encoded: text), value.count == checksum.algorithm.digestBytes else {
                throw .invalidRequest("Value for \(checksum.algorithm.headerName) trailer is invalid.")
            }
            guard Array(value) == checksum.digest() else { throw .checksumMismatch(checksum.algorithm.displayName) }
        }
        let result = object
        object = []
        return (result, md5Digest)
    }

    /// The MD5 digest of `object`.
    static func md5(of object: [UInt8]) -> [UInt8] {
        var md5 = Insecure.MD5()
        object.withUnsafeBytes { md5.update(bufferPointer: $0) }
        return Array(md5.finalize())
    }
}
