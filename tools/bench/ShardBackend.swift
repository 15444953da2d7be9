import ArgumentParser
import PersistLocation

/// Which blob and consensus pair the shard-layer benchmark runs `PersistClient` on.
enum ShardBackendKind: String, CaseIterable, ExpressibleByArgument, Codable, Sendable {
    /// `MemoryBlob` and `MemoryConsensus`: no I/O; measures the shard layer's own cost.
    case mem
    /// `FileBlob` and `LogConsensus` in a scratch directory: every part and every
    /// compare-and-set is fsynced.
    case file

    var displayName: String {
        switch self {
        case .mem: return "MemoryBlob + MemoryConsensus"
        case .file: return "FileBlob + LogConsensus"
        }
    }
}

/// A comma-separated list of shard backends, e.g. `mem,file`.
struct ShardBackendList: ExpressibleByArgument {
    var kinds: [ShardBackendKind]

    init?(argument: String) {
        let parsed = argument.split(separator: ",").map {
            ShardBackendKind(rawValue: $0.trimmingCharacters(in: .whitespaces))
        }
        guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else { return nil }
        kinds = parsed.compactMap { $0 }
    }

    init(_ kinds: [ShardBackendKind]) { self.kinds = kinds }

    var defaultValueDescription: String { kinds.map(\.rawValue).joined(separator: ",") }

    static var allValueStrings: [String] { ShardBackendKind.allCases.map(\.rawValue) }
}

/// An opened blob and consensus pair, with the way to release it.
struct OpenedShardBackend: Sendable {
    var kind: ShardBackendKind
    var blob: any Blob
    var consensus: any Consensus
    /// Flushes and releases the backend; it is not used afterwards.
    var close: @Sendable () async -> Void

    /// Opens a fresh pair of `kind`; the file pair keeps its files under `directory`
    /// (`blob/` and `consensus/`), which is otherwise unused.
    static func open(_ kind: ShardBackendKind, directory: String) throws(BenchError) -> OpenedShardBackend {
        switch kind {
        case .mem:
            return OpenedShardBackend(kind: kind, blob: MemoryBlob(), consensus: MemoryConsensus(), close: {})
        case .file:
            let blob: FileBlob
            do {
                blob = try FileBlob(root: "\(directory)/blob")
            } catch {
                throw BenchError("cannot open FileBlob in \(directory)/blob: \(error)")
            }
            let log: LogConsensus
            do {
                log = try LogConsensus.open(directory: "\(directory)/consensus")
            } catch {
                throw BenchError("cannot open LogConsensus in \(directory)/consensus: \(error)")
            }
            return OpenedShardBackend(kind: kind, blob: blob, consensus: log, close: { await log.close() })
        }
    }
}
