import LoadGenKit
import PersistCodec
import PersistCore
import Testing

@Suite struct OutcomeTests {
    func commit(_ error: any Error) -> ErrorVerdict { OutcomeClassifier.classify(error, phase: .committing) }

    @Test func refusalsThatGuaranteeNothingHappenedFail() {
        for code in [CoordinatorError.Code.unknownShard, .notRegistered, .timestampClosed, .badRequest, .rejected] {
            #expect(commit(CoordinatorError(code, "no")).outcome == .fail, "\(code)")
        }
        #expect(commit(CoordinatorError(.timestampClosed, "closed", nextUsable: 9)).backOff == false)
        #expect(commit(CoordinatorError(.shuttingDown, OutcomeClassifier.shutdownRefusalMessage)).outcome == .fail)
    }

    @Test func anythingThatMayHaveLandedIsInfo() {
        #expect(commit(CoordinatorError(.storage, "committing failed (it did not take effect): x")).outcome == .info)
        #expect(
            commit(CoordinatorError(.storage, "committing failed (it may or may not have taken effect): x")).outcome
                == .info)
        #expect(commit(CoordinatorError(.shuttingDown, "committing was cancelled")).outcome == .info)
        #expect(commit(StorageError.indeterminate(.timeout, "no answer")).outcome == .info)
        #expect(commit(StorageError.indeterminate(.unavailable, "connection lost")).outcome == .info)
        #expect(commit(CancellationError()).outcome == .info)
        struct Odd: Error {}
        #expect(commit(Odd()).outcome == .info)
    }

    @Test func requestsNeverSentFail() {
        #expect(commit(StorageError.determinate(.unavailable, "connection refused")).outcome == .fail)
        #expect(commit(StorageError.determinate(.rejected, "bad token")).outcome == .fail)
    }

    @Test func readsThatErrFailWhateverTheError() {
        let errors: [any Error] = [
            StorageError.indeterminate(.timeout, "t"), CoordinatorError(.storage, "s"), CancellationError(),
            CoordinatorError(.badRequest, "b"),
        ]
        for e in errors { #expect(OutcomeClassifier.classify(e, phase: .reading).outcome == .fail, "\(e)") }
    }

    @Test func transportTroubleBacksOff() {
        #expect(commit(StorageError.determinate(.unavailable, "refused")).backOff)
        #expect(commit(StorageError.indeterminate(.timeout, "t")).backOff)
        #expect(commit(CoordinatorError(.storage, "s")).backOff)
        #expect(commit(CoordinatorError(.shuttingDown, "s")).backOff)
        #expect(!commit(CoordinatorError(.notRegistered, "n")).backOff)
        #expect(OutcomeClassifier.classify(StorageError.determinate(.unavailable, "r"), phase: .reading).backOff)
    }

    @Test func processIDsAreRetiredAfterInfo() {
        var ids = ProcessIDs()
        let a = ids.acquire()
        let b = ids.acquire()
        #expect((a, b) == (0, 1))
        ids.release(a, after: .ok)
        ids.release(b, after: .info)
        #expect(ids.acquire() == 0, "an ok process is reused")
        #expect(ids.acquire() == 2, "an info process never comes back")
        ids.release(0, after: .fail)
        #expect(ids.acquire() == 0, "a failed process is reused")
        #expect(ids.fresh() == 3)
        #expect(ids.retired == 1)
    }
}
