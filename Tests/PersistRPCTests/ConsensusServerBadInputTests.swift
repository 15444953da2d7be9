import Foundation
import PersistCodec
import PersistCore
import PersistLocation
import PersistRPC
import PersistServices
import Testing

/// Broken, hostile and unauthenticated input to the consensus server: every case gets an
/// error answer or a closed connection, and the server goes on serving the next request.
@Suite struct ConsensusServerBadInputTests {
    static let token: [UInt8] = Array("s3cret".utf8)

    /// A proper client round trip, to show the server still serves after each abuse.
    static func stillServes(_ address: ListenAddress) async throws {
        let client = patientClient(address.remoteEndpoint, token: token, connections: 1)
        defer { Task { await client.shutdown() } }
        let key = "alive-\(UUID().uuidString)"
        let result = try await client.compareAndSet(key, expected: nil, new: VersionedData(seqno: SeqNo(1), data: [1]))
        #expect(result == .committed)
        #expect(try await client.head(key) == VersionedData(seqno: SeqNo(1), data: [1]))
    }

    static func authenticated(_ address: ListenAddress) async throws -> RawConnection {
        let c = try await RawConnection(address)
        try await c.send(.hello(token: token), id: 1)
        let answer = try #require(try await c.response())
        #expect(answer.id == 1 && answer.response == .helloOK)
        return c
    }

    static func expectRefusal(_ answer: (id: UInt64, response: ConsensusResponse)?, id: UInt64, mentioning text: String)
        throws
    {
        let (gotID, response) = try #require(answer, "expected an error answer before the connection closed")
        #expect(gotID == id)
        guard case .error(let e) = response else {
            Issue.record("expected an error answer, got \(response)")
            return
        }
        #expect(e.isDeterminate)
        #expect(e.message.contains(text), "\(e.message)")
    }

