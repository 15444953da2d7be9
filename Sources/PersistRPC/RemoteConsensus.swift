import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PersistCodec
import PersistCore
import PersistLocation

/// A `Consensus` served by a `consensus` process, over its binary RPC.
///
/// Requests are spread over a small pool of connections, each carrying many requests at
/// once (answers are matched to requests by id, in any order). A connection that breaks
/// is replaced by the next request that lands on its slot.
///
/// Determinacy follows one rule: a request that was never written (no connection could
/// be made, or it had already closed) failed determinately; a request that was written
/// but whose answer never came (timeout, connection lost) is indeterminate, because the
/// server may have applied it. Errors the server reports keep the server's determinacy.
/// The client does not retry on its own: persist's CaS loop decides how to resolve an
/// indeterminate compare-and-set (by reading), which only it can do correctly.
public final class RemoteConsensus: Consensus {
    public typealias Endpoint = RPCEndpoint

    public typealias Configuration = RPCClientConfiguration

    public let configuration: Configuration
    let pool: RPCClientPool<ConsensusClientProtocol>

    public init(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "persist.remote-consensus")
    ) {
        self.configuration = configuration
        self.pool = RPCClientPool(configuration, serverName: "consensus server", group: group, logger: logger)
    }

    /// Closes every connection. Requests in flight fail indeterminately; later requests
    /// fail determinately.
    public func shutdown() async {
        await pool.shutdown()
    }

    // MARK: Consensus

    public func head(_ key: String) async throws(StorageError) -> VersionedData? {
        switch try await call(.head(key: key)) {
        case .head(let v): return v
        case let other: throw Self.unexpected(other, for: "head")
        }
    }

    public func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
        // Checked here too, so a misuse fails determinately without a round trip.
        try ConsensusPreconditions.checkCaS(key, expected: expected, new: new)
        switch try await call(.compareAndSet(key: key, expected: expected, new: new)) {
        case .compareAndSet(let result): return result
        case let other: throw Self.unexpected(other, for: "compare-and-set")
        }
    }

    public func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try ConsensusPreconditions.checkScanLimit(limit)
        // The server answers large scans in pieces; ask again after each truncated one.
        var result: [VersionedData] = []
        var next = from
        while result.count < limit {
            switch try await call(.scan(key: key, from: next, limit: UInt64(limit - result.count))) {
            case .scan(let versions, let truncated):
                result.append(contentsOf: versions)
                guard truncated, let last = versions.last, let after = SeqNo(last.seqno.rawValue + 1) else {
                    return result
                }
                next = after
            case let other: throw Self.unexpected(other, for: "scan")
            }
        }
        return result
    }

    public func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        switch try await call(.truncate(key: key, seqno: seqno)) {
        case .truncate(let deleted): return Int(clamping: deleted)
        case let other: throw Self.unexpected(other, for: "truncate")
        }
    }

    public func listKeys() async throws(StorageError) -> [String] {
        switch try await call(.listKeys) {
        case .listKeys(let keys): return keys
        case let other: throw Self.unexpected(other, for: "list keys")
        }
    }

    func call(_ request: ConsensusRequest) async throws(StorageError) -> ConsensusResponse {
        let response = try await pool.call(request)
        if case .error(let e) = response { throw e }
        return response
    }

    static func unexpected(_ response: ConsensusResponse, for op: String) -> StorageError {
        .indeterminate(.failed, "the consensus server answered \(op) with \(response)")
    }
}

/// The consensus RPC as its client sees it.
public enum ConsensusClientProtocol: RPCClientProtocol {
    public static func encode(request: ConsensusRequest, id: UInt64) -> [UInt8] {
        ConsensusRPC.encode(request: request, id: id)
    }

    public static func decodeResponse(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, response: ConsensusResponse) {
        try ConsensusRPC.decodeResponse(payload)
    }

    public static func opName(_ request: ConsensusRequest) -> String { request.opName }

    public static func hello(token: [UInt8]) -> ConsensusRequest { .hello(token: token) }

    public static func helloRefusal(_ response: ConsensusResponse) -> String? {
        switch response {
        case .helloOK: nil
        case .error(let e): e.message
        case let other: "unexpected answer \(other)"
        }
    }

    public static func isFrameRefusal(_ response: ConsensusResponse) -> Bool {
        if case .error = response { return true }
        return false
    }
}
