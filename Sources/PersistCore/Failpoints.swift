#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

// MARK: Registry

/// A named place in the servers' code where the crash test can make the process die or
/// pause (see `Failpoints`). The raw value is the name `TXNWAL_FAILPOINTS` uses; names
/// are stable because test scripts refer to them.
///
/// A point belongs to the code that hits it, not to one executable: the consensus points
/// sit in `LogConsensus`, `blob.before-fsync` in `FileBlob`, and the coordinator points in
/// the txn layer and the coordinator's worker, so an embedded user of those (a
/// coordinator started with `--data-dir`) hits them too.
public enum Failpoint: String, CaseIterable, Hashable, Sendable {
    case consensusBeforeFsync = "consensus.before-fsync"
    case consensusAfterFsyncBeforeReply = "consensus.after-fsync-before-reply"
    case consensusAfterEarlyAck = "consensus.after-early-ack"
    case blobBeforeFsync = "blob.before-fsync"
    case blobAfterFsyncBeforeReply = "blob.after-fsync-before-reply"
    case coordinatorAfterBatchPut = "coordinator.after-batch-put"
    case coordinatorAfterTxnsCaS = "coordinator.after-txns-cas"
    case coordinatorBeforeReply = "coordinator.before-reply"
    case coordinatorBeforeApply = "coordinator.before-apply"
    case coordinatorMidApply = "coordinator.mid-apply"

    /// Where the point is and what is true when it fires, in one line.
    public var summary: String {
        switch self {
        case .consensusBeforeFsync:
            "consensus log: a group-commit batch is written to the segment file but not fdatasync'd; no caller answered"
        case .consensusAfterFsyncBeforeReply:
            "consensus log: a batch is fdatasync'd (durable) but none of its callers has been answered"
        case .consensusAfterEarlyAck:
            "consensus log, only with test bug ack-before-fsync: a batch's CaS callers were told 'committed' before its bytes were written"
        case .blobBeforeFsync:
            "FileBlob.set: the object's bytes are in its temporary file, not fsync'd, not renamed into place"
        case .blobAfterFsyncBeforeReply:
            "blob-store PutObject: the object is durable (file and directory fsync'd), the 200 not yet sent"
        case .coordinatorAfterBatchPut:
            "txn commit: the transaction's batches are uploaded to blob, the txns-shard compare-and-set not yet tried"
        case .coordinatorAfterTxnsCaS:
            "txn commit: the txns-shard compare-and-set succeeded (committed), nothing applied, no caller answered"
        case .coordinatorBeforeReply:
            "coordinator: a commit group is committed; its callers are about to be answered; nothing applied"
        case .coordinatorBeforeApply:
            "coordinator: a commit group's callers were answered (replies handed to their connections), nothing applied"
        case .coordinatorMidApply:
            "txn apply: one data shard's batches were linked in; other shards of the same apply may not be yet"
        }
    }
}

// MARK: Actions and their triggers

/// What a failpoint does when it fires.
public enum FailpointAction: Hashable, Sendable {
    /// One line naming the point goes to stderr, then the process sends itself SIGKILL:
    /// the effect of an outside `kill -9` (no cleanup, no flush, no atexit handlers).
    case crash
    /// The hitting thread (or, from `Failpoints.hitAsync`, the task) pauses this long.
    case sleep(milliseconds: Int)
}

/// Which hits of a point make one of its terms fire.
public enum FailpointTrigger: Hashable, Sendable {
    /// Every hit.
    case always
    /// Each hit independently, with this probability in (0, 1].
    case probability(Double)
    /// The hit with this 1-based number only.
    case nthHit(UInt64)
}

/// One action of a failpoint with the trigger that decides when it runs.
public struct FailpointTerm: Hashable, Sendable, CustomStringConvertible {
    public var action: FailpointAction
    public var trigger: FailpointTrigger

    public init(_ action: FailpointAction, _ trigger: FailpointTrigger = .always) {
        self.action = action
        self.trigger = trigger
    }

    /// The term in the syntax `TXNWAL_FAILPOINTS` takes.
    public var description: String {
        let base: String
        switch action {
        case .crash: base = "crash"
        case .sleep(let ms): base = "sleep(\(ms))"
        }
        switch trigger {
        case .always: return base
        case .probability(let p): return "\(base)@\(p)"
        case .nthHit(let n): return "\(base)#\(n)"
        }
    }
}

