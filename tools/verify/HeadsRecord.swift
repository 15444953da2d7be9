import PersistClient
import PersistCodec
import PersistCore
import PersistLocation

// Library-ready: the record and its comparison are pure; `HeadsRecord.read` is the one
// I/O function (PersistCore, PersistCodec, PersistLocation, PersistClient).

/// Every consensus key's head seqno, and for shards their upper and since, at one moment:
/// what `txn-verify heads` writes as JSON after each restart of the crash test, so that
/// consecutive records show that nothing went backwards.
struct HeadsRecord: Codable, Hashable, Sendable {
    static let currentFormat = "txn-verify-heads/1"

    /// One consensus key.
    struct Entry: Codable, Hashable, Sendable {
        var key: String
        var seqno: UInt64
        /// For a shard: its upper, `[t]` or `[]` (closed). Absent for other keys.
        var upper: [Timestamp]?
        /// For a shard: its since, `[t]` or `[]`.
        var since: [Timestamp]?
        /// For a shard whose state could not be read: why.
        var stateError: String?
    }

    var format = Self.currentFormat
    /// Ascending by key.
    var keys: [Entry]

    init(keys: [Entry]) {
        self.keys = keys.sorted { $0.key < $1.key }
    }

    /// Reads every key's head from `consensus`, and every shard's upper and since: from
    /// its whole state when `inspector` is given (which needs the blob store for the
    /// rollup), else from the diffs still in consensus (the newest diff that changed each
    /// frontier; a frontier no retained diff changed is left out, unless the diffs go back
    /// to the shard's creation, when it is still the initial `[0]`). Shards whose state
    /// cannot be read are recorded with `stateError` (and reported by `problems`). Throws
    /// only what the store threw.
    static func read(consensus: any Consensus, inspector: ShardStateInspector?) async throws -> HeadsRecord {
        var entries: [Entry] = []
        for key in try await consensus.listKeys() {
            if let shard = try? ShardID(parsing: key), shard.description == key {
                do {
                    let entry: Entry?
                    if let inspector {
                        entry = try await shardEntry(shard, inspector: inspector)
                    } else {
                        entry = try await shardEntryFromDiffs(key, consensus: consensus)
                    }
                    if let entry { entries.append(entry) }
                } catch let e as ReadError {
                    let seqno = try await consensus.head(key)?.seqno.rawValue ?? 0
                    entries.append(Entry(key: key, seqno: seqno, stateError: "\(e)"))
                }
                continue
            }
            // Heads are never removed, so a listed key has one.
            guard let head = try await consensus.head(key) else { continue }
            entries.append(Entry(key: key, seqno: head.seqno.rawValue))
        }
        return HeadsRecord(keys: entries)
    }

    private static func shardEntry(_ shard: ShardID, inspector: ShardStateInspector) async throws -> Entry? {
        guard let state = try await inspector.currentState(of: shard) else { return nil }
        return Entry(
            key: shard.description, seqno: state.seqno.rawValue, upper: state.trace.upper.elements,
            since: state.trace.since.elements)
    }

    private static func shardEntryFromDiffs(_ key: String, consensus: any Consensus) async throws -> Entry? {
        let diffs = try await consensus.scanAll(key)
        guard let last = diffs.last else { return nil }
        // A shard's first version starts from the empty state, whose frontiers are [0].
        let fromCreation = diffs.first?.seqno == SeqNo(1)
        var upper: Antichain? = fromCreation ? .minimum : nil
        var since: Antichain? = fromCreation ? .minimum : nil
        for v in diffs {
            let d: StateDiff
            do {
                d = try StateDiff.decode(v.data)
            } catch {
                throw ReadError.corrupt("state diff \(v.seqno) of \(key): \(error)")
            }
            if let c = d.traceUpper { upper = c.new }
            if let c = d.traceSince { since = c.new }
        }
        return Entry(key: key, seqno: last.seqno.rawValue, upper: upper?.elements, since: since?.elements)
    }

    /// Violations within this record alone: shard states that could not be read.
    var problems: [Violation] {
        keys.compactMap { e in
            guard let error = e.stateError else { return nil }
            var v = Violation(.stateUnreadable, "the shard's state cannot be read: \(error)")
            v.consensusKey = e.key
            v.seqno = e.seqno
            return v
        }
    }

    /// What went backwards from `previous` to `self`: a key that disappeared, a head seqno
    /// that decreased, or a shard's upper or since that moved back. Keys new in `self`
    /// are fine, as is a truncated key (its head stays).
    func regressions(since previous: HeadsRecord) -> [Violation] {
        let latest = Dictionary(keys.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [Violation] = []
        for before in previous.keys {
            func regression(_ message: String, _ was: String, _ now: String) {
                var v = Violation(.heads, message)
                v.consensusKey = before.key
                v.previous = was
                v.current = now
                out.append(v)
            }
            guard let after = latest[before.key] else {
                regression("the key disappeared from consensus", "seqno \(before.seqno)", "absent")
                continue
            }
            if after.seqno < before.seqno {
                regression("the head seqno went backwards", "\(before.seqno)", "\(after.seqno)")
            }
            for (name, was, now) in [("upper", before.upper, after.upper), ("since", before.since, after.since)] {
                guard let was, let now else { continue }
                guard let a = Antichain(elements: was), let b = Antichain(elements: now) else {
                    regression("the \(name) is not a frontier of a total order", "\(was)", "\(now)")
                    continue
                }
                if !a.lessEqual(b) { regression("the shard's \(name) went backwards", "\(a)", "\(b)") }
            }
        }
        return out
    }
}
