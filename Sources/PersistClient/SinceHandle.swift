import PersistCodec
import PersistCore

/// A critical reader (spec/persist.md §5.2): a since capability that never expires on
/// its own, fenced by an opaque token so that a zombie holder of the same id cannot move
/// it. Holds no seqno.
public final class SinceHandle: Sendable {
    public let readerID: CriticalReaderID
    let machine: ShardMachine
    let maintenance: MaintenanceRunner

    init(machine: ShardMachine, id: CriticalReaderID, maintenance: MaintenanceRunner) {
        self.readerID = id
        self.machine = machine
        self.maintenance = maintenance
    }

    /// This reader's since and token, as of the newest state this process knows.
    public var since: Antichain? { machine.current.criticalReaders[readerID]?.since }
    public var opaque: UInt64? { machine.current.criticalReaders[readerID]?.opaque }

    /// Sets the token to `newOpaque` and moves the since to `newSince` (never back), iff
    /// the stored token is `expected`. Throws `ReadError.leaseExpired` if the reader was
    /// expired.
    public func compareAndDowngradeSince(expected: UInt64, newOpaque: UInt64, newSince: Antichain) async throws
        -> SinceDowngradeResult
    {
        let id = readerID
        let applied = try await machine.applyIdempotent { s in
            s.compareAndDowngradeSince(id, expected: expected, newOpaque: newOpaque, newSince: newSince)
        }
        maintenance.run(applied.maintenance, machine: machine)
        guard let r = applied.result else { throw ReadError.leaseExpired }
        return r
    }

    /// Removes this critical reader, releasing its hold on the since.
    public func expire() async throws {
        let id = readerID
        let applied = try await machine.applyIdempotent { s in s.expireCriticalReader(id) }
        maintenance.run(applied.maintenance, machine: machine)
    }
}
