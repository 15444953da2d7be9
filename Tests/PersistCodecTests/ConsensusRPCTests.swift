import Foundation
import PersistCodec
import PersistCore
import Testing

/// The consensus server's frames: round trips, and untrusted bytes never trap.
@Suite struct ConsensusRPCTests {
    static let v = VersionedData(seqno: SeqNo(7), data: [1, 2, 3])

    static let requests: [ConsensusRequest] = [
        .hello(token: Array("secret".utf8)),
        .head(key: "s1"),
        .compareAndSet(key: "s1", expected: nil, new: v),
        .compareAndSet(key: "", expected: SeqNo(6), new: VersionedData(seqno: .maximum, data: [])),
        .scan(key: "s1", from: .minimum, limit: UInt64(Int64.max)),
        .truncate(key: "k\u{0}é", seqno: SeqNo(3)),
        .listKeys,
    ]

    static let responses: [ConsensusResponse] = [
        .helloOK,
        .head(nil),
        .head(v),
        .compareAndSet(.committed),
        .compareAndSet(.expectationMismatch(current: nil)),
        .compareAndSet(.expectationMismatch(current: v)),
        .scan([], truncated: false),
        .scan([v, VersionedData(seqno: SeqNo(8), data: Array(repeating: 9, count: 300))], truncated: true),
        .truncate(deleted: 5),
        .listKeys(["a", "b/c", ""]),
        .error(.determinate(.invalidArgument, "bad seqno")),
        .error(.indeterminate(.io, "fdatasync failed")),
    ]

    func payload(_ frame: [UInt8]) throws -> [UInt8] {
        let n = try ConsensusRPC.payloadLength(prefix: frame)
        #expect(n == frame.count - ConsensusRPC.prefixLength, "the prefix counts the rest of the frame")
        return Array(frame.dropFirst(ConsensusRPC.prefixLength))
    }

    @Test func requestsRoundTrip() throws {
        for (i, req) in Self.requests.enumerated() {
            let decoded = try ConsensusRPC.decodeRequest(try payload(ConsensusRPC.encode(request: req, id: UInt64(i) << 40)))
            #expect(decoded.id == UInt64(i) << 40)
            #expect(decoded.request == req)
        }
    }

    @Test func responsesRoundTrip() throws {
        for (i, resp) in Self.responses.enumerated() {
            let decoded = try ConsensusRPC.decodeResponse(try payload(ConsensusRPC.encode(response: resp, id: UInt64(i))))
            #expect(decoded.id == UInt64(i))
            #expect(decoded.response == resp)
        }
    }

    @Test func aRequestIsNotAResponse() throws {
        let p = try payload(ConsensusRPC.encode(request: .listKeys, id: 1))
        #expect(throws: CodecError.self) { try ConsensusRPC.decodeResponse(p) }
        let q = try payload(ConsensusRPC.encode(response: .helloOK, id: 1))
        #expect(throws: CodecError.self) { try ConsensusRPC.decodeRequest(q) }
    }

    @Test func lengthPrefixesOutOfRangeAreRefused() {
        for bad: UInt32 in [0, 14, UInt32(ConsensusRPC.maxPayloadLength) + 1, .max] {
            let prefix = (0..<4).map { UInt8(truncatingIfNeeded: bad >> (8 * UInt32($0))) }
            #expect(throws: CodecError.self) { try ConsensusRPC.payloadLength(prefix: prefix) }
        }
        #expect(throws: CodecError.self) { try ConsensusRPC.payloadLength(prefix: [1, 0]) }
    }

    @Test func everyTruncationAndFlipIsRefused() throws {
        var samples: [([UInt8], Bool)] = Self.requests.map { (try! payload(ConsensusRPC.encode(request: $0, id: 9)), true) }
        samples += Self.responses.map { (try! payload(ConsensusRPC.encode(response: $0, id: 9)), false) }
        for (p, isRequest) in samples {
            func decodes(_ b: [UInt8]) -> Bool {
                isRequest ? (try? ConsensusRPC.decodeRequest(b)) != nil : (try? ConsensusRPC.decodeResponse(b)) != nil
            }
            for cut in 0..<p.count { #expect(!decodes(Array(p[..<cut])), "a payload cut to \(cut) bytes decoded") }
            for i in p.indices {
                for mask: UInt8 in [0x01, 0x80, 0xFF] {
                    var b = p
                    b[i] ^= mask
                    #expect(!decodes(b), "a flip at \(i) decoded")
                }
            }
        }
    }

    @Test func randomBytesNeverTrap() {
        var g = SeededGenerator(seed: 31)
        for _ in 0..<50_000 {
            var b = (0..<Int.random(in: 0...80, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            if b.count >= 15 && Bool.random(using: &g) {
                // Give it a valid version and checksum so the body parsers are reached.
                b[0] = ConsensusRPC.currentVersion
                b[1] = UInt8.random(in: 1...2, using: &g)
                let crc = CRC32C.checksum(Array(b[..<(b.count - 4)]))
                for i in 0..<4 { b[b.count - 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
            }
            if let (id, req) = try? ConsensusRPC.decodeRequest(b) {
                #expect(Array(ConsensusRPC.encode(request: req, id: id).dropFirst(4)) == b, "decoded requests re-encode exactly")
            }
            if let (id, resp) = try? ConsensusRPC.decodeResponse(b) {
                #expect(Array(ConsensusRPC.encode(response: resp, id: id).dropFirst(4)) == b, "decoded responses re-encode exactly")
            }
        }
    }

    /// The fuzzer starts from these seed files; they must stay valid encodings.
    @Test func fuzzSeedsDecode() throws {
        let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../tools/fuzz/seeds").standardized
        let request = try #require(FileManager.default.contents(atPath: seeds.appendingPathComponent("rpc-request.bin").path))
        let response = try #require(FileManager.default.contents(atPath: seeds.appendingPathComponent("rpc-response.bin").path))
        #expect(try ConsensusRPC.decodeRequest(Array(request)).request == .compareAndSet(key: "s1", expected: SeqNo(6), new: Self.v))
        #expect(try ConsensusRPC.decodeResponse(Array(response)).response == .scan([Self.v], truncated: false))
    }
}
