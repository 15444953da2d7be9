import ArgumentParser
import PersistCore
import PersistLocation

/// Which `Consensus` implementation the consensus benchmark drives.
enum ConsensusBackendKind: String, CaseIterable, ExpressibleByArgument, Codable {
    /// `MemoryConsensus`: no disk at all; measures the calling overhead alone.
    case mem
    /// `LogConsensus`: the durable log engine with group-commit fsync.
    case log

    var displayName: String {
        switch self {
        case .mem: return "MemoryConsensus"
        case .log: return "LogConsensus"
        }
    }
}

/// Durability work a backend did so far; only the log engine has any.
struct FlushCounters: Sendable {
    var fsyncs: Int
    var records: Int
    var bytes: Int

    static func - (a: FlushCounters, b: FlushCounters) -> FlushCounters {
        FlushCounters(fsyncs: a.fsyncs - b.fsyncs, records: a.records - b.records, bytes: a.bytes - b.bytes)
    }
}

/// An opened backend plus the hooks the benchmark needs beyond the `Consensus` protocol.
struct OpenedConsensus: Sendable {
    var consensus: any Consensus
    /// Current durability counters, or nil for a backend without a disk.
    var counters: @Sendable () -> FlushCounters?
    /// Flushes and releases the backend; it is not used afterwards.
    var close: @Sendable () async -> Void

    /// Opens a fresh instance of `kind`, keeping any files under `directory`.
    static func open(_ kind: ConsensusBackendKind, directory: String) throws(BenchError) -> OpenedConsensus {
        switch kind {
        case .mem:
            return OpenedConsensus(consensus: MemoryConsensus(), counters: { nil }, close: {})
        case .log:
            let log: LogConsensus
            do {
                log = try LogConsensus.open(directory: directory)
            } catch {
                throw BenchError("cannot open LogConsensus in \(directory): \(error)")
            }
            return OpenedConsensus(
                consensus: log,
                counters: {
                    let s = log.stats()
                    return FlushCounters(fsyncs: s.fsyncCount, records: s.recordsWritten, bytes: s.bytesWritten)
                },
                close: { await log.close() })
        }
    }
}
