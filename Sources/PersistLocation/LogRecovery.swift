#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import PersistCodec
import PersistCore

/// Rebuilds LogConsensus's state from its segment files at open.
///
/// Every record's checksum is verified. Records are applied order-independently: a
/// version is identified by (key, seqno) and copies of it must be identical; truncations
/// raise a per-key watermark; versions below the watermark are dead. An invalid record in
/// the newest segment ends the log there (the tail is cut off durably: it can only be a
/// write that was never acknowledged); anywhere else it is reported as corruption.
struct LogRecovery {
    struct LastSegment {
        var path: String
        var validLength: Int
    }

    var table = ConsensusTable()
    var watermarks: [ByteKey: SeqNo] = [:]
    var deadOnDisk: [ByteKey: Int] = [:]
    var segments: [UInt64: LogSegmentInfo] = [:]
    var lastSegment: LastSegment?
    var nextSegmentID: UInt64 = 1
    var tornBytes = 0

    static func segmentID(fromFileName name: String) -> UInt64? {
        guard name.hasPrefix("consensus-"), name.hasSuffix(".log") else { return nil }
        let hex = name.dropFirst("consensus-".count).dropLast(".log".count)
        guard hex.count == 16 else { return nil }
        return UInt64(hex, radix: 16)
    }

    static func run(directory: String, logger: Logger) throws(StorageError) -> LogRecovery {
        var out = LogRecovery()
        let ids = (try Posix.listDirectory(directory) ?? []).compactMap { segmentID(fromFileName: $0.name) }.sorted()
        // (segment, size) of every copy of every version, by key and seqno.
        var copies: [ByteKey: [SeqNo: (data: [UInt8], segments: [UInt64], size: Int)]] = [:]

        for (index, id) in ids.enumerated() {
            let isLast = index == ids.count - 1
            let path = LogConsensus.segmentPath(directory, id)
            guard let fd = try Posix.openFile(path, O_RDWR) else { continue }
            defer { Posix.closeFile(fd) }
            let bytes = try Posix.readAll(fd, path: path)

            let header: ConsensusLogSegmentHeader
            do throws(CodecError) {
                header = try ConsensusLogSegmentHeader.decode(bytes)
            } catch {
                guard isLast else {
                    throw .determinate(.corruption, "consensus log segment \(path) has a bad header: \(error)")
                }
                // A crash while the newest segment was being created: it holds nothing.
                logger.warning("removing consensus log segment with an incomplete header", metadata: ["path": "\(path)"])
                try Posix.unlinkFile(path)
                try Posix.syncDirectory(directory)
                out.tornBytes += bytes.count
                out.nextSegmentID = id + 1
                continue
            }
            guard header.segmentID == id else {
                throw .determinate(.corruption, "consensus log segment \(path) says it is segment \(header.segmentID)")
            }

            var offset = ConsensusLogSegmentHeader.size
            var liveInfo = LogSegmentInfo(totalBytes: 0, liveBytes: 0, liveRecords: 0)
            scan: while true {
                switch ConsensusLogRecord.read(bytes, at: offset, end: bytes.count) {
                case .end:
                    break scan
                case .record(let record, let length):
                    switch record {
                    case .version(let rawKey, let v):
                        let key = ByteKey(utf8: rawKey)
                        if var existing = copies[key]?[v.seqno] {
                            guard existing.data == v.data else {
                                throw .determinate(
                                    .corruption,
                                    "consensus log holds two different versions \(v.seqno) of key \(key.string)")
                            }
                            existing.segments.append(id)
                            copies[key]?[v.seqno] = existing
                        } else {
                            copies[key, default: [:]][v.seqno] = (v.data, [id], length)
                        }
                    case .truncation(let rawKey, let below):
                        let key = ByteKey(utf8: rawKey)
                        if out.watermarks[key].map({ $0 < below }) ?? true { out.watermarks[key] = below }
                    }
                    offset += length
                case .invalid(let error):
                    guard isLast else {
                        throw .determinate(
                            .corruption, "consensus log segment \(path) is corrupt at offset \(offset): \(error)")
                    }
                    let cut = bytes.count - offset
                    logger.warning(
                        "cutting a torn write off the end of the consensus log",
                        metadata: ["path": "\(path)", "offset": "\(offset)", "bytes": "\(cut)", "reason": "\(error)"])
                    try Posix.truncateFile(fd, to: offset, path: path)
                    try Posix.sync(fd, path: path)
                    out.tornBytes += cut
                    break scan
                }
            }
            liveInfo.totalBytes = offset
            out.segments[id] = liveInfo
            out.nextSegmentID = id + 1
            if isLast { out.lastSegment = LastSegment(path: path, validLength: offset) }
        }

        // Live versions: at or above the key's watermark; each lives in its newest copy.
        for (key, bySeqno) in copies {
            let watermark = out.watermarks[key] ?? .minimum
            var list: [ConsensusTable.Stored] = []
            for (seqno, copy) in bySeqno {
                if seqno < watermark {
                    out.deadOnDisk[key, default: 0] += copy.segments.count
                    continue
                }
                guard let home = copy.segments.max() else { continue }
                list.append(.init(version: VersionedData(seqno: seqno, data: copy.data), segment: home))
                out.segments[home]?.liveBytes += copy.size
                out.segments[home]?.liveRecords += 1
            }
            guard !list.isEmpty else {
                throw .determinate(
                    .corruption, "consensus log truncated every version of key \(key.string), including its head")
            }
            list.sort { $0.version.seqno < $1.version.seqno }
            out.table.load(key, list)
        }
        for key in out.watermarks.keys where copies[key] == nil {
            throw .determinate(.corruption, "consensus log has a truncation for key \(key.string) but no versions")
        }
        return out
    }
}
