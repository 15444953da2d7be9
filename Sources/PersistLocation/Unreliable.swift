import PersistCore
import Synchronization

/// Seeded fault injection shared by `UnreliableBlob` and `UnreliableConsensus`.
///
/// For each call it first decides whether the operation happens at all (`happenRate`);
/// a call that does not happen fails with an error of `skippedDeterminacy` (determinate
/// by default: it definitely did not happen). A call that happens may still be reported
/// as a timeout (`timeoutRate`): the effect is real, but the caller sees an indeterminate
/// error. Both kinds are what a real network does; the seed makes a run reproducible.
public final class FaultInjector: Sendable {
    public struct Rates: Sendable, Equatable {
        /// Probability that an operation is performed at all.
        public var happenRate: Double
        /// Probability that a performed operation reports a timeout anyway.
        public var timeoutRate: Double
        /// What an operation that was not performed reports.
        public var skippedDeterminacy: StorageError.Determinacy

        public init(happenRate: Double, timeoutRate: Double, skippedDeterminacy: StorageError.Determinacy = .determinate) {
            self.happenRate = happenRate
            self.timeoutRate = timeoutRate
            self.skippedDeterminacy = skippedDeterminacy
        }

        /// The reference system's defaults: 95% performed, 5% of those time out.
        public static let `default` = Rates(happenRate: 0.95, timeoutRate: 0.05)
        public static let reliable = Rates(happenRate: 1, timeoutRate: 0)
        public static let unavailable = Rates(happenRate: 0, timeoutRate: 0)
    }

    enum Outcome: Equatable {
        case perform
        case skip(StorageError)
        case performThenTimeout
    }

    private struct State {
        var rng: SeededGenerator
        var rates: Rates
        var injected = 0
    }

    private let state: Mutex<State>

    public init(seed: UInt64, rates: Rates = .default) {
        state = Mutex(State(rng: SeededGenerator(seed: seed), rates: rates))
    }

    /// Changes the rates from now on (e.g. to heal at the end of a test).
    public func setRates(_ rates: Rates) {
        state.withLock { $0.rates = rates }
    }

    /// How many faults have been injected so far.
    public var injectedCount: Int { state.withLock { $0.injected } }

    func decide(_ operation: String) -> Outcome {
        state.withLock { s in
            let happen = Double.random(in: 0..<1, using: &s.rng) < s.rates.happenRate
            guard happen else {
                s.injected += 1
                return .skip(
                    StorageError(
                        s.rates.skippedDeterminacy == .determinate ? .unavailable : .timeout,
                        s.rates.skippedDeterminacy, "injected fault: \(operation) was not performed"))
            }
            if Double.random(in: 0..<1, using: &s.rng) < s.rates.timeoutRate {
                s.injected += 1
                return .performThenTimeout
            }
            return .perform
        }
    }

    func run<T: Sendable>(_ operation: String, _ body: () async throws(StorageError) -> T) async throws(StorageError) -> T {
        switch decide(operation) {
        case .skip(let error):
            throw error
        case .perform:
            return try await body()
        case .performThenTimeout:
            _ = try await body()
            throw .indeterminate(.timeout, "injected fault: \(operation) was performed but timed out")
        }
    }
}

/// A `Blob` that injects faults into another one (see `FaultInjector`).
public struct UnreliableBlob: Blob {
    public let inner: any Blob
    public let faults: FaultInjector

    public init(_ inner: any Blob, faults: FaultInjector) {
        self.inner = inner
        self.faults = faults
    }

    public func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        try await faults.run("blob get") { () async throws(StorageError) in try await inner.get(key) }
    }

    public func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        try await faults.run("blob set") { () async throws(StorageError) in try await inner.set(key, value) }
    }

    public func delete(_ key: String) async throws(StorageError) -> Int? {
        try await faults.run("blob delete") { () async throws(StorageError) in try await inner.delete(key) }
    }

    public func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        try await faults.run("blob list") { () async throws(StorageError) in try await inner.list(prefix: prefix) }
    }
}

/// A `Consensus` that injects faults into another one (see `FaultInjector`).
public struct UnreliableConsensus: Consensus {
    public let inner: any Consensus
    public let faults: FaultInjector

    public init(_ inner: any Consensus, faults: FaultInjector) {
        self.inner = inner
        self.faults = faults
    }

    public func head(_ key: String) async throws(StorageError) -> VersionedData? {
        try await faults.run("consensus head") { () async throws(StorageError) in try await inner.head(key) }
    }

    public func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError)
        -> CaSResult
    {
        try await faults.run("consensus compare-and-set") { () async throws(StorageError) in
            try await inner.compareAndSet(key, expected: expected, new: new)
        }
    }

    public func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try await faults.run("consensus scan") { () async throws(StorageError) in
            try await inner.scan(key, from: from, limit: limit)
        }
    }

    public func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        try await faults.run("consensus truncate") { () async throws(StorageError) in
            try await inner.truncate(key, seqno: seqno)
        }
    }

    public func listKeys() async throws(StorageError) -> [String] {
        try await faults.run("consensus list keys") { () async throws(StorageError) in try await inner.listKeys() }
    }
}
