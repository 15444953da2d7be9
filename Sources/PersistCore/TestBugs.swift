import Synchronization

/// A deliberate bug the servers can be started with, to prove that the crash test
/// catches real bugs ("does the test have teeth?"). Never for production: each one
/// breaks a durability or atomicity promise on purpose. The raw value is the name
/// `TXNWAL_TEST_BUGS` uses.
public enum TestBug: String, CaseIterable, Hashable, Sendable {
    /// The consensus log tells compare-and-set callers "committed" before their batch is
    /// written to the log file (and so before it is fsync'd). See `LogConsensus`.
    case ackBeforeFsync = "ack-before-fsync"
    /// The coordinator commits each transaction with only its first shard's writes and
    /// drops the rest, yet answers success.
    case commitFirstShardOnly = "commit-first-shard-only"

    /// What the bug breaks, in one line.
    public var summary: String {
        switch self {
        case .ackBeforeFsync:
            "consensus acknowledges a CaS before its record is written to the log (lost on kill -9)"
        case .commitFirstShardOnly:
            "the coordinator commits only the first shard's writes of a transaction and still reports success"
        }
    }

    var bit: UInt32 {
        switch self {
        case .ackBeforeFsync: 1 << 0
        case .commitFirstShardOnly: 1 << 1
        }
    }
}

/// A `TXNWAL_TEST_BUGS` value that names no known bug.
public enum TestBugConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    case unknownBug(String)

    public var description: String {
        switch self {
        case .unknownBug(let name):
            let known = TestBug.allCases.map(\.rawValue).joined(separator: ", ")
            return "\(TestBugs.variable): unknown test bug \"\(name)\" (known: \(known))"
        }
    }
}

/// The deliberate bugs switched on in this process.
///
/// `TXNWAL_TEST_BUGS` (comma-separated `TestBug` names) is honoured only by the server
/// executables: they call `enableFromEnvironment()` at start-up, which validates the
/// variable and switches the bugs on. In every other process (tests, tools, embedded
/// users) the variable is ignored and `isEnabled` is always false, so a stray variable
/// cannot corrupt a library user's data.
public enum TestBugs {
    /// The variable naming the bugs to switch on.
    public static let variable = "TXNWAL_TEST_BUGS"

    /// Parses a comma-separated list of bug names (whitespace and empty items ignored).
    public static func parse(_ text: String) throws(TestBugConfigError) -> Set<TestBug> {
        var bugs: Set<TestBug> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = FailpointTable.trimmed(item)
            if name.isEmpty { continue }
            guard let bug = TestBug(rawValue: name) else { throw .unknownBug(name) }
            bugs.insert(bug)
        }
        return bugs
    }

    /// Validates `TXNWAL_TEST_BUGS` and switches its bugs on for this process; returns
    /// them. For server executables, once, before serving. On error nothing changes.
    @discardableResult
    public static func enableFromEnvironment() throws(TestBugConfigError) -> Set<TestBug> {
        let bugs = try parse(Failpoints.environmentValue(variable) ?? "")
        enabled.store(bugs.reduce(0) { $0 | $1.bit }, ordering: .releasing)
        return bugs
    }

    /// Whether `bug` is switched on in this process (one atomic load).
    public static func isEnabled(_ bug: TestBug) -> Bool {
        enabled.load(ordering: .acquiring) & bug.bit != 0
    }

    private static let enabled = Atomic<UInt32>(0)
}
