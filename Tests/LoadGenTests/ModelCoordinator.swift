import LoadGenKit
import PersistCodec
import PersistCore
import Synchronization
import TxnClient

/// An in-memory coordinator with the semantics the workloads rely on, for end-to-end
/// runs without a network: commits at a time it picks (concurrent ones may share it
/// while none of them has been answered and no read has seen it), commits at an
/// explicit time refused once that time is closed, reads at one time, and seeded
/// faults of every determinacy.
actor ModelCoordinator: LoadTarget {
    struct Faults {
        /// Per commit: refused before anything happened (determinate transport error).
        var determinate = 0.0
        /// Per commit: applied, but the answer is lost (indeterminate).
        var appliedButLost = 0.0
        /// Per commit: lost before it was applied, answered indeterminately.
        var lostUnapplied = 0.0
        /// Per read: refused (determinate).
        var readFailure = 0.0
    }

    struct Committed: Sendable {
        var time: Timestamp
        var shard: String
        var row: RowWrite
    }

    var shards: [String: (id: ShardID, registered: Bool)] = [:]
    var log: [Committed] = []
    /// Every operation so far is at a time below this.
    var upper: Timestamp = 1
    /// The time of a commit group still taking members (no member answered, no read).
    var openGroup: Timestamp?
    var rng: SeededGenerator
    let faults: Faults
    /// A deliberate bug: commits apply only their first shard's rows.
    let tornCommits: Bool

    init(seed: UInt64, faults: Faults = Faults(), tornCommits: Bool = false) {
        rng = SeededGenerator(seed: seed)
        self.faults = faults
        self.tornCommits = tornCommits
    }

    private func chance(_ p: Double) -> Bool { p > 0 && Double.random(in: 0..<1, using: &rng) < p }

    func createShard(_ name: String) async throws -> ShardInfo {
        if let s = shards[name] { return ShardInfo(name: name, id: s.id, registered: s.registered) }
        let id = ShardID.random()
        shards[name] = (id, false)
        return ShardInfo(name: name, id: id, registered: false)
    }

    func register(_ refs: [ShardRef], at: Timestamp?) async throws -> Timestamp {
        for ref in refs {
            let name = try resolve(ref)
            shards[name]?.registered = true
        }
        openGroup = nil
        let ts = upper
        upper += 1
        return ts
    }

    private func resolve(_ ref: ShardRef) throws -> String {
        guard case .name(let name) = ref, shards[name] != nil else {
            throw CoordinatorError(.unknownShard, "no shard \(ref)")
        }
        return name
    }

    func commit(_ writes: [ShardWrites], at: Timestamp?) async throws -> Timestamp {
        var resolved: [(String, [RowWrite])] = []
        for w in writes {
            let name = try resolve(w.shard)
            guard shards[name]?.registered == true else { throw CoordinatorError(.notRegistered, "\(name)") }
            resolved.append((name, w.rows))
        }
        if chance(faults.determinate) { throw StorageError.determinate(.unavailable, "model: not sent") }
        let ts: Timestamp
        if let at {
            guard at >= upper else {
                throw CoordinatorError(.timestampClosed, "timestamp \(at) is already closed", nextUsable: upper)
            }
            ts = at
            upper = at + 1
            openGroup = nil
        } else if let group = openGroup {
            ts = group
        } else {
            ts = upper
            upper += 1
            openGroup = ts
        }
        if chance(faults.lostUnapplied) {
            throw StorageError.indeterminate(.timeout, "model: lost before applying")
        }
        for (i, (name, rows)) in resolved.enumerated() where !(tornCommits && i > 0) {
            for row in rows { log.append(Committed(time: ts, shard: name, row: row)) }
        }
        // Other calls run here; commits without a time may join this one's group.
        await Task.yield()
        if openGroup == ts { openGroup = nil }
        if chance(faults.appliedButLost) { throw StorageError.indeterminate(.timeout, "model: answer lost") }
        return ts
    }

    /// Resolves a read time and closes it for commits.
    private func readTime(_ asOf: Timestamp?) throws -> Timestamp {
        if chance(faults.readFailure) { throw StorageError.determinate(.unavailable, "model: read not sent") }
        openGroup = nil
        let t = asOf ?? (upper - 1)
        if t >= upper { upper = t + 1 }
        return t
    }

    func read(_ shard: ShardRef, asOf: Timestamp?) async throws -> (asOf: Timestamp, rows: [Update]) {
        let name = try resolve(shard)
        let t = try readTime(asOf)
        var sums: [[[UInt8]]: Int64] = [:]
        for c in log where c.shard == name && c.time <= t { sums[[c.row.key, c.row.value], default: 0] += c.row.diff }
        return (
            t, sums.filter { $0.value != 0 }.map { Update(key: $0.key[0], value: $0.key[1], time: t, diff: $0.value) }
        )
    }

    func readHistory(_ shard: ShardRef, asOf: Timestamp?) async throws -> (asOf: Timestamp, rows: [Update]) {
        let name = try resolve(shard)
        let t = try readTime(asOf)
        struct Slot: Hashable {
            var key: [UInt8]
            var value: [UInt8]
            var time: Timestamp
        }
        var sums: [Slot: Int64] = [:]
        for c in log where c.shard == name && c.time <= t {
            sums[Slot(key: c.row.key, value: c.row.value, time: c.time), default: 0] += c.row.diff
        }
        return (
            t,
            sums.filter { $0.value != 0 }.map {
                Update(key: $0.key.key, value: $0.key.value, time: $0.key.time, diff: $0.value)
            }
        )
    }
}

/// A history sink that keeps the bytes in memory.
final class MemorySink: HistorySink {
    private let state = Mutex((bytes: [UInt8](), closed: false))

    func write(_ bytes: [UInt8]) throws { state.withLock { $0.bytes += bytes } }
    func close() throws { state.withLock { $0.closed = true } }

    var closed: Bool { state.withLock { $0.closed } }
    var lines: [String] {
        String(decoding: state.withLock { $0.bytes }, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

extension ModelCoordinator {
    /// What a model holds, to carry over into another.
    struct Contents: Sendable {
        var shards: [String: ShardInfo]
        var log: [Committed]
        var upper: Timestamp
    }

    func contents() -> Contents {
        Contents(
            shards: shards.mapValues { ShardInfo(name: "", id: $0.id, registered: $0.registered) }, log: log,
            upper: upper)
    }

    func load(_ c: Contents) {
        shards = c.shards.mapValues { (id: $0.id, registered: $0.registered) }
        log = c.log
        upper = c.upper
    }
}
