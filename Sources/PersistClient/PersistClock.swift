import Synchronization

/// Wall-clock time in milliseconds for leases, heartbeats and state walltimes. Injected so
/// tests control time.
public protocol PersistClock: Sendable {
    func nowMilliseconds() -> UInt64
}

/// The system's real-time clock.
public struct SystemPersistClock: PersistClock {
    public init() {}

    public func nowMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}

/// A clock that moves only when told to.
public final class ManualPersistClock: PersistClock {
    private let now: Mutex<UInt64>

    public init(startingAt ms: UInt64 = 1_700_000_000_000) { now = Mutex(ms) }

    public func nowMilliseconds() -> UInt64 { now.withLock { $0 } }

    public func advance(byMilliseconds ms: UInt64) { now.withLock { $0 += ms } }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
