import PersistCore
import Testing

@Suite struct SeqNoTests {
    @Test func rangeIsZeroThroughInt64Max() {
        #expect(SeqNo(UInt64(0))?.rawValue == 0)
        #expect(SeqNo(UInt64(Int64.max))?.rawValue == UInt64(Int64.max))
        #expect(SeqNo(UInt64(Int64.max) + 1) == nil)
        #expect(SeqNo(UInt64.max) == nil)
        #expect(SeqNo.minimum.rawValue == 0)
        #expect(SeqNo.maximum.rawValue == UInt64(Int64.max))
        #expect(SeqNo(7).rawValue == 7)
    }

    @Test func nextStepsByOneAndStopsAtMaximum() {
        #expect(SeqNo.minimum.next == SeqNo(1))
        #expect(SeqNo(41).next == SeqNo(42))
        #expect(SeqNo(UInt64(Int64.max) - 1)?.next == SeqNo.maximum)
        #expect(SeqNo.maximum.next == nil)
    }

    @Test func orderFollowsRawValue() {
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<500 {
            let a = UInt64.random(in: 0...UInt64(Int64.max), using: &rng)
            let b = UInt64.random(in: 0...UInt64(Int64.max), using: &rng)
            let sa = SeqNo(a)!, sb = SeqNo(b)!
            #expect((sa < sb) == (a < b))
            #expect((sa == sb) == (a == b))
        }
        #expect(SeqNo.minimum < SeqNo.maximum)
    }

    @Test func printsAsVN() {
        #expect(SeqNo(0).description == "v0")
        #expect(SeqNo(123).description == "v123")
        #expect(SeqNo.maximum.description == "v9223372036854775807")
    }
}