    @Test func garbageBytesAreRefusedAndTheConnectionClosed() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let c = try await Self.authenticated(address)
            // An HTTP request line read as a length prefix announces ~542 MB.
            try await c.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            try Self.expectRefusal(try await c.response(), id: 0, mentioning: "frame refused")
            #expect(try await c.isClosedByServer())
            try await Self.stillServes(address)
        }
    }

    @Test(arguments: [UInt32.max, UInt32(ConsensusRPC.maxPayloadLength + 1), 0, 3])
    func outOfRangeLengthPrefixes(_ length: UInt32) async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let c = try await Self.authenticated(address)
            try await c.send(withUnsafeBytes(of: length.littleEndian, Array.init))
            try Self.expectRefusal(try await c.response(), id: 0, mentioning: "rpc frame length")
            #expect(try await c.isClosedByServer())
            try await Self.stillServes(address)
        }
    }

    @Test func aTruncatedFrameHoldsOnlyItsOwnConnection() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let c = try await Self.authenticated(address)
            let frame = ConsensusRPC.encode(request: .head(key: "k"), id: 2)
            try await c.send(Array(frame.prefix(frame.count / 2)))
            // The server waits for the rest of that frame; other clients are served meanwhile.
            try await Self.stillServes(address)
            // The rest arrives: the request is answered.
            try await c.send(Array(frame.dropFirst(frame.count / 2)))
            let answer = try #require(try await c.response())
            #expect(answer.id == 2 && answer.response == .head(nil))
        }
        // A client that disconnects mid-frame.
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            do {
                let c = try await Self.authenticated(address)
                try await c.send(Array(ConsensusRPC.encode(request: .listKeys, id: 9).prefix(7)))
            }
            try await Self.stillServes(address)
        }
    }

    @Test func aDamagedChecksumClosesTheConnection() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let c = try await Self.authenticated(address)
            var frame = ConsensusRPC.encode(request: .head(key: "k"), id: 3)
            frame[frame.count - 6] ^= 0x40
            try await c.send(frame)
            try Self.expectRefusal(try await c.response(), id: 0, mentioning: "malformed request")
            #expect(try await c.isClosedByServer())
            try await Self.stillServes(address)
        }
    }

    /// Large requests are decoded off the event loop; they are served the same way, and a
    /// damaged one is refused and closes its connection just like a small one.
    @Test func largeRequestsAreDecodedOffTheEventLoop() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let c = try await Self.authenticated(address)
            let big = VersionedData(seqno: SeqNo(1), data: Array(repeating: 3, count: 200 << 10))
            try await c.send(.compareAndSet(key: "big", expected: nil, new: big), id: 7)
            let answer = try #require(try await c.response())
            #expect(answer.id == 7 && answer.response == .compareAndSet(.committed))
            var damaged = ConsensusRPC.encode(
                request: .compareAndSet(key: "big", expected: SeqNo(1), new: VersionedData(seqno: SeqNo(2), data: big.data)), id: 8)
            damaged[damaged.count / 2] ^= 0x10
            try await c.send(damaged)
            try Self.expectRefusal(try await c.response(), id: 8, mentioning: "malformed request")
            #expect(try await c.isClosedByServer())
            try await Self.stillServes(address)
        }
    }

    /// A well-formed frame with an op this server does not know (a newer client, say) is
    /// answered with an error under its own id, and the connection goes on.
    @Test func unknownOpsAreAnsweredAndTheConnectionContinues() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let c = try await Self.authenticated(address)
            var w = ByteWriter()
            w.writeU32(0)
            w.writeU8(ConsensusRPC.currentVersion)
            w.writeU8(1)  // request
            w.writeU64(77)
            w.writeU8(200)  // no such op
            var frame = w.bytes
            let crc = frame.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[4...])) }
            frame += withUnsafeBytes(of: crc.littleEndian, Array.init)
            let length = UInt32(frame.count - 4).littleEndian
            withUnsafeBytes(of: length) { for i in 0..<4 { frame[i] = $0[i] } }
            try await c.send(frame)
            try Self.expectRefusal(try await c.response(), id: 77, mentioning: "unknown op 200")
            // Same connection, next request.
            try await c.send(.compareAndSet(key: "k", expected: nil, new: VersionedData(seqno: SeqNo(4), data: [4])), id: 78)
            let answer = try #require(try await c.response())
            #expect(answer.id == 78 && answer.response == .compareAndSet(.committed))
        }
    }

    /// A response frame sent to the server is not a request.
    @Test func aResponseFrameIsNotARequest() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let c = try await Self.authenticated(address)
            try await c.send(ConsensusRPC.encode(response: .helloOK, id: 5))
            try Self.expectRefusal(try await c.response(), id: 0, mentioning: "expected a consensus request")
            #expect(try await c.isClosedByServer())
            try await Self.stillServes(address)
        }
    }

    @Test func wrongTokenAndMissingHelloAreRejected() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token) { address in
            let wrong = try await RawConnection(address)
            try await wrong.send(.hello(token: Array("guess".utf8)), id: 1)
            let answer = try #require(try await wrong.response())
            #expect(answer.id == 1 && answer.response == .error(.determinate(.rejected, "wrong token")))
            #expect(try await wrong.isClosedByServer())

            let rude = try await RawConnection(address)
            try await rude.send(.listKeys, id: 1)
            let refused = try #require(try await rude.response())
            guard case .error(let e) = refused.response else {
                Issue.record("expected a refusal, got \(refused.response)")
                return
            }
            #expect(e.code == .rejected)
            #expect(try await rude.isClosedByServer())

            // The client surfaces a wrong token as a determinate rejection.
            let client = patientClient(address.remoteEndpoint, token: Array("nope".utf8))
            do throws(StorageError) {
                _ = try await client.listKeys()
                Issue.record("a wrong token was accepted")
            } catch {
                #expect(error.code == .rejected && error.isDeterminate)
            }
            await client.shutdown()
            try await Self.stillServes(address)
        }
    }

    /// A connection that never authenticates is closed after the hello timeout, while
    /// an authenticated one stays.
    @Test func silentStrangersAreDisconnected() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token, helloTimeout: .milliseconds(200)) {
            address in
            let stranger = try await RawConnection(address)
            let member = try await Self.authenticated(address)
            #expect(try await stranger.isClosedByServer())
            try await member.send(.listKeys, id: 2)
            let answer = try #require(try await member.response())
            #expect(answer.id == 2 && answer.response == .listKeys([]))
        }
    }

    /// A client that sends requests but never reads the answers fills its own socket
    /// buffers; the server then stops reading from it, and everyone else is served.
    @Test func aClientThatNeverReadsDoesNotBlockOthers() async throws {
        try await withConsensusServer(backend: MemoryConsensus(), token: Self.token, maxInFlight: 8) { address in
            let hog = try await Self.authenticated(address)
            let big = ConsensusRPC.encode(
                request: .compareAndSet(key: "hog", expected: nil, new: VersionedData(seqno: SeqNo(1), data: Array(repeating: 7, count: 256 << 10))),
                id: 2)
            try await hog.send(big)
            // Thousands of scans of the 256 KiB version: far more answer bytes than socket
            // buffers hold. Sent from another thread, which blocks once the server stops
            // reading; closing the socket at the end unblocks it.
            let scan = ConsensusRPC.encode(request: .scan(key: "hog", from: .minimum, limit: 1), id: 3)
            let fd = hog.fd
            let sender = Thread {
                for _ in 0..<2048 {
                    let sent = scan.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if sent <= 0 { return }
                }
            }
            sender.start()
            for _ in 0..<5 { try await Self.stillServes(address) }
            shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    /// Scans whose versions exceed the answer budget come back in pieces the client
    /// stitches together.
    @Test func largeScansArriveInPieces() async throws {
        let backend = MemoryConsensus()
        var expected: [VersionedData] = []
        for i in 0..<40 {
            let v = VersionedData(seqno: SeqNo(i), data: Array(repeating: UInt8(i), count: 1 << 20))
            _ = try await backend.compareAndSet("big", expected: i == 0 ? nil : SeqNo(i - 1), new: v)
            expected.append(v)
        }
        let all = expected
        try await withConsensusServer(backend: backend) { (address: ListenAddress) async throws in
            let client = patientClient(address.remoteEndpoint)
            #expect(try await client.scanAll("big") == all)
            #expect(try await client.scan("big", from: SeqNo(5), limit: 30) == Array(all[5..<35]))
            await client.shutdown()
        }
    }
}
