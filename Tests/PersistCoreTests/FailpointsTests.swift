import PersistCore
import Testing

/// The failpoint table (parsing and the pure firing decision) and the test-bug list. The
/// process side (reading the environment, SIGKILL) is exercised by the process tests of
/// the servers.
@Suite struct FailpointsTests {
    // MARK: Parsing

    @Test func parsesEveryActionAndTrigger() throws {
        let table = try FailpointTable(
            parsing: """
                consensus.before-fsync=crash; blob.before-fsync=crash@0.25 ;\
                coordinator.mid-apply=crash#3;consensus.after-fsync-before-reply = sleep(15)#2 ;;\
                coordinator.before-reply=sleep(20)->crash@1
                """)
        #expect(
            table.rules == [
                .consensusBeforeFsync: [FailpointTerm(.crash)],
                .blobBeforeFsync: [FailpointTerm(.crash, .probability(0.25))],
                .coordinatorMidApply: [FailpointTerm(.crash, .nthHit(3))],
                .consensusAfterFsyncBeforeReply: [FailpointTerm(.sleep(milliseconds: 15), .nthHit(2))],
                .coordinatorBeforeReply: [FailpointTerm(.sleep(milliseconds: 20)), FailpointTerm(.crash, .probability(1))],
            ])
        // The description is the same syntax, so it parses back to the same table.
        #expect(try FailpointTable(parsing: table.description) == table)
    }

    @Test func emptySpecsArmNothing() throws {
        for spec in ["", "  ", ";", " ; ;"] {
            let table = try FailpointTable(parsing: spec)
            #expect(table.isEmpty)
            #expect(table.decide(.consensusBeforeFsync, hit: 1).isEmpty)
        }
        #expect(FailpointTable.empty.description == "(none)")
    }

    @Test func everyRegisteredNameParsesAndHasASummary() throws {
        #expect(Set(Failpoint.allCases.map(\.rawValue)).count == Failpoint.allCases.count)
        for point in Failpoint.allCases {
            #expect(try FailpointTable(parsing: "\(point.rawValue)=crash").rules[point] == [FailpointTerm(.crash)])
            #expect(!point.summary.isEmpty)
            #expect(point.rawValue.split(separator: ".").count == 2, "\(point.rawValue): names are area.what")
        }
    }

    @Test(arguments: [
        ("consensus.before-fsync", "malformed"),
        ("consensus.before-fsync=", "malformed"),
        ("consensus.before-fsync=panic", "malformed"),
        ("consensus.before-fsync=crash#0", "malformed"),
        ("consensus.before-fsync=crash#-1", "malformed"),
        ("consensus.before-fsync=crash#x", "malformed"),
        ("consensus.before-fsync=crash@0", "malformed"),
        ("consensus.before-fsync=crash@1.5", "malformed"),
        ("consensus.before-fsync=crash@nan", "malformed"),
        ("consensus.before-fsync=crash@", "malformed"),
        ("consensus.before-fsync=sleep", "malformed"),
        ("consensus.before-fsync=sleep()", "malformed"),
        ("consensus.before-fsync=sleep(0)", "malformed"),
        ("consensus.before-fsync=sleep(3600001)", "malformed"),
        ("consensus.before-fsync=sleep(1.5)", "malformed"),
        ("consensus.before-fsync=crash->", "malformed"),
        ("consensus.before-fsync=crash#1#2", "malformed"),
        ("consensus.befor-fsync=crash", "unknown"),
        ("blob.before-fsync=crash;Consensus.before-fsync=crash", "unknown"),
        ("=crash", "unknown"),
        ("blob.before-fsync=crash;blob.before-fsync=sleep(5)", "duplicate"),
    ])
    func rejectsBadSpecsNamingTheEntry(_ spec: String, _ kind: String) {
        do {
            let table = try FailpointTable(parsing: spec)
            Issue.record("\(spec) parsed as \(table)")
        } catch {
            switch (kind, error) {
            case ("malformed", .malformedEntry(let entry, _)):
                #expect(spec.contains(entry))
            case ("unknown", .unknownPoint(let name, let entry)):
                #expect(spec.contains(entry) && entry.hasPrefix(name))
                #expect(error.description.contains("consensus.before-fsync"), "lists the known names")
            case ("duplicate", .duplicatePoint(let name)):
                #expect(name == "blob.before-fsync")
            default:
                Issue.record("\(spec): expected a \(kind) error, got \(error)")
            }
            #expect(error.description.contains(Failpoints.variable))
        }
    }

    // MARK: Deciding

    @Test func alwaysFiresOnEveryHitAndUnconfiguredPointsNever() throws {
        let table = try FailpointTable(parsing: "blob.before-fsync=sleep(7)")
        for hit: UInt64 in 1...50 {
            #expect(table.decide(.blobBeforeFsync, hit: hit) == [.sleep(milliseconds: 7)])
            #expect(table.decide(.consensusBeforeFsync, hit: hit).isEmpty)
        }
    }

    @Test func nthHitFiresExactlyOnce() throws {
        let table = try FailpointTable(parsing: "consensus.after-fsync-before-reply=crash#3")
        let firing = (1...100).filter { !table.decide(.consensusAfterFsyncBeforeReply, hit: UInt64($0)).isEmpty }
        #expect(firing == [3])
    }

    @Test func chainedTermsRunInOrderWithTheirOwnTriggers() throws {
        let table = try FailpointTable(parsing: "coordinator.before-apply=sleep(5)->crash#2->sleep(9)#2")
        #expect(table.decide(.coordinatorBeforeApply, hit: 1) == [.sleep(milliseconds: 5)])
        #expect(
            table.decide(.coordinatorBeforeApply, hit: 2) == [.sleep(milliseconds: 5), .crash, .sleep(milliseconds: 9)])
        #expect(table.decide(.coordinatorBeforeApply, hit: 3) == [.sleep(milliseconds: 5)])
    }

    @Test func probabilisticFiringIsReproducibleFromTheSeed() throws {
        let spec = "blob.before-fsync=crash@0.3"
        let a = try FailpointTable(parsing: spec, seed: 42, processSalt: 1000)
        let b = try FailpointTable(parsing: spec, seed: 42, processSalt: 1000)
        let hits: [UInt64] = Array(1...2000)
        let firesA = hits.filter { !a.decide(.blobBeforeFsync, hit: $0).isEmpty }
        let firesB = hits.filter { !b.decide(.blobBeforeFsync, hit: $0).isEmpty }
        #expect(firesA == firesB, "same seed, salt and point: same decisions")
        // About 30 %: far outside these bounds the draw would be broken (the bounds are
        // many standard deviations wide, and the seed is fixed, so this never flakes).
        #expect(firesA.count > 450 && firesA.count < 750, "\(firesA.count) of 2000 fired at p = 0.3")
        // Hits that fire are spread out, not bunched at the start.
        #expect(firesA.contains { $0 > 1000 } && firesA.contains { $0 <= 1000 })
    }

    @Test func seedSaltAndPointEachChangeTheDraws() throws {
        func fired(_ spec: String, _ point: Failpoint, seed: UInt64, salt: UInt64) throws -> [UInt64] {
            let table = try FailpointTable(parsing: spec, seed: seed, processSalt: salt)
            return (1...256).filter { !table.decide(point, hit: $0).isEmpty }
        }
        let base = try fired("blob.before-fsync=crash@0.5", .blobBeforeFsync, seed: 1, salt: 7)
        #expect(try fired("blob.before-fsync=crash@0.5", .blobBeforeFsync, seed: 2, salt: 7) != base)
        #expect(try fired("blob.before-fsync=crash@0.5", .blobBeforeFsync, seed: 1, salt: 8) != base)
        #expect(try fired("consensus.before-fsync=crash@0.5", .consensusBeforeFsync, seed: 1, salt: 7) != base)
    }

    @Test func probabilityOneAlwaysFires() throws {
        let table = try FailpointTable(parsing: "coordinator.mid-apply=crash@1", seed: 99, processSalt: 5)
        for hit: UInt64 in 1...500 { #expect(table.decide(.coordinatorMidApply, hit: hit) == [.crash]) }
    }

    // MARK: Test bugs

    @Test func testBugListsParse() throws {
        #expect(try TestBugs.parse("") == [])
        #expect(try TestBugs.parse(" , ,") == [])
        #expect(try TestBugs.parse("ack-before-fsync") == [.ackBeforeFsync])
        #expect(try TestBugs.parse(" commit-first-shard-only , ack-before-fsync,") == [.ackBeforeFsync, .commitFirstShardOnly])
        for bug in TestBug.allCases { #expect(!bug.summary.isEmpty) }
    }

    @Test func unknownTestBugsAreRejectedByName() {
        #expect(throws: TestBugConfigError.unknownBug("ack-late")) { try TestBugs.parse("ack-before-fsync,ack-late") }
        #expect(throws: TestBugConfigError.unknownBug("ACK-BEFORE-FSYNC")) { try TestBugs.parse("ACK-BEFORE-FSYNC") }
    }

    @Test func testBugsAreOffUnlessAServerSwitchesThemOn() {
        // This process never calls `enableFromEnvironment`, whatever its environment.
        for bug in TestBug.allCases { #expect(!TestBugs.isEnabled(bug)) }
    }
}
