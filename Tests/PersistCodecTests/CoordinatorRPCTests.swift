import Foundation
import PersistCodec
import PersistCore
import Testing

/// The coordinator's frames: round trips, kinds kept apart from the consensus RPC, and
/// untrusted bytes never trap.
@Suite struct CoordinatorRPCTests {
    static var id: ShardID {
        get throws { try ShardID(bytes: Array(0..<16)) }
    }

    static func requests() throws -> [CoordinatorRequest] {
        let id = try Self.id
        return [
            .hello(token: Array("secret".utf8)),
            .createShard(name: "orders"),
            .listShards,
            .register(shards: [.name("orders"), .id(id)], at: nil),
            .register(shards: [], at: 7),
            .forget(shards: [.id(id)], at: 0),
            .commit(
                writes: [
                    ShardWrites(shard: .name("orders"), rows: [RowWrite(key: [1], value: [2, 3], diff: 1), RowWrite(key: [], diff: -4)]),
                    ShardWrites(shard: .id(id), rows: []),
                ], at: nil),
            .commit(writes: [], at: .max),
            .read(shard: .name("a/b:c"), asOf: nil),
            .read(shard: .id(id), asOf: 12),
            .readHistory(shard: .name("h"), asOf: nil),
            .readHistory(shard: .id(id), asOf: 0),
            .subscribe(shard: .name("x"), from: 3),
            .unsubscribe(requestID: .max),
            .compact(since: 99),
            .status,
        ]
    }

    static func responses() throws -> [CoordinatorResponse] {
        let id = try Self.id
        let u = Update(key: [9], value: [], time: 4, diff: -2)
        return [
            .helloOK,
            .shard(ShardInfo(name: "orders", id: id, registered: true)),
            .shards([]),
            .shards([ShardInfo(name: "a", id: id, registered: false), ShardInfo(name: "b", id: id, registered: true)]),
            .done(at: 5),
            .committed(at: .max),
            .snapshot(asOf: 3, rows: [u, Update(key: Array(repeating: 1, count: 300), value: [1], time: 0, diff: 1)]),
            .updates([]),
            .updates([u]),
            .progress(11),
            .status(CoordinatorStatus(txnsShard: id, upper: 10, since: 2, shards: 3, registered: 2, unapplied: 1)),
            .error(CoordinatorError(.timestampClosed, "closed", nextUsable: 8)),
            .error(CoordinatorError(.unknownShard, "no shard named zzz")),
        ]
    }

    func payload(_ frame: [UInt8]) throws -> [UInt8] {
        #expect(try RPCFraming.payloadLength(prefix: frame) == frame.count - RPCFraming.prefixLength)
        return Array(frame.dropFirst(RPCFraming.prefixLength))
    }

    @Test func requestsRoundTrip() throws {
        for (i, req) in try Self.requests().enumerated() {
            let decoded = try CoordinatorRPC.decodeRequest(try payload(CoordinatorRPC.encode(request: req, id: UInt64(i) << 33)))
            #expect(decoded.id == UInt64(i) << 33)
            #expect(decoded.request == req)
        }
    }

    @Test func responsesRoundTrip() throws {
        for (i, resp) in try Self.responses().enumerated() {
            let decoded = try CoordinatorRPC.decodeResponse(try payload(CoordinatorRPC.encode(response: resp, id: UInt64(i))))
            #expect(decoded.id == UInt64(i))
            #expect(decoded.response == resp)
        }
    }

    /// A coordinator frame sent to a consensus server (or the reverse) is refused by
    /// kind, with a message that says what it is.
    @Test func protocolsAreKeptApart() throws {
        let toCoordinator = try payload(CoordinatorRPC.encode(request: .status, id: 1))
        do {
            _ = try ConsensusRPC.decodeRequest(toCoordinator)
            Issue.record("a coordinator request decoded as a consensus request")
        } catch {
            #expect("\(error)".contains("coordinator request"))
        }
        let toConsensus = try payload(ConsensusRPC.encode(request: .listKeys, id: 1))
        #expect(throws: CodecError.self) { try CoordinatorRPC.decodeRequest(toConsensus) }
        #expect(CoordinatorRPC.requestID(ofDamagedRequest: toConsensus) == nil)
        let reply = try payload(CoordinatorRPC.encode(response: .helloOK, id: 1))
        #expect(throws: CodecError.self) { try CoordinatorRPC.decodeRequest(reply) }
    }

    @Test func shardNames() {
        for good in ["a", "orders", "team/orders:v2", "A-b_c.d", String(repeating: "x", count: 256)] {
            #expect(CoordinatorRPC.isValidShardName(good), "\(good)")
        }
        for bad in ["", " ", "a b", "é", "new\nline", String(repeating: "x", count: 257), "semi;colon"] {
            #expect(!CoordinatorRPC.isValidShardName(bad), "\(bad.debugDescription)")
        }
    }

    @Test func everyTruncationAndFlipIsRefused() throws {
        var samples = try Self.requests().map { (try payload(CoordinatorRPC.encode(request: $0, id: 9)), true) }
        samples += try Self.responses().map { (try payload(CoordinatorRPC.encode(response: $0, id: 9)), false) }
        for (p, isRequest) in samples {
            func decodes(_ b: [UInt8]) -> Bool {
                isRequest ? (try? CoordinatorRPC.decodeRequest(b)) != nil : (try? CoordinatorRPC.decodeResponse(b)) != nil
            }
            for cut in 0..<p.count { #expect(!decodes(Array(p[..<cut])), "a payload cut to \(cut) bytes decoded") }
            for i in p.indices {
                var b = p
                b[i] ^= 0x41
                #expect(!decodes(b), "a flip at \(i) decoded")
            }
        }
    }

    /// Random bodies behind a valid header and checksum reach every parser; none traps,
    /// and whatever decodes re-encodes to the same bytes.
    @Test func randomBodiesNeverTrap() {
        var g = SeededGenerator(seed: 77)
        for _ in 0..<50_000 {
            var b = (0..<Int.random(in: 15...120, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            b[0] = RPCFraming.currentVersion
            b[1] = UInt8.random(in: 3...4, using: &g)
            b[10] = UInt8.random(in: 1...12, using: &g)
            let crc = CRC32C.checksum(Array(b[..<(b.count - 4)]))
            for i in 0..<4 { b[b.count - 4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
            if let (id, req) = try? CoordinatorRPC.decodeRequest(b) {
                #expect(Array(CoordinatorRPC.encode(request: req, id: id).dropFirst(4)) == b)
            }
            if let (id, resp) = try? CoordinatorRPC.decodeResponse(b) {
                #expect(Array(CoordinatorRPC.encode(response: resp, id: id).dropFirst(4)) == b)
            }
        }
    }
}

extension CoordinatorRPCTests {
    /// The fuzzer starts from these seed files; they must stay valid encodings.
    @Test func fuzzSeedsDecode() throws {
        let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../tools/fuzz/seeds").standardized
        let request = try #require(FileManager.default.contents(atPath: seeds.appendingPathComponent("coordinator-request.bin").path))
        let response = try #require(FileManager.default.contents(atPath: seeds.appendingPathComponent("coordinator-response.bin").path))
        #expect(
            try CoordinatorRPC.decodeRequest(Array(request))
                == (2, .commit(writes: [ShardWrites(shard: .name("orders"), rows: [RowWrite(key: [1], value: [2], diff: 1)])], at: 5)))
        #expect(
            try CoordinatorRPC.decodeResponse(Array(response))
                == (2, .snapshot(asOf: 5, rows: [Update(key: [1], value: [2], time: 5, diff: 1)])))
    }
}
