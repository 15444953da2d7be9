import ArgumentParser
import Dispatch
import Foundation
import LoadGenKit
import PersistCore
import PersistRPC
import TxnClient

#if canImport(Glibc)
import Glibc
#endif

/// `loadgen`: drives a txn-coordinator with a workload and records what happened.
/// Everything but flag parsing and printing lives in LoadGenKit.
@main
struct LoadGenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Load generator for the txn-coordinator: list-append histories and a bank invariant.",
        discussion: """
            Workloads:
              list-append  transactions of reads and appends over keys in data shards
                           la-0, la-1, ...; writes a history (--history) that
                           tools/checker/check.py judges
              bank         transfers between accounts in data shards bank-0, ...,
                           with whole-bank audits that must always find the same total

            Both create and register their shards first (idempotent, so a rerun against the
            same cluster works), then run for --duration seconds in a closed loop
            (--clients) or an open loop (--rate), print a progress line to stderr every
            second and a JSON summary to stdout at the end. Errors from the coordinator are
            outcomes, not reasons to stop: the coordinator may be restarted during a run.

            \(ExitCode.helpTable)
            """,
        subcommands: [ListAppendCommand.self, BankCommand.self])

    static func main() async {
        let command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            Output.error(fullMessage(for: error))
            Foundation.exit(ExitCode.usage.rawValue)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var plain = command
                try plain.run()
            }
        } catch let e as LoadGenError {
            Output.error("error: \(e)")
            Foundation.exit(ExitCode.for(e).rawValue)
        } catch let e as RunEnded {
            Foundation.exit(e.status.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            Output.error(fullMessage(for: error))
            Foundation.exit(code == .validationFailure ? ExitCode.usage.rawValue : 1)
        }
    }
}

/// loadgen's exit statuses.
enum ExitCode: Int32 {
    case done = 0
    case violation = 1
    case usage = 2
    case output = 3
    case unreachable = 4

    static func `for`(_ error: LoadGenError) -> ExitCode {
        switch error {
        case .usage: .usage
        case .setupFailed: .unreachable
        case .bankStateMismatch: .violation
        case .output: .output
        }
    }

    static let helpTable = """
        Exit status:
          0  the run finished (fail and info outcomes are normal under faults)
          1  bank: the invariant was violated (or the shards hold another bank)
          2  bad usage
          3  the history or summary file could not be written
          4  the coordinator could not be reached (or kept refusing) during setup
             for --setup-timeout seconds
        """
}

/// Ends a run with a status after everything was printed.
struct RunEnded: Error {
    var status: ExitCode
}

// MARK: Options

/// Where the coordinator is and how long to wait for it.
struct ConnectionOptions: ParsableArguments {
    @Option(
        name: .customLong("coordinator"),
        help: ArgumentHelp(
            "The coordinator's address: host:port, [ipv6]:port or unix:/path/to/socket.",
            valueName: "address"))
    var coordinator: String = CoordinatorAddress.defaultAddress

    @Option(
        name: .customLong("token-file"),
        help: ArgumentHelp(
            "File holding the coordinator's shared token (whitespace around it is ignored).", valueName: "path"))
    var tokenFile: String?

    @Option(
        name: .customLong("request-timeout"),
        help: ArgumentHelp(
            "Seconds each request may take before it counts as unanswered (a commit then ends as info).",
            valueName: "seconds"))
    var requestTimeout: Double = 10

    @Option(
        name: .customLong("setup-timeout"),
        help: ArgumentHelp(
            "Seconds to keep trying to create and register the shards before giving up (exit status 4).",
            valueName: "seconds"))
    var setupTimeout: Double = 30

    @Option(
        name: .customLong("connections"),
        help: ArgumentHelp("Connections to the coordinator; requests are multiplexed over them.", valueName: "n"))
    var connections: Int = 2

    func validate() throws {
        guard requestTimeout.isFinite, requestTimeout > 0 else {
            throw ValidationError("--request-timeout must be positive")
        }
        guard setupTimeout.isFinite, setupTimeout >= 0 else {
            throw ValidationError("--setup-timeout must not be negative")
        }
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        do { _ = try CoordinatorAddress.parse(coordinator) } catch { throw ValidationError(error.description) }
    }

    func clientConfiguration() throws(LoadGenError) -> TxnClient.Configuration {
        TxnClient.Configuration(
            endpoint: try CoordinatorAddress.parse(coordinator), token: try tokenFile.map(CoordinatorAddress.readToken),
            connections: connections, connectTimeout: .seconds(min(requestTimeout, 5)),
            requestTimeout: .milliseconds(Int64((requestTimeout * 1000).rounded())))
    }
}