/// A `TXNWAL_FAILPOINTS` or `TXNWAL_FAILPOINT_SEED` value that cannot be used. Servers
/// refuse to start with one; each case names the offending text.
public enum FailpointConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The entry is not `name=term[->term...]`, or a term is not one of the forms.
    case malformedEntry(entry: String, reason: String)
    /// The entry names a point that is not in `Failpoint`.
    case unknownPoint(name: String, entry: String)
    /// Two entries configure the same point.
    case duplicatePoint(name: String)
    /// The seed is not a decimal unsigned 64-bit integer.
    case badSeed(String)

    public var description: String {
        switch self {
        case .malformedEntry(let entry, let reason):
            return "\(Failpoints.variable): malformed entry \"\(entry)\": \(reason)"
        case .unknownPoint(let name, let entry):
            let known = Failpoint.allCases.map(\.rawValue).joined(separator: ", ")
            return "\(Failpoints.variable): unknown failpoint \"\(name)\" in entry \"\(entry)\" (known: \(known))"
        case .duplicatePoint(let name):
            return "\(Failpoints.variable): failpoint \"\(name)\" is configured twice (chain its actions with ->)"
        case .badSeed(let text):
            return "\(Failpoints.seedVariable): \"\(text)\" is not an unsigned 64-bit decimal integer"
        }
    }
}

// MARK: The pure decision table

/// Which failpoints are armed and with what, parsed from the `TXNWAL_FAILPOINTS` syntax,
/// and the pure decision of what a given hit does. No I/O, no clock, no shared state:
/// `decide` is a function of the table and its arguments, which is what makes the
/// probabilistic triggers reproducible.
///
/// Syntax: entries separated by `;`, each `name=term[->term...]`; a term is an action
/// (`crash` or `sleep(MS)`, MS in 1...3600000) with an optional trigger: `@P` (each hit
/// with probability P in (0, 1]) or `#N` (the Nth hit only, 1-based); without one the
/// term fires on every hit. The terms of one entry are tried in order on each hit, each
/// with its own trigger, so `sleep(20)->crash@0.1` pauses on every hit and then
/// crashes on about one hit in ten. Whitespace around entries, names and terms is
/// ignored, and so are empty entries.
///
/// A probabilistic draw for hit k of a point is derived from the seed, the point's name,
/// the process salt (the servers use their pid, so that a restarted server makes
/// different draws), the term's position and k; equal inputs give equal decisions.
public struct FailpointTable: Hashable, Sendable, CustomStringConvertible {
    /// The terms of every configured point, in the order given.
    public private(set) var rules: [Failpoint: [FailpointTerm]]
    public let seed: UInt64
    public let processSalt: UInt64

    /// No point armed.
    public static let empty = FailpointTable(rules: [:], seed: 0, processSalt: 0)

    public init(rules: [Failpoint: [FailpointTerm]], seed: UInt64 = 0, processSalt: UInt64 = 0) {
        self.rules = rules.filter { !$0.value.isEmpty }
        self.seed = seed
        self.processSalt = processSalt
    }

    /// Parses `spec` (the syntax above).
    public init(parsing spec: String, seed: UInt64 = 0, processSalt: UInt64 = 0) throws(FailpointConfigError) {
        var rules: [Failpoint: [FailpointTerm]] = [:]
        for rawEntry in spec.split(separator: ";", omittingEmptySubsequences: false) {
            let entry = Self.trimmed(rawEntry)
            if entry.isEmpty { continue }
            guard let equals = entry.firstIndex(of: "=") else {
                throw .malformedEntry(entry: entry, reason: "expected name=action")
            }
            let name = Self.trimmed(entry[..<equals])
            guard let point = Failpoint(rawValue: name) else { throw .unknownPoint(name: name, entry: entry) }
            guard rules[point] == nil else { throw .duplicatePoint(name: name) }
            var terms: [FailpointTerm] = []
            for rawTerm in entry[entry.index(after: equals)...].split(separator: "->", omittingEmptySubsequences: false) {
                terms.append(try Self.parseTerm(Self.trimmed(rawTerm), entry: entry))
            }
            rules[point] = terms
        }
        self.init(rules: rules, seed: seed, processSalt: processSalt)
    }

    public var isEmpty: Bool { rules.isEmpty }

