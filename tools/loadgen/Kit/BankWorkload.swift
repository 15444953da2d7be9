import PersistCodec
import PersistCore
import Synchronization

/// The settings of a bank run.
public struct BankSettings: Sendable {
    public var layout: BankLayout
    public var shape: LoadShape
    public var seed: UInt64
    public var duration: Duration
    public var maxTransactions: Int?
    /// The probability of an operation being a whole-bank audit rather than a transfer.
    public var auditFraction: Double
    public var maxAmount: Int64
    /// Audit once more after the run (retried until it succeeds or the timeout).
    public var finalAudit: Bool
    public var finalAuditTimeout: Duration
    public var setupTimeout: Duration
    /// The pause after transport trouble, in milliseconds (seeded jitter within it).
    public var backoffMilliseconds: ClosedRange<Int>

    public init(
        layout: BankLayout = BankLayout(), shape: LoadShape = .closed(clients: 8), seed: UInt64 = 1,
        duration: Duration = .seconds(10), maxTransactions: Int? = nil, auditFraction: Double = 0.1,
        maxAmount: Int64 = 10,
        finalAudit: Bool = true, finalAuditTimeout: Duration = .seconds(60), setupTimeout: Duration = .seconds(30),
        backoffMilliseconds: ClosedRange<Int> = 50...200
    ) {
        self.layout = layout
        self.shape = shape
        self.seed = seed
        self.duration = duration
        self.maxTransactions = maxTransactions
        self.auditFraction = auditFraction
        self.maxAmount = maxAmount
        self.finalAudit = finalAudit
        self.finalAuditTimeout = finalAuditTimeout
        self.setupTimeout = setupTimeout
        self.backoffMilliseconds = backoffMilliseconds
    }
}

/// The outcome of a bank run.
public struct BankReport: Sendable {
    public var counts: [TxnKind: OutcomeCounts]
    public var latency: LatencyMilliseconds
    public var elapsedSeconds: Double
    public var skippedArrivals: Int
    /// Whether setup found the shards empty and made the opening deposit.
    public var deposited: Bool
    /// Audits that read every shard (during the run and the final one).
    public var audits: Int
    public var violations: [BankAudit]
    /// The final audit, if it was wanted and succeeded in time.
    public var finalAudit: BankAudit?
    public var finalAuditWanted: Bool
}

/// The bank workload: transfers between accounts spread over data shards, each one
/// atomic commit, with whole-bank audits at one read time that must always find the
/// money the bank opened with. A torn commit (one side applied, the other not) or a
/// read mixing two times shows up as a wrong total.
public final class BankWorkload: Sendable {
    public let target: any LoadTarget
    public let settings: BankSettings
    public let stats: RunStats
    public let control: RunControl
    let generator: Mutex<BankGenerator>
    let backoff: Mutex<Backoff>
    struct AuditLog {
        var audits = 0
        var violations: [BankAudit] = []
    }
    let auditLog = Mutex(AuditLog())
    let deposited = Mutex(false)
    /// Called with each violation as it is found.
    let onViolation: (@Sendable (BankAudit) -> Void)?

    public init(
        target: any LoadTarget, settings: BankSettings, control: RunControl? = nil,
        onViolation: (@Sendable (BankAudit) -> Void)? = nil
    ) {
        self.target = target
        self.settings = settings
        self.stats = RunStats()
        self.control = control ?? RunControl(maxTransactions: settings.maxTransactions)
        self.onViolation = onViolation
        generator = Mutex(
            BankGenerator(
                layout: settings.layout, seed: settings.seed, auditFraction: settings.auditFraction,
                maxAmount: settings.maxAmount))
        backoff = Mutex(Backoff(seed: derivedSeed(settings.seed, stream: 0xB0FF), range: settings.backoffMilliseconds))
    }

    // MARK: Setup

