import PersistCore

/// Consolidation of updates (spec/persist.md §1.1): updates that agree on
/// `(key, value, time)` are one update whose diff is the sum of theirs, and an update
/// whose diff is zero is no update at all.
///
/// Diffs are summed with wrapping 64-bit addition (`&+`), as the reference system's
/// release builds do: a diff is a count, overflow is outside the contract, and wrapping
/// keeps the result independent of the order in which the diffs are added.
public enum Consolidation {
    /// Sorts `updates` by `(key, value, time)` (keys and values compared as unsigned
    /// bytes, lexicographically, a shorter prefix first; times numerically), merges
    /// updates with equal triples by adding their diffs, and removes the updates whose
    /// diff ends up zero.
    ///
    /// Afterwards the triples are strictly increasing and every diff is non-zero. The
    /// multiset the updates denote is unchanged. Runs in place: O(n log n) comparisons,
    /// none of which allocates; an input that is already sorted costs O(n).
    public static func consolidate(_ updates: inout [Update]) {
        guard !updates.isEmpty else { return }
        let kept = updates.withUnsafeMutableBufferPointer { buf -> Int in
            // Reading elements through the buffer borrows them; going through the array
            // would retain and release their keys and values on every comparison.
            if !isSorted(buf) {
                buf.sort { compare($0, $1) < 0 }
            }
            // Merge runs of equal triples in place, keeping the first of each run.
            let n = buf.count
            var write = 0
            var read = 0
            while read < n {
                var diff = buf[read].diff
                var next = read + 1
                while next < n && compare(buf[read], buf[next]) == 0 {
                    diff &+= buf[next].diff
                    next += 1
                }
                if diff != 0 {
                    if write != read { buf.swapAt(write, read) }
                    buf[write].diff = diff
                    write += 1
                }
                read = next
            }
            return write
        }
        updates.removeLast(updates.count - kept)
    }

    /// Advances every update's time to the frontier `since`: `t = max(t, since)`.
    ///
    /// An empty `since` leaves the times as they are (there is no time to advance to).
    /// The result is generally no longer consolidated; call `consolidate` afterwards when
    /// that matters.
    public static func advance(_ updates: inout [Update], to since: Antichain) {
        guard let floor = since.element, floor > 0 else { return }
        for i in updates.indices where updates[i].time < floor {
            updates[i].time = floor
        }
    }

    /// Whether `a` comes strictly before `b` in `(key, value, time)` order.
    public static func precedes(_ a: Update, _ b: Update) -> Bool {
        compare(a, b) < 0
    }

    /// Three-way comparison of the `(key, value, time)` triples of `a` and `b`: negative,
    /// zero or positive as `a` sorts before, equal to, or after `b`. Diffs are ignored.
    @inline(__always)
    static func compare(_ a: Update, _ b: Update) -> Int {
        let byKey = compareBytes(a.key, b.key)
        if byKey != 0 { return byKey }
        let byValue = compareBytes(a.value, b.value)
        if byValue != 0 { return byValue }
        return a.time < b.time ? -1 : (a.time == b.time ? 0 : 1)
    }

    /// Three-way unsigned lexicographic comparison of two byte strings, without copying.
    /// (A plain loop: measured faster here than calling `memcmp` through
    /// `withUnsafeBufferPointer` for the short keys typical of shards.)
    @inline(__always)
    static func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
        let common = Swift.min(a.count, b.count)
        var i = 0
        while i < common {
            let x = a[i]
            let y = b[i]
            if x != y { return x < y ? -1 : 1 }
            i += 1
        }
        return a.count < b.count ? -1 : (a.count == b.count ? 0 : 1)
    }

    /// Whether the triples are already in non-decreasing order, so sorting can be skipped
    /// (equal neighbours are still merged afterwards).
    static func isSorted(_ updates: UnsafeMutableBufferPointer<Update>) -> Bool {
        var i = 1
        while i < updates.count {
            if compare(updates[i - 1], updates[i]) > 0 { return false }
            i += 1
        }
        return true
    }
}
