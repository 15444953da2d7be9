import PersistCore

/// Seeded jittered pauses after transport trouble, so a coordinator that is down or
/// restarting is not spun on.
public struct Backoff: Sendable {
    var rng: SeededGenerator
    public let range: ClosedRange<Int>

    /// Pauses of `range` milliseconds, uniformly.
    public init(seed: UInt64, range: ClosedRange<Int> = 50...200) {
        rng = SeededGenerator(seed: seed)
        self.range = range
    }

    public mutating func nextMilliseconds() -> Int { Int.random(in: range, using: &rng) }

    /// Sleeps for the next pause (returns early if the task is cancelled).
    public mutating func pause() async {
        let ms = nextMilliseconds()
        try? await Task.sleep(for: .milliseconds(ms))
    }
}

/// Mixes a seed with a stream number, for independent per-client generators.
public func derivedSeed(_ seed: UInt64, stream: UInt64) -> UInt64 {
    var z = seed &+ (stream &+ 1) &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
