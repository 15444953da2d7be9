import LoadGenKit
import PersistCodec
import PersistCore
import Testing

/// Whole runs of the workloads against `ModelCoordinator` (no network): the history
/// they record must hold up, with and without injected faults, and the bank's audit
/// must catch a coordinator that tears commits. Runs are bounded by a transaction
/// count; the durations are only hang guards.
@Suite struct EndToEndTests {
    func listAppend(_ model: ModelCoordinator, shape: LoadShape, txns: Int, seed: UInt64) async throws -> (
        ListAppendReport, MemorySink
    ) {
        let sink = MemorySink()
        let settings = ListAppendSettings(
            mix: ListAppendMix(shards: 3, keysPerShard: 2, maxAppendsPerKey: 6), shape: shape, seed: seed,
            duration: .seconds(120), maxTransactions: txns, finalReadTimeout: .seconds(60), setupTimeout: .seconds(60),
            backoffMilliseconds: 1...2)
        let workload = ListAppendWorkload(target: model, settings: settings, recorder: HistoryRecorder(sink: sink))
        try await workload.setup()
        let report = await workload.run()
        try workload.recorder.close()
        return (report, sink)
    }

    @Test func listAppendHistoryHoldsUpWithoutFaults() async throws {
        let model = ModelCoordinator(seed: 1)
        let (report, sink) = try await listAppend(model, shape: .closed(clients: 6), txns: 400, seed: 21)
        let total = report.counts.values.reduce(OutcomeCounts(), +)
        #expect(total.total == 400)
        #expect(total.info == 0)
        #expect(report.counts[.writeOnly]?.fail == 0, "blind writes never conflict")
        #expect(report.counts[.readOnly]?.ok ?? 0 > 0)
        #expect(report.counts[.mixed]?.ok ?? 0 > 0)
        #expect(report.finalReads.done == report.finalReads.keys)
        #expect(report.finalReads.keys == report.keysAppended)
        #expect(report.keysRetired > 0)
        let checker = try MiniChecker(lines: sink.lines)
        #expect(checker.problems.isEmpty, "\(checker.problems.prefix(5))")
        #expect(checker.events.count == report.historyLines)
    }

    @Test func listAppendHistoryHoldsUpUnderFaults() async throws {
        let faults = ModelCoordinator.Faults(
            determinate: 0.05, appliedButLost: 0.05, lostUnapplied: 0.05, readFailure: 0.05)
        let model = ModelCoordinator(seed: 2, faults: faults)
        let (report, sink) = try await listAppend(
            model, shape: .open(rate: 5000, maxInFlight: 6, arrivals: .poisson), txns: 400, seed: 22)
        let total = report.counts.values.reduce(OutcomeCounts(), +)
        #expect(total.info > 0)
        #expect(total.fail > 0)
        #expect(report.processes > 6 + report.finalReads.keys, "info retired processes")
        #expect(report.finalReads.done == report.finalReads.keys)
        let checker = try MiniChecker(lines: sink.lines)
        #expect(checker.problems.isEmpty, "\(checker.problems.prefix(5))")
    }

    @Test func rerunStartsPastTheKeysOfEarlierRuns() async throws {
        let model = ModelCoordinator(seed: 3)
        let (first, _) = try await listAppend(model, shape: .closed(clients: 3), txns: 100, seed: 5)
        let (second, sink) = try await listAppend(model, shape: .closed(clients: 3), txns: 100, seed: 5)
        #expect(first.firstKeyIndex == [0, 0, 0])
        #expect(second.firstKeyIndex.allSatisfy { $0 > 0 })
        let checker = try MiniChecker(lines: sink.lines)
        #expect(checker.problems.isEmpty, "\(checker.problems.prefix(5))")
    }

    func bank(_ model: ModelCoordinator, txns: Int) async throws -> BankReport {
        let settings = BankSettings(
            layout: BankLayout(accounts: 6, shards: 3, initial: 50), shape: .closed(clients: 4), seed: 9,
            duration: .seconds(120), maxTransactions: txns, auditFraction: 0.2, finalAuditTimeout: .seconds(60),
            setupTimeout: .seconds(60), backoffMilliseconds: 1...2)
        let workload = BankWorkload(target: model, settings: settings)
        try await workload.setup()
        return await workload.run()
    }

    @Test func bankKeepsItsMoneyUnderFaults() async throws {
        let faults = ModelCoordinator.Faults(
            determinate: 0.05, appliedButLost: 0.05, lostUnapplied: 0.05, readFailure: 0.05)
        let model = ModelCoordinator(seed: 4, faults: faults)
        let report = try await bank(model, txns: 300)
        #expect(report.violations.isEmpty, "\(report.violations.first?.description ?? "")")
        #expect(report.deposited)
        #expect(report.audits > 20)
        #expect(report.finalAudit?.total == 300)
        // A second run finds the bank open and leaves it alone.
        let again = try await bank(model, txns: 50)
        #expect(!again.deposited)
        #expect(again.violations.isEmpty)
    }

    @Test func bankCatchesTornCommits() async throws {
        let model = ModelCoordinator(seed: 5, tornCommits: true)
        let settings = BankSettings(
            layout: BankLayout(accounts: 6, shards: 3, initial: 50), shape: .closed(clients: 2), seed: 9,
            duration: .seconds(120), maxTransactions: 200, auditFraction: 0.2, setupTimeout: .seconds(60),
            backoffMilliseconds: 1...2)
        // The deposit itself is torn too, so setup already sees a wrong total.
        let workload = BankWorkload(target: model, settings: settings)
        await #expect(throws: LoadGenError.self) { try await workload.setup() }
    }

    @Test func bankCatchesTransfersThatTear() async throws {
        // Deposit on a sound coordinator, then transfer on one that tears.
        let sound = ModelCoordinator(seed: 6)
        _ = try await bank(sound, txns: 0)
        let torn = ModelCoordinator(seed: 99, tornCommits: true)
        await torn.load(await sound.contents())
        let report = try await bank(torn, txns: 200)
        #expect(!report.violations.isEmpty)
        #expect(report.violations.allSatisfy { $0.total != 300 })
    }
}
