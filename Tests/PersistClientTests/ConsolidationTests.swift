import PersistClient
import PersistCore
import Testing

/// Test data shared by the batch suites.
enum BatchTestData {
    /// The obvious definition of consolidation, to check the in-place one against: sum the
    /// diffs per triple in a dictionary, drop zeros, sort.
    static func naiveConsolidate(_ updates: [Update]) -> [Update] {
        struct Triple: Hashable {
            var key: [UInt8]
            var value: [UInt8]
            var time: Timestamp
        }
        var sums: [Triple: Int64] = [:]
        for u in updates { sums[Triple(key: u.key, value: u.value, time: u.time), default: 0] &+= u.diff }
        return sums.filter { $0.value != 0 }
            .map { Update(key: $0.key.key, value: $0.key.value, time: $0.key.time, diff: $0.value) }
            .sorted { a, b in
                if a.key != b.key { return a.key.lexicographicallyPrecedes(b.key) }
                if a.value != b.value { return a.value.lexicographicallyPrecedes(b.value) }
                return a.time < b.time
            }
    }

    /// Updates drawn from small alphabets so that many coincide: keys and values of 0 to 3
    /// bytes out of {0x00, 0x01, 0x7f, 0x80, 0xff} (the high bytes catch signed comparison),
    /// times in `times` (0...5 unless given), diffs -2...2.
    static func randomUpdates(count: Int, times: ClosedRange<Timestamp> = 0...5, using g: inout SeededGenerator)
        -> [Update]
    {
        let alphabet: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xFF]
        func bytes() -> [UInt8] {
            (0..<Int.random(in: 0...3, using: &g)).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &g)] }
        }
        return (0..<count).map { _ in
            Update(key: bytes(), value: bytes(), time: UInt64.random(in: times, using: &g), diff: Int64.random(in: -2...2, using: &g))
        }
    }
}

@Suite struct ConsolidationTests {
    @Test func ordersByKeyThenValueThenTimeAsUnsignedBytes() {
        var updates = [
            Update(key: [2], value: [], time: 0, diff: 1),
            Update(key: [1, 0], value: [], time: 0, diff: 1),
            Update(key: [1], value: [0xFF], time: 0, diff: 1),
            Update(key: [1], value: [0x01], time: 9, diff: 1),
            Update(key: [1], value: [0x01], time: 3, diff: 1),
            Update(key: [], value: [5], time: 0, diff: 1),
            Update(key: [0x80], value: [], time: 0, diff: 1),
        ]
        Consolidation.consolidate(&updates)
        #expect(updates.map(\.key) == [[], [1], [1], [1], [1, 0], [2], [0x80]])
        #expect(updates.map(\.value) == [[5], [0x01], [0x01], [0xFF], [], [], []])
        #expect(updates.map(\.time) == [0, 3, 9, 0, 0, 0, 0])
    }

    @Test func sumsEqualTriplesAndDropsZeros() {
        var updates = [
            Update(key: [1], value: [1], time: 1, diff: 3),
            Update(key: [2], value: [2], time: 2, diff: 1),
            Update(key: [1], value: [1], time: 1, diff: -1),
            Update(key: [2], value: [2], time: 2, diff: -1),
            Update(key: [1], value: [1], time: 2, diff: 4),
            Update(key: [3], value: [], time: 0, diff: 0),
        ]
        Consolidation.consolidate(&updates)
        #expect(updates == [
            Update(key: [1], value: [1], time: 1, diff: 2),
            Update(key: [1], value: [1], time: 2, diff: 4),
        ])
    }

    @Test func diffsWrapOnOverflow() {
        var updates = [
            Update(key: [1], value: [], time: 0, diff: .max),
            Update(key: [1], value: [], time: 0, diff: 1),
        ]
        Consolidation.consolidate(&updates)
        #expect(updates == [Update(key: [1], value: [], time: 0, diff: .min)])
        // ... and the order of addition does not matter.
        var cancelling = [
            Update(key: [1], value: [], time: 0, diff: .max),
            Update(key: [1], value: [], time: 0, diff: 2),
            Update(key: [1], value: [], time: 0, diff: .min),
            Update(key: [1], value: [], time: 0, diff: -1),
        ]
        Consolidation.consolidate(&cancelling)
        #expect(cancelling.isEmpty)
    }

    @Test func emptyAndSingleInputs() {
        var none: [Update] = []
        Consolidation.consolidate(&none)
        #expect(none.isEmpty)
        var zero = [Update(key: [1], value: [], time: 0, diff: 0)]
        Consolidation.consolidate(&zero)
        #expect(zero.isEmpty)
        var one = [Update(key: [1], value: [], time: 7, diff: -5)]
        Consolidation.consolidate(&one)
        #expect(one == [Update(key: [1], value: [], time: 7, diff: -5)])
    }

    @Test(arguments: [1, 2, 10, 100, 2000])
    func matchesDictionaryModel(size: Int) {
        var g = SeededGenerator(seed: 0xC0_0000 + UInt64(size))
        for _ in 0..<50 {
            let input = BatchTestData.randomUpdates(count: size, using: &g)
            var updates = input
            Consolidation.consolidate(&updates)
            #expect(updates == BatchTestData.naiveConsolidate(input))
            // Strictly increasing triples, no zero diffs.
            for i in updates.indices.dropFirst() {
                #expect(Consolidation.precedes(updates[i - 1], updates[i]))
            }
            #expect(!updates.contains { $0.diff == 0 })
            // Consolidating again changes nothing (the already-sorted path).
            var again = updates
            Consolidation.consolidate(&again)
            #expect(again == updates)
        }
    }

    @Test func sortedInputWithDuplicatesStillMerges() {
        // Sorted but not consolidated: exercises the path that skips sorting.
        var updates = [
            Update(key: [1], value: [], time: 0, diff: 1),
            Update(key: [1], value: [], time: 0, diff: 1),
            Update(key: [1], value: [], time: 1, diff: 1),
            Update(key: [1], value: [], time: 1, diff: -1),
            Update(key: [2], value: [], time: 0, diff: 1),
        ]
        Consolidation.consolidate(&updates)
        #expect(updates == [
            Update(key: [1], value: [], time: 0, diff: 2),
            Update(key: [2], value: [], time: 0, diff: 1),
        ])
    }

    @Test func advanceRaisesTimesToTheFrontier() {
        var updates = [
            Update(key: [1], value: [], time: 2, diff: 1),
            Update(key: [1], value: [], time: 5, diff: 1),
            Update(key: [1], value: [], time: 9, diff: 1),
        ]
        Consolidation.advance(&updates, to: Antichain(5))
        #expect(updates.map(\.time) == [5, 5, 9])
        Consolidation.consolidate(&updates)
        #expect(updates == [
            Update(key: [1], value: [], time: 5, diff: 2),
            Update(key: [1], value: [], time: 9, diff: 1),
        ])
        // The empty frontier has no time to advance to: times stay.
        var closed = [Update(key: [1], value: [], time: 2, diff: 1)]
        Consolidation.advance(&closed, to: .empty)
        #expect(closed.map(\.time) == [2])
        var minimum = [Update(key: [1], value: [], time: 0, diff: 1)]
        Consolidation.advance(&minimum, to: .minimum)
        #expect(minimum.map(\.time) == [0])
    }
}