    /// The actions hit number `hit` (1-based) of `point` performs, in order; empty when
    /// nothing fires.
    public func decide(_ point: Failpoint, hit: UInt64) -> [FailpointAction] {
        guard let terms = rules[point] else { return [] }
        var fired: [FailpointAction] = []
        for (position, term) in terms.enumerated() {
            switch term.trigger {
            case .always:
                fired.append(term.action)
            case .nthHit(let n):
                if hit == n { fired.append(term.action) }
            case .probability(let p):
                if draw(point, term: position, hit: hit) < p { fired.append(term.action) }
            }
        }
        return fired
    }

    /// A uniform number in [0, 1) for one term and hit: the first output of a
    /// `SeededGenerator` seeded from every input.
    func draw(_ point: Failpoint, term: Int, hit: UInt64) -> Double {
        var key = Self.mix(seed ^ 0x6661_696C_706F_696E)  // "failpoin"
        key = Self.mix(key ^ Self.nameHash(point.rawValue))
        key = Self.mix(key ^ processSalt)
        key = Self.mix(key ^ UInt64(term))
        key = Self.mix(key ^ hit)
        var generator = SeededGenerator(seed: key)
        return Double(generator.next() >> 11) * 0x1p-53
    }

    /// The table in `TXNWAL_FAILPOINTS` syntax, points in name order.
    public var description: String {
        if rules.isEmpty { return "(none)" }
        return rules.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { "\($0.key.rawValue)=" + $0.value.map(\.description).joined(separator: "->") }
            .joined(separator: ";")
    }

    static let maxSleepMilliseconds = 3_600_000

    private static func parseTerm(_ term: String, entry: String) throws(FailpointConfigError) -> FailpointTerm {
        guard !term.isEmpty else { throw .malformedEntry(entry: entry, reason: "empty action") }
        let kindText: Substring
        var trigger = FailpointTrigger.always
        if let mark = term.firstIndex(where: { $0 == "@" || $0 == "#" }) {
            kindText = term[..<mark]
            let argument = term[term.index(after: mark)...]
            if term[mark] == "@" {
                guard let p = Double(argument), p.isFinite, p > 0, p <= 1 else {
                    throw .malformedEntry(entry: entry, reason: "\"@\(argument)\": a probability must be in (0, 1]")
                }
                trigger = .probability(p)
            } else {
                guard let n = UInt64(argument), n >= 1 else {
                    throw .malformedEntry(entry: entry, reason: "\"#\(argument)\": a hit number must be a whole number from 1")
                }
                trigger = .nthHit(n)
            }
        } else {
            kindText = term[...]
        }
        let action: FailpointAction
        if kindText == "crash" {
            action = .crash
        } else if kindText.hasPrefix("sleep("), kindText.hasSuffix(")") {
            let digits = kindText.dropFirst("sleep(".count).dropLast()
            guard let ms = Int(digits), ms >= 1, ms <= maxSleepMilliseconds else {
                throw .malformedEntry(
                    entry: entry, reason: "\"\(kindText)\": sleep takes whole milliseconds from 1 to \(maxSleepMilliseconds)")
            }
            action = .sleep(milliseconds: ms)
        } else {
            throw .malformedEntry(entry: entry, reason: "unknown action \"\(kindText)\" (use crash or sleep(MS))")
        }
        return FailpointTerm(action, trigger)
    }

    static func trimmed<S: StringProtocol>(_ text: S) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(text[first...last])
    }

    /// splitmix64's finalizer.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// FNV-1a over the name's UTF-8 bytes (stable across runs, unlike `Hasher`).
    static func nameHash(_ name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }
}

// MARK: The process's failpoints

/// The process's failpoints, configured by the environment:
///
/// - `TXNWAL_FAILPOINTS`: the armed points, in `FailpointTable` syntax, e.g.
///   `consensus.after-fsync-before-reply=crash#3;blob.before-fsync=sleep(50)`.
/// - `TXNWAL_FAILPOINT_SEED`: the seed of the `@P` draws (decimal; default 0). It is
///   mixed with the point's name and the pid, so a restarted server draws anew.
///
/// The variables are read once, at the first hit or `isArmed` in the process. Unset or
/// empty, every hit costs one load of the immutable table built then (no lock, no
/// allocation). Servers call `validate()` at start-up and refuse to run with a bad value;
/// in any other process a bad value is reported on stderr once and arms nothing. Set the
/// variable only in the environment of the process meant to crash: every process of
/// ours that runs the instrumented code honours it.
///
/// Sleeping: `hit` is for code on threads of its own (the consensus writer queue, blocking
/// file I/O) and sleeps by blocking that thread; it is unavailable from async code.
/// Async code uses `hitAsync`, which sleeps with `Task.sleep` and so never holds a
/// thread of the cooperative pool.
public enum Failpoints {
    /// The variable naming the armed points.
    public static let variable = "TXNWAL_FAILPOINTS"
    /// The variable holding the seed of the probabilistic triggers.
    public static let seedVariable = "TXNWAL_FAILPOINT_SEED"

