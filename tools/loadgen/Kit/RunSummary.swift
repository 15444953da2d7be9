import Foundation

/// The JSON summary of a run (`--summary`, and stdout unless `--quiet`). Keys are
/// snake_case; absent sections are left out.
public struct RunSummary: Hashable, Sendable, Codable {
    public struct Counts: Hashable, Sendable, Codable {
        public var readOnly: OutcomeCounts
        public var writeOnly: OutcomeCounts
        public var mixed: OutcomeCounts
        public var total: OutcomeCounts

        public init(_ counts: [TxnKind: OutcomeCounts]) {
            readOnly = counts[.readOnly] ?? OutcomeCounts()
            writeOnly = counts[.writeOnly] ?? OutcomeCounts()
            mixed = counts[.mixed] ?? OutcomeCounts()
            total = readOnly + writeOnly + mixed
        }
    }

    public struct Throughput: Hashable, Sendable, Codable {
        /// Transactions that ended (any outcome) per second of the load phase.
        public var txnsPerSecond: Double
        public var okPerSecond: Double
    }

    public struct ListAppend: Hashable, Sendable, Codable {
        public var shards: Int
        public var keysPerShard: Int
        public var maxAppendsPerKey: Int
        /// Per shard, the first key index this run used (past earlier runs' keys).
        public var firstKeyIndex: [Int]
        public var keysAppended: Int
        public var keysRetired: Int
        public var processes: Int
        public var finalReads: FinalReadReport
        public var unexpectedRetractions: Int
        public var history: String?
        public var historyLines: Int
    }

    public struct Bank: Hashable, Sendable, Codable {
        public var accounts: Int
        public var shards: Int
        public var initial: Int64
        public var expectedTotal: Int64
        public var deposited: Bool
        public var invariantChecks: Int
        public var violations: [BankAudit]
        public var finalCheck: BankAudit?
        public var finalCheckWanted: Bool
    }

    public var workload: String
    public var seed: UInt64
    /// "closed" or "open".
    public var mode: String
    public var clients: Int?
    public var rate: Double?
    public var maxInFlight: Int?
    public var arrivals: String?
    public var durationSeconds: Double
    public var elapsedSeconds: Double
    public var skippedArrivals: Int
    public var counts: Counts
    public var throughput: Throughput
    public var latencyMs: LatencyMilliseconds
    public var listAppend: ListAppend?
    public var bank: Bank?

    init(
        workload: String, seed: UInt64, shape: LoadShape, duration: Duration, elapsedSeconds: Double, skipped: Int,
        counts: [TxnKind: OutcomeCounts], latency: LatencyMilliseconds
    ) {
        self.workload = workload
        self.seed = seed
        switch shape {
        case .closed(let clients):
            mode = "closed"
            self.clients = clients
        case .open(let rate, let maxInFlight, let arrivals):
            mode = "open"
            self.rate = rate
            self.maxInFlight = maxInFlight
            self.arrivals = arrivals.rawValue
        }
        durationSeconds = duration.seconds
        self.elapsedSeconds = elapsedSeconds
        skippedArrivals = skipped
        self.counts = Counts(counts)
        let seconds = max(elapsedSeconds, 1e-9)
        throughput = Throughput(
            txnsPerSecond: Double(self.counts.total.total) / seconds,
            okPerSecond: Double(self.counts.total.ok) / seconds)
        latencyMs = latency
    }

    public init(settings: ListAppendSettings, report: ListAppendReport, historyPath: String?) {
        self.init(
            workload: "list-append", seed: settings.seed, shape: settings.shape, duration: settings.duration,
            elapsedSeconds: report.elapsedSeconds, skipped: report.skippedArrivals, counts: report.counts,
            latency: report.latency)
        listAppend = ListAppend(
            shards: settings.mix.shards, keysPerShard: settings.mix.keysPerShard,
            maxAppendsPerKey: settings.mix.maxAppendsPerKey, firstKeyIndex: report.firstKeyIndex,
            keysAppended: report.keysAppended, keysRetired: report.keysRetired, processes: report.processes,
            finalReads: report.finalReads, unexpectedRetractions: report.retractions, history: historyPath,
            historyLines: report.historyLines)
    }

    public init(settings: BankSettings, report: BankReport) {
        self.init(
            workload: "bank", seed: settings.seed, shape: settings.shape, duration: settings.duration,
            elapsedSeconds: report.elapsedSeconds, skipped: report.skippedArrivals, counts: report.counts,
            latency: report.latency)
        bank = Bank(
            accounts: settings.layout.accounts, shards: settings.layout.shards, initial: settings.layout.initial,
            expectedTotal: settings.layout.expectedTotal, deposited: report.deposited, invariantChecks: report.audits,
            violations: report.violations, finalCheck: report.finalAudit, finalCheckWanted: report.finalAuditWanted)
    }

    /// Pretty, key-sorted JSON.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
