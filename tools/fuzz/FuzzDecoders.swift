// libFuzzer target for every PersistCodec decoder. Built by tools/fuzz-codec.sh with
// swiftc directly (see DESIGN.md §9), never by SwiftPM.
//
// The input is shown to each decoder:
// - TransmittableBatch.decode and BatchPartFrame.decode get all of it;
// - TxnsEntry.decode gets the bytes after the first, split into key and value at an
//   offset taken from the first byte (so `[37] + key + value` is a whole entry);
// - PartRows.decode gets the bytes after the first, with the first byte's low four bits
//   as the row count;
// - the consensus log reader reads a sequence of framed records from all of it, and the
//   segment header decoder gets all of it;
// - ShardState.decode (rollups) and StateDiff.decode (consensus values) get all of it.
// Throwing a CodecError is the expected outcome for almost every input. Whatever decodes
// must encode back to exactly the bytes it came from; anything else is a codec bug, and
// the harness traps so that libFuzzer records the input.

import PersistCodec
import PersistCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    checkBatchHandle(input)
    checkBatchPart(input)
    checkLogRecords(input)
    checkRPC(input)
    checkSegmentHeader(input)
    checkShardState(input)
    checkStateDiff(input)
    if let selector = input.first {
        let rest = Array(input.dropFirst())
        checkTxnsEntry(rest, split: Int(selector))
        checkRows(rest, rowCount: UInt64(selector & 0x0F))
    }
    return 0
}

/// Traps with `message` unless `condition` holds. Unlike `precondition`, the message
/// survives -O, so the fuzzer's crash report says which round trip broke.
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzDecoders: \(message)")
}

func checkBatchHandle(_ bytes: [UInt8]) {
    guard let handle = try? TransmittableBatch.decode(bytes) else { return }
    require(handle.encode() == bytes, "batch handle does not re-encode to its input")
}

func checkBatchPart(_ bytes: [UInt8]) {
    guard let frame = try? BatchPartFrame.decode(bytes) else { return }
    let again = BatchPartFrame.encode(
        codec: frame.header.codec, rowCount: frame.header.rowCount,
        uncompressedLength: Int(frame.header.uncompressedLength), storedPayload: frame.payload)
    require(again == bytes, "batch part does not re-encode to its input")
    // An uncompressed payload is rows; go one level deeper.
    if frame.header.codec == .none {
        checkRows(frame.payload, rowCount: frame.header.rowCount)
    }
}

func checkTxnsEntry(_ bytes: [UInt8], split: Int) {
    let cut = min(split, bytes.count)
    let key = Array(bytes[0..<cut])
    let value = Array(bytes[cut...])
    guard let entry = try? TxnsEntry.decode(key: key, value: value) else { return }
    require(entry.encodedKey == key, "txns entry key does not re-encode to its input")
    require(entry.encodedValue == value, "txns entry value does not re-encode to its input")
    if case .append(let shard, _, let batch) = entry {
        // decode already validated the embedded handle; it must agree about the shard.
        guard let handle = try? TransmittableBatch.decode(batch) else {
            fail("txns entry accepted a batch handle that does not decode")
        }
        require(handle.shard == shard, "txns entry accepted a batch of another shard")
    }
}

func checkRows(_ bytes: [UInt8], rowCount: UInt64) {
    guard let rows = try? PartRows.decode(bytes, rowCount: rowCount) else { return }
    require(UInt64(rows.count) == rowCount, "part rows decoded the wrong number of rows")
    require(PartRows.encode(rows) == bytes, "part rows do not re-encode to their input")
}

func checkLogRecords(_ bytes: [UInt8]) {
    var offset = 0
    while case .record(let record, let length) = ConsensusLogRecord.read(bytes, at: offset, end: bytes.count) {
        require(length > 0 && offset + length <= bytes.count, "log record length out of bounds")
        require(
            record.encoded() == Array(bytes[offset..<offset + length]),
            "log record does not re-encode to its input")
        offset += length
    }
}

func checkSegmentHeader(_ bytes: [UInt8]) {
    guard let header = try? ConsensusLogSegmentHeader.decode(bytes) else { return }
    require(
        header.encode() == Array(bytes.prefix(ConsensusLogSegmentHeader.size)),
        "segment header does not re-encode to its input")
}

func checkShardState(_ bytes: [UInt8]) {
    guard let state = try? ShardState.decode(bytes) else { return }
    require(state.encode() == bytes, "shard state does not re-encode to its input")
    // decode promises a valid trace; the structural check must agree.
    require((try? state.trace.validate()) != nil, "shard state decoded with an invalid trace")
}

func checkStateDiff(_ bytes: [UInt8]) {
    guard let diff = try? StateDiff.decode(bytes) else { return }
    require(diff.encode() == bytes, "state diff does not re-encode to its input")
    require(diff.seqnoFrom < diff.seqnoTo, "state diff decoded with seqnos out of order")
}

func checkRPC(_ bytes: [UInt8]) {
    if let (id, request) = try? ConsensusRPC.decodeRequest(bytes) {
        require(Array(ConsensusRPC.encode(request: request, id: id).dropFirst(4)) == bytes, "rpc request does not re-encode to its input")
    }
    if let (id, response) = try? ConsensusRPC.decodeResponse(bytes) {
        require(Array(ConsensusRPC.encode(response: response, id: id).dropFirst(4)) == bytes, "rpc response does not re-encode to its input")
    }
    if let (id, request) = try? CoordinatorRPC.decodeRequest(bytes) {
        require(Array(CoordinatorRPC.encode(request: request, id: id).dropFirst(4)) == bytes, "coordinator request does not re-encode to its input")
    }
    if let (id, response) = try? CoordinatorRPC.decodeResponse(bytes) {
        require(Array(CoordinatorRPC.encode(response: response, id: id).dropFirst(4)) == bytes, "coordinator response does not re-encode to its input")
    }
}
