import Logging
import PersistClient
import PersistCodec
import PersistCore
import PersistLocation
import Synchronization
import Testing

@testable import TxnCoordinator

// Shared helpers of the coordinator tests: in-memory storage that several coordinators
// (or restarts) can share, a hand-driven clock, and one-shot gates to hold the worker.

/// A persist configuration with millisecond polls and backoffs, so that waits on other
/// handles end quickly.
func coordinatorTestPersistConfig() -> PersistConfig {
    var c = PersistConfig()
    c.pollInterval = .milliseconds(1)
    c.initialBackoff = .milliseconds(1)
    c.maxBackoff = .milliseconds(20)
    return c
}

/// Storage shared by every coordinator a test opens: a "process" is a new
/// `PersistClient` over the same blob and consensus.
struct CoordinatorEnv {
    let blob = MemoryBlob()
    let consensus = MemoryConsensus()
    let txnsShard: ShardID
    let clock: ManualPersistClock

    init(seed: UInt64, clockStart: UInt64 = 1_000_000) {
        var rng = SeededGenerator(seed: seed)
        txnsShard = ShardID(using: &rng)
        clock = ManualPersistClock(startingAt: clockStart)
    }

    func client() -> PersistClient {
        PersistClient(blob: blob, consensus: consensus, config: coordinatorTestPersistConfig(), clock: clock)
    }

    func configuration(groupCommit: Bool = true, maxRows: Int = 1_000_000, maxBytes: Int = 64 << 20)
        -> TxnCoordinator.Configuration
    {
        TxnCoordinator.Configuration(
            txnsShard: txnsShard, groupCommit: groupCommit, maxRowsPerCommit: maxRows, maxBytesPerCommit: maxBytes)
    }

    /// A coordinator in a new "process" (its own client), optionally with its own clock,
    /// name-table consensus and worker hooks.
    func open(
        _ configuration: TxnCoordinator.Configuration? = nil, clock: (any PersistClock)? = nil,
        namesConsensus: (any Consensus)? = nil, hooks: CoordinatorHooks = CoordinatorHooks()
    ) async throws -> TxnCoordinator {
        try await TxnCoordinator.open(
            client: client(), consensus: namesConsensus ?? consensus, configuration: configuration ?? self.configuration(),
            clock: clock ?? self.clock, logger: Logger(label: "test.coordinator"), hooks: hooks)
    }
}

/// A one-shot latch: `wait()` suspends until `open()`; after that it returns at once.
final class HookGate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let proceed = state.withLock { s in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if proceed { c.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { s in
            s.open = true
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }
}

/// Records values reported from hooks, in order.
final class HookLog<T: Sendable>: Sendable {
    private let values = Mutex<[T]>([])

    func append(_ v: T) { values.withLock { $0.append(v) } }
    var all: [T] { values.withLock { $0 } }
}

/// Waits (yielding, with a short sleep) until `condition` holds; records an issue and
/// returns false if it does not within about ten seconds. Used for "the worker has
/// reached the hook" and "the commits are queued", never for timing assertions.
@discardableResult
func waitUntil(_ what: Comment, _ condition: () async -> Bool) async -> Bool {
    for _ in 0..<10_000 {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("timed out waiting: \(what)")
    return false
}

/// `diff` copies of the row `key` (empty value).
func rowW(_ key: String, _ diff: Int64 = 1) -> RowWrite { RowWrite(key: Array(key.utf8), diff: diff) }

/// A read's rows as `key@time*diff` strings, sorted.
func rowStrings(_ rows: [Update]) -> [String] {
    rows.map { "\(String(decoding: $0.key, as: UTF8.self))@\($0.time)*\($0.diff)" }.sorted()
}

/// A read's keys (each repeated by its diff), sorted.
func keysOf(_ rows: [Update]) -> [String] {
    rows.flatMap { u in Array(repeating: String(decoding: u.key, as: UTF8.self), count: Int(max(u.diff, 0))) }.sorted()
}

/// The error a call threw (nil if it succeeded).
func catchCoordinatorError<T>(_ body: () async throws(CoordinatorError) -> T) async -> CoordinatorError? {
    do {
        _ = try await body()
        return nil
    } catch {
        return error
    }
}