    /// Creates and registers the shards and, if they are all empty, deposits the
    /// opening balances. The deposit commits at the time just after a read that found
    /// the bank empty, so it can land only if nothing happened in between, and a retry
    /// after an unknown outcome reads again first: the money is deposited at most once.
    /// Throws `bankStateMismatch` if the shards hold some other bank.
    public func setup() async throws(LoadGenError) {
        var retry = SetupRetry(deadline: .now + settings.setupTimeout, seed: settings.seed)
        let layout = settings.layout
        try await ShardSetup.ensure((0..<layout.shards).map(layout.shardName), on: target, retry: &retry)
        let found = try await retry.run("opening the bank") { () async throws -> BankAudit in
            let audit = try await self.audit(at: nil)
            guard audit.empty else { return audit }
            guard audit.asOf < Timestamp.max else {
                throw LoadGenError.setupFailed("no timestamp left for the deposit")
            }
            _ = try await self.target.commit(layout.deposit, at: audit.asOf + 1)
            self.deposited.withLock { $0 = true }
            return try await self.audit(at: audit.asOf + 1)
        }
        if found.isViolation {
            throw LoadGenError.bankStateMismatch(
                "the bank shards already hold another state (\(found.description)); "
                    + "use a fresh cluster, or the --accounts, --shards and --initial of the run that opened it")
        }
    }

    /// Reads every shard at one time (the first at `at`, nil: latest; the others at the
    /// time it answered) and audits the result.
    func audit(at: Timestamp?) async throws -> BankAudit {
        var asOf = at
        var rowsByShard: [[Update]] = []
        for shard in 0..<settings.layout.shards {
            let (time, rows) = try await target.read(.name(settings.layout.shardName(shard)), asOf: asOf)
            asOf = asOf ?? time
            rowsByShard.append(rows)
        }
        return BankAudit(layout: settings.layout, asOf: asOf ?? 0, rowsByShard: rowsByShard)
    }

    // MARK: Run

    /// Runs transfers and audits for the configured duration, then the final audit.
    public func run(progress: (@Sendable (ProgressSample) -> Void)? = nil) async -> BankReport {
        let start = ContinuousClock.now
        control.begin(for: settings.duration, now: start)
        let stats = self.stats
        let skipped = await Ticker.whileRunning(every: .seconds(1), tick: { progress?(stats.sample()) }) {
            await LoadDriver.run(settings.shape, seed: settings.seed, control: control) { _ in
                await self.runOne()
            }
        }
        let elapsed = (ContinuousClock.now - start).seconds
        var final: BankAudit?
        if settings.finalAudit {
            let deadline = ContinuousClock.now + settings.finalAuditTimeout
            while final == nil {
                do {
                    let audit = try await audit(at: nil)
                    note(audit)
                    final = audit
                } catch {
                    if ContinuousClock.now >= deadline { break }
                    await pause()
                }
            }
        }
        var counts: [TxnKind: OutcomeCounts] = [:]
        for kind in TxnKind.allCases { counts[kind] = stats.counts(kind) }
        let log = auditLog.withLock { $0 }
        return BankReport(
            counts: counts, latency: stats.latency, elapsedSeconds: elapsed, skippedArrivals: skipped,
            deposited: deposited.withLock { $0 }, audits: log.audits, violations: log.violations, finalAudit: final,
            finalAuditWanted: settings.finalAudit)
    }

    func runOne() async {
        let op = generator.withLock { $0.next() }
        let started = ContinuousClock.now
        let kind: TxnKind
        let verdict: ErrorVerdict?
        switch op {
        case .transfer(let transfer):
            kind = .writeOnly
            do {
                _ = try await target.commit(settings.layout.writes(transfer), at: nil)
                verdict = nil
            } catch {
                verdict = OutcomeClassifier.classify(error, phase: .committing)
            }
        case .audit:
            kind = .readOnly
            do {
                note(try await audit(at: nil))
                verdict = nil
            } catch {
                verdict = OutcomeClassifier.classify(error, phase: .reading)
            }
        }
        stats.record(kind, verdict?.outcome ?? .ok, latency: ContinuousClock.now - started)
        if verdict?.backOff == true { await pause() }
    }

    func note(_ audit: BankAudit) {
        auditLog.withLock { log in
            log.audits += 1
            if audit.isViolation { log.violations.append(audit) }
        }
        if audit.isViolation { onViolation?(audit) }
    }

    func pause() async {
        let ms = backoff.withLock { $0.nextMilliseconds() }
        try? await Task.sleep(for: .milliseconds(ms))
    }
}
