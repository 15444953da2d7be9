import Foundation
import Synchronization

/// Where history lines go. Called under the recorder's lock, in line order.
public protocol HistorySink: Sendable {
    func write(_ bytes: [UInt8]) throws
    /// Makes everything written so far durable enough to survive this process exiting.
    func close() throws
}

/// A history file, created (or truncated) when opened.
public final class FileHistorySink: HistorySink {
    let handle: FileHandle
    public let path: String

    public init(path: String) throws(LoadGenError) {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw LoadGenError.output("cannot create the history file \(path)")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw LoadGenError.output("cannot open the history file \(path) for writing")
        }
        self.handle = handle
        self.path = path
    }

    public func write(_ bytes: [UInt8]) throws {
        try handle.write(contentsOf: bytes)
    }

    public func close() throws {
        try handle.synchronize()
        try handle.close()
    }
}

/// Records history lines in real-time order.
///
/// Each `record` takes the next index and the current monotonic time and appends the
/// line under one lock, so line order is the order the events happened in: callers
/// record an invocation just before sending its first request and a completion just
/// after the last answer. Lines are buffered and written out when the buffer fills, on
/// `flush()` (once a second during a run) and on `close()`; a write error stops the
/// writing and is reported by `close()`.
public final class HistoryRecorder: Sendable {
    struct State {
        var nextIndex = 0
        var buffer: [UInt8] = []
        var failure: String?
        var lines = 0
    }

    let sink: (any HistorySink)?
    let origin: ContinuousClock.Instant
    let state = Mutex(State())
    static let flushThreshold = 64 << 10

    /// A recorder writing to `sink`, or counting only (nil: no history wanted).
    public init(sink: (any HistorySink)?, origin: ContinuousClock.Instant = .now) {
        self.sink = sink
        self.origin = origin
    }

    /// Appends one line now, and returns its index.
    @discardableResult
    public func record(_ type: HistoryEventType, process: Int, ops: [HistoryOp]) -> Int {
        state.withLock { s in
            let index = s.nextIndex
            s.nextIndex += 1
            s.lines += 1
            guard let sink, s.failure == nil else { return index }
            let elapsed = ContinuousClock.now - origin
            let event = HistoryEvent(
                index: index, time: Self.nanoseconds(elapsed), type: type, process: process, ops: ops)
            s.buffer += Array(event.jsonLine.utf8)
            s.buffer.append(UInt8(ascii: "\n"))
            if s.buffer.count >= Self.flushThreshold { Self.drain(&s, to: sink) }
            return index
        }
    }

    /// The number of lines recorded so far.
    public var lineCount: Int { state.withLock { $0.lines } }

    /// Writes out the buffered lines.
    public func flush() {
        guard let sink else { return }
        state.withLock { Self.drain(&$0, to: sink) }
    }

    /// Writes out the rest and closes the sink; throws if any write failed.
    public func close() throws(LoadGenError) {
        guard let sink else { return }
        let failure = state.withLock { s -> String? in
            Self.drain(&s, to: sink)
            if s.failure == nil {
                do { try sink.close() } catch { s.failure = "\(error)" }
            }
            return s.failure
        }
        if let failure { throw LoadGenError.output("writing the history failed: \(failure)") }
    }

    private static func drain(_ s: inout State, to sink: any HistorySink) {
        guard !s.buffer.isEmpty, s.failure == nil else { return }
        do {
            try sink.write(s.buffer)
        } catch {
            s.failure = "\(error)"
        }
        s.buffer.removeAll(keepingCapacity: true)
    }

    static func nanoseconds(_ d: Duration) -> UInt64 {
        let c = d.components
        guard c.seconds >= 0 else { return 0 }
        return UInt64(c.seconds) * 1_000_000_000 + UInt64(c.attoseconds / 1_000_000_000)
    }
}
