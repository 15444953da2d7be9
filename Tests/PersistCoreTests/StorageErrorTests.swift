import PersistCore
import Testing

@Suite struct StorageErrorTests {
    @Test func determinateHelperMarksDeterminate() {
        let e = StorageError.determinate(.rejected, "no")
        #expect(e.isDeterminate)
        #expect(e.determinacy == .determinate)
        #expect(e.code == .rejected)
        #expect(e.message == "no")
        #expect(e == StorageError(.rejected, .determinate, "no"))
    }

    @Test func indeterminateHelperMarksIndeterminate() {
        let e = StorageError.indeterminate(.timeout, "slow")
        #expect(!e.isDeterminate)
        #expect(e.determinacy == .indeterminate)
        #expect(e.code == .timeout)
        #expect(e != StorageError.determinate(.timeout, "slow"))
    }

    @Test func descriptionNamesDeterminacyAndCode() {
        #expect(StorageError.indeterminate(.invalidArgument, "bad key").description
            == "indeterminate invalid_argument error: bad key")
        #expect(StorageError.determinate(.io, "EIO").description == "determinate io error: EIO")
    }

    @Test func codesHaveStableNames() {
        // These names appear in logs and metrics; renaming one is a visible change.
        let names: [StorageError.Code: String] = [
            .invalidArgument: "invalid_argument", .io: "io", .timeout: "timeout",
            .unavailable: "unavailable", .corruption: "corruption", .rejected: "rejected",
            .failed: "failed",
        ]
        for (code, name) in names {
            #expect(code.rawValue == name)
            #expect(StorageError.Code(rawValue: name) == code)
        }
    }
}