/// How much load, for how long, and what to print.
struct LoadOptions: ParsableArguments {
    @Option(
        name: .customLong("clients"),
        help: ArgumentHelp(
            "Closed loop: this many concurrent clients, each starting a transaction when its last one ends (default 8).",
            valueName: "n"))
    var clients: Int?

    @Option(
        name: .customLong("rate"),
        help: ArgumentHelp(
            "Open loop: start this many transactions per second, however long they take (excludes --clients).",
            valueName: "txns/s"))
    var rate: Double?

    @Option(
        name: .customLong("max-in-flight"),
        help: ArgumentHelp(
            "Open loop: at most this many transactions at once; arrivals beyond it are skipped and counted.",
            valueName: "n"))
    var maxInFlight: Int = 64

    @Option(
        name: .customLong("arrivals"),
        help: ArgumentHelp("Open loop: poisson (seeded exponential gaps) or fixed (even spacing).", valueName: "kind"))
    var arrivals: String = "poisson"

    @Option(name: .customLong("duration"), help: ArgumentHelp("Seconds of load.", valueName: "seconds"))
    var duration: Double = 10

    @Option(
        name: .customLong("max-txns"),
        help: ArgumentHelp("Stop starting transactions after this many, even before --duration.", valueName: "n"))
    var maxTxns: Int?

    @Option(
        name: .customLong("seed"),
        help: ArgumentHelp(
            "Seed of every random choice (transactions, arrivals, back-off); a rerun with it repeats the same transactions.",
            valueName: "n"))
    var seed: UInt64 = 1

    @Option(
        name: .customLong("shards"),
        help: ArgumentHelp("Data shards to spread the keys or accounts over.", valueName: "n"))
    var shards: Int = 4

    @Option(
        name: .customLong("summary"),
        help: ArgumentHelp("Also write the JSON summary to this file.", valueName: "path"))
    var summary: String?

    @Flag(name: .customLong("quiet"), help: "Print no summary to stdout (nor the start line or progress).")
    var quiet = false

    @Flag(inversion: .prefixedNo, help: "A progress line on stderr every second: txn/s, ok/fail/info, p50/p99 ms.")
    var progress = true

    @Flag(
        inversion: .prefixedNo,
        help: ArgumentHelp(
            "After the run, read every key ever appended (list-append) or audit the bank once more, retrying until it works.",
            discussion: "Bounded by --final-read-timeout."))
    var finalReads = true

    @Option(
        name: .customLong("final-read-timeout"),
        help: ArgumentHelp(
            "Seconds to keep retrying the final reads (the coordinator may be restarting).", valueName: "seconds"))
    var finalReadTimeout: Double = 60

    func validate() throws {
        if clients != nil, rate != nil { throw ValidationError("--clients and --rate exclude each other") }
        if let clients, clients < 1 { throw ValidationError("--clients must be at least 1") }
        if let rate, !(rate.isFinite && rate > 0) { throw ValidationError("--rate must be a positive number") }
        guard maxInFlight >= 1 else { throw ValidationError("--max-in-flight must be at least 1") }
        guard LoadShape.Arrivals(rawValue: arrivals) != nil else {
            throw ValidationError("--arrivals must be poisson or fixed")
        }
        guard duration.isFinite, duration >= 0 else { throw ValidationError("--duration must not be negative") }
        if let maxTxns, maxTxns < 0 { throw ValidationError("--max-txns must not be negative") }
        guard shards >= 1 else { throw ValidationError("--shards must be at least 1") }
        guard finalReadTimeout.isFinite, finalReadTimeout >= 0 else {
            throw ValidationError("--final-read-timeout must not be negative")
        }
    }

    var shape: LoadShape {
        if let rate {
            return .open(
                rate: rate, maxInFlight: maxInFlight, arrivals: LoadShape.Arrivals(rawValue: arrivals) ?? .poisson)
        }
        return .closed(clients: clients ?? 8)
    }

    static func duration(_ seconds: Double) -> Duration { .milliseconds(Int64((seconds * 1000).rounded())) }

    var progressPrinter: (@Sendable (ProgressSample) -> Void)? {
        guard progress, !quiet else { return nil }
        return { sample in Output.error(sample.line) }
    }

    /// Prints the summary (unless quiet) and writes it to --summary.
    func emit(_ summary: RunSummary) throws(LoadGenError) {
        let text: String
        do { text = try summary.json() } catch { throw LoadGenError.output("encoding the summary failed: \(error)") }
        if !quiet { Output.out(text) }
        if let path = self.summary {
            guard FileManager.default.createFile(atPath: path, contents: Data((text + "\n").utf8)) else {
                throw LoadGenError.output("cannot write the summary file \(path)")
            }
        }
    }