    /// Parses the variables as they are now (not the table cached at first use) and
    /// returns the table they describe, for a server to check and log before serving.
    public static func validate() throws(FailpointConfigError) -> FailpointTable {
        try environmentTable()
    }

    /// Hits `point` from synchronous code on a thread that may block. Returns at once
    /// unless the point fires; a `crash` never returns.
    @available(*, noasync, message: "use hitAsync: a sleep action would block a cooperative thread")
    public static func hit(_ point: Failpoint) {
        guard !armed.isEmpty, let (hit, actions) = armed.fire(point) else { return }
        for action in actions {
            switch action {
            case .crash: crash(point, hit: hit)
            case .sleep(let ms): sleepBlocking(milliseconds: ms)
            }
        }
    }

    /// Hits `point` from async code; a sleep suspends the task instead of blocking.
    public static func hitAsync(_ point: Failpoint) async {
        guard !armed.isEmpty, let (hit, actions) = armed.fire(point) else { return }
        for action in actions {
            switch action {
            case .crash: crash(point, hit: hit)
            case .sleep(let ms): try? await Task.sleep(for: .milliseconds(ms))
            }
        }
    }

    /// Whether `point` is configured in this process (it may still not fire on a given hit).
    public static func isArmed(_ point: Failpoint) -> Bool {
        !armed.isEmpty && armed.table.rules[point] != nil
    }

    /// Built at first use; never changes afterwards.
    static let armed = ArmedFailpoints.fromEnvironment()

    static func environmentTable() throws(FailpointConfigError) -> FailpointTable {
        let spec = environmentValue(variable) ?? ""
        var seed: UInt64 = 0
        if let text = environmentValue(seedVariable), !FailpointTable.trimmed(text).isEmpty {
            guard let parsed = UInt64(FailpointTable.trimmed(text)) else { throw .badSeed(text) }
            seed = parsed
        }
        return try FailpointTable(parsing: spec, seed: seed, processSalt: UInt64(UInt32(bitPattern: getpid())))
    }

    static func environmentValue(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Reports the point on stderr and kills the process with SIGKILL.
    static func crash(_ point: Failpoint, hit: UInt64) -> Never {
        writeStandardError("failpoint \(point.rawValue) fired (hit \(hit), pid \(getpid())): crash, sending SIGKILL to self\n")
        kill(getpid(), SIGKILL)
        // SIGKILL can be neither caught nor blocked: the process ends before this matters.
        while true { pause() }
    }

    static func sleepBlocking(milliseconds ms: Int) {
        var request = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// One `write(2)` to stderr, unbuffered, so the line is out before a SIGKILL.
    static func writeStandardError(_ text: String) {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}

/// The armed table with a hit counter per configured point.
final class ArmedFailpoints: Sendable {
    let table: FailpointTable
    let isEmpty: Bool
    private let counters: [Failpoint: HitCounter]

    init(_ table: FailpointTable) {
        self.table = table
        isEmpty = table.isEmpty
        counters = Dictionary(uniqueKeysWithValues: table.rules.keys.map { ($0, HitCounter()) })
    }

    /// Counts a hit of `point`; its number and actions when something fires.
    func fire(_ point: Failpoint) -> (UInt64, [FailpointAction])? {
        guard let counter = counters[point] else { return nil }
        let hit = counter.hits.wrappingAdd(1, ordering: .relaxed).newValue
        let actions = table.decide(point, hit: hit)
        return actions.isEmpty ? nil : (hit, actions)
    }

    static func fromEnvironment() -> ArmedFailpoints {
        do throws(FailpointConfigError) {
            return ArmedFailpoints(try Failpoints.environmentTable())
        } catch {
            Failpoints.writeStandardError("swift-txn-wal: no failpoint armed: \(error)\n")
            return ArmedFailpoints(.empty)
        }
    }
}

final class HitCounter: Sendable {
    let hits = Atomic<UInt64>(0)
}