    func describe(_ workload: String) -> String {
        let shapeText =
            switch shape {
            case .closed(let clients): "\(clients) clients"
            case .open(let rate, let maxInFlight, let arrivals):
                "\(rate) txn/s (\(arrivals.rawValue), at most \(maxInFlight) in flight)"
            }
        return "loadgen \(workload): seed \(seed), \(shapeText), \(duration) s, \(shards) shards"
    }
}

// MARK: Commands

struct ListAppendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list-append",
        abstract: "Transactions of reads and appends over rotating keys, recorded as a checkable history.",
        discussion: """
            Key k<j> lives in data shard la-<i> (--shard-prefix) and is named "<i>/k<j>" in the history. Each \
            transaction has 1 to --max-ops micro-ops, each a read (with probability \
            --read-fraction) or an append of a value unique in the run, over a small pool of \
            active keys per shard; a key retires after --max-appends-per-key appends. A rerun \
            against the same cluster starts past every key already in the shards.

            Write-only transactions commit at a time the coordinator picks; read-only ones read \
            their shards at one time; mixed ones read at the latest time L and commit at L+1, \
            failing if anything else committed in between.

            History (--history): JSON lines in the format of tools/checker/README.md, in \
            real-time order. Check it with: python3 tools/checker/check.py HISTORY
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var load: LoadOptions

    @Option(
        name: .customLong("history"),
        help: ArgumentHelp("Write the history to this file (JSON lines).", valueName: "path"))
    var history: String?

    @Option(
        name: .customLong("keys-per-shard"), help: ArgumentHelp("Active keys per shard at any time.", valueName: "n"))
    var keysPerShard: Int = 3

    @Option(
        name: .customLong("max-appends-per-key"),
        help: ArgumentHelp("Appends a key takes before a fresh key replaces it.", valueName: "n"))
    var maxAppendsPerKey: Int = 16

    @Option(
        name: .customLong("max-ops"),
        help: ArgumentHelp("Most micro-ops per transaction (1-\(TxnPlan.valuesPerTxn)).", valueName: "n"))
    var maxOps: Int = 4

    @Option(
        name: .customLong("read-fraction"),
        help: ArgumentHelp("Probability of a micro-op being a read.", valueName: "p"))
    var readFraction: Double = 0.5

    @Option(
        name: .customLong("shard-prefix"),
        help: ArgumentHelp(
            "Data shard i is named <prefix>-<i>.",
            discussion:
                "Every read returns a shard's whole history, so a fresh prefix per run keeps long test series fast.",
            valueName: "prefix"))
    var shardPrefix: String = "la"

    var mix: ListAppendMix {
        ListAppendMix(
            shards: load.shards, keysPerShard: keysPerShard, maxAppendsPerKey: maxAppendsPerKey, maxOps: maxOps,
            readFraction: readFraction, shardPrefix: shardPrefix)
    }

    func validate() throws {
        if let problem = mix.problem { throw ValidationError(problem) }
    }

    func run() async throws {
        let settings = ListAppendSettings(
            mix: mix, shape: load.shape, seed: load.seed, duration: LoadOptions.duration(load.duration),
            maxTransactions: load.maxTxns, finalReads: load.finalReads,
            finalReadTimeout: LoadOptions.duration(load.finalReadTimeout),
            setupTimeout: LoadOptions.duration(connection.setupTimeout))
        let configuration = try connection.clientConfiguration()
        let sink = try history.map { path throws(LoadGenError) in try FileHistorySink(path: path) }
        let recorder = HistoryRecorder(sink: sink)
        let client = TxnClient(configuration)
        let workload = ListAppendWorkload(target: client, settings: settings, recorder: recorder)
        if !load.quiet { Output.error(load.describe("list-append") + (history.map { ", history \($0)" } ?? "")) }
        let report: ListAppendReport
        do {
            try await workload.setup()
            report = try await StopSignals.whileInstalled(control: workload.control) {
                await workload.run(progress: load.progressPrinter)
            }
        } catch {
            await client.shutdown()
            try? recorder.close()
            throw error
        }
        await client.shutdown()
        try recorder.close()
        try load.emit(RunSummary(settings: settings, report: report, historyPath: history))
        if report.finalReads.enabled, report.finalReads.done < report.finalReads.keys {
            Output.error(
                "warning: final reads covered \(report.finalReads.done) of \(report.finalReads.keys) keys "
                    + "within --final-read-timeout; lost appends of the others cannot be checked")
        }
    }
}

struct BankCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bank",
        abstract: "Transfers between accounts across shards; audits check that money is conserved.",
        discussion: """
            Account a is the row (acct-<a>, empty value) in data shard bank-<a mod shards> \
            (--shard-prefix); \
            its balance is the sum of the row's diffs. Setup deposits --initial into every \
            account in one commit, only if the shards are empty. Each operation is a transfer \
            (one commit: -x on one account, +x on another, on different shards when possible) \
            or, with probability --audit-fraction, an audit that reads every shard at one time \
            and checks that the total is accounts x initial. Each violation is printed with its \
            time and per-shard sums, and the exit status is 1.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var load: LoadOptions

    @Option(name: .customLong("accounts"), help: ArgumentHelp("Accounts in the bank.", valueName: "n"))
    var accounts: Int = 8

    @Option(name: .customLong("initial"), help: ArgumentHelp("Opening balance of each account.", valueName: "amount"))
    var initial: Int64 = 100

    @Option(
        name: .customLong("audit-fraction"),
        help: ArgumentHelp("Probability of an operation being a whole-bank audit.", valueName: "p"))
    var auditFraction: Double = 0.1

    @Option(
        name: .customLong("max-transfer"), help: ArgumentHelp("Largest amount one transfer moves.", valueName: "amount")
    )
    var maxTransfer: Int64 = 10

    @Option(
        name: .customLong("shard-prefix"),
        help: ArgumentHelp("Data shard i is named <prefix>-<i>.", valueName: "prefix"))
    var shardPrefix: String = "bank"

    var layout: BankLayout {
        BankLayout(accounts: accounts, shards: load.shards, initial: initial, shardPrefix: shardPrefix)
    }

    func validate() throws {
        if let problem = layout.problem { throw ValidationError(problem) }
        guard (0...1).contains(auditFraction) else { throw ValidationError("--audit-fraction must be between 0 and 1") }
        guard maxTransfer >= 1 else { throw ValidationError("--max-transfer must be at least 1") }
    }

    func run() async throws {
        let settings = BankSettings(
            layout: layout, shape: load.shape, seed: load.seed, duration: LoadOptions.duration(load.duration),
            maxTransactions: load.maxTxns, auditFraction: auditFraction, maxAmount: maxTransfer,
            finalAudit: load.finalReads, finalAuditTimeout: LoadOptions.duration(load.finalReadTimeout),
            setupTimeout: LoadOptions.duration(connection.setupTimeout))
        let client = TxnClient(try connection.clientConfiguration())
        let workload = BankWorkload(target: client, settings: settings) { audit in
            Output.error("VIOLATION: \(audit.description)")
        }
        if !load.quiet { Output.error(load.describe("bank") + ", \(accounts) accounts of \(initial)") }
        let report: BankReport
        do {
            try await workload.setup()
            report = try await StopSignals.whileInstalled(control: workload.control) {
                await workload.run(progress: load.progressPrinter)
            }
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        try load.emit(RunSummary(settings: settings, report: report))
        if settings.finalAudit, report.finalAudit == nil {
            Output.error("warning: the final audit did not succeed within --final-read-timeout")
        }
        if !report.violations.isEmpty {
            Output.error("error: \(report.violations.count) invariant violation(s)")
            throw RunEnded(status: .violation)
        }
    }
}

// MARK: Process plumbing

/// SIGINT and SIGTERM stop a run early but cleanly: no new transactions, the running
/// ones finish, then the final reads and the summary. A second signal exits at once.
enum StopSignals {
    static func whileInstalled<T: Sendable>(control: RunControl, _ body: () async -> T) async throws -> T {
        let signals = [SIGINT, SIGTERM]
        var sources: [any DispatchSourceSignal] = []
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                if control.stopRequested {
                    Foundation.exit(128 + sig)
                }
                Output.error("loadgen: stopping (signal \(sig)); a second signal exits at once")
                control.requestStop()
            }
            source.resume()
            sources.append(source)
        }
        let result = await body()
        for source in sources { source.cancel() }
        for sig in signals { signal(sig, SIG_DFL) }
        return result
    }
}

/// stdout and stderr, unbuffered.
enum Output {
    static func out(_ text: String) {
        try? FileHandle.standardOutput.write(contentsOf: Data((text + "\n").utf8))
    }

    static func error(_ text: String) {
        try? FileHandle.standardError.write(contentsOf: Data((text + "\n").utf8))
    }
}
