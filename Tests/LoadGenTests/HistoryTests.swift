import Foundation
import LoadGenKit
import Testing

@Suite struct HistoryTests {
    @Test func linesParseBackWithEveryField() throws {
        let event = HistoryEvent(
            index: 17, time: 123_456_789, type: .ok, process: 3,
            ops: [
                .append(key: "2/k7", value: 42), .read(key: "1/k3", list: [.int(1), .int(2)]),
                .read(key: "0/k0", list: []),
            ])
        let line = event.jsonLine
        #expect(!line.contains("\n"))
        #expect(
            line
                == #"{"index":17,"time":123456789,"type":"ok","process":3,"f":"txn","value":[["append","2/k7",42],["r","1/k3",[1,2]],["r","0/k0",[]]]}"#
        )
        let parsed = try ParsedEvent(line: line)
        #expect(parsed.index == 17)
        #expect(parsed.time == 123_456_789)
        #expect(parsed.type == "ok")
        #expect(parsed.process == 3)
        #expect(parsed.ops.map(\.f) == ["append", "r", "r"])
        #expect(parsed.ops.map(\.key) == ["2/k7", "1/k3", "0/k0"])
        #expect(parsed.ops[0].value as? Int == 42)
        #expect(parsed.readList(1) == [1, 2])
        #expect(parsed.readList(2) == [])
    }

    @Test func invocationsCarryNullReadsAndTextIsEscaped() throws {
        let event = HistoryEvent(
            index: 0, time: 0, type: .invoke, process: 0,
            ops: [.read(key: "0/k1", list: nil), .read(key: "q\"\\\n\u{1}", list: [.text("a\"b"), .int(-3)])])
        let line = event.jsonLine
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let value = try #require(object["value"] as? [[Any]])
        #expect(value[0][2] is NSNull)
        #expect(value[1][1] as? String == "q\"\\\n\u{1}")
        let list = try #require(value[1][2] as? [Any])
        #expect(list[0] as? String == "a\"b")
        #expect(list[1] as? Int == -3)
    }

    @Test func recorderNumbersLinesInOrderAndWritesThemAll() throws {
        let sink = MemorySink()
        let recorder = HistoryRecorder(sink: sink)
        // Enough lines to cross the flush threshold at least once.
        for i in 0..<3000 {
            recorder.record(
                i % 2 == 0 ? .invoke : .ok, process: i / 2, ops: [.append(key: "0/k\(i / 2)", value: i / 2)])
        }
        recorder.flush()
        #expect(sink.lines.count == 3000)
        try recorder.close()
        #expect(sink.closed)
        let events = try sink.lines.map(ParsedEvent.init(line:))
        #expect(events.map(\.index) == Array(0..<3000))
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.time <= $1.time })
        #expect(recorder.lineCount == 3000)
    }

    @Test func recorderFromManyTasksKeepsIndexAndTimeOrder() async throws {
        let sink = MemorySink()
        let recorder = HistoryRecorder(sink: sink)
        await withTaskGroup(of: Void.self) { group in
            for p in 0..<8 {
                group.addTask {
                    for i in 0..<200 {
                        recorder.record(.invoke, process: p, ops: [.read(key: "0/k\(i)", list: nil)])
                        recorder.record(.ok, process: p, ops: [.read(key: "0/k\(i)", list: [])])
                    }
                }
            }
        }
        try recorder.close()
        let events = try sink.lines.map(ParsedEvent.init(line:))
        #expect(events.count == 3200)
        #expect(events.map(\.index) == Array(0..<3200))
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.time <= $1.time })
        let checker = try MiniChecker(lines: sink.lines)
        #expect(checker.problems.isEmpty, "\(checker.problems.prefix(5))")
    }

    @Test func failingSinkIsReportedOnClose() {
        struct Broken: HistorySink {
            struct Full: Error {}
            func write(_ bytes: [UInt8]) throws { throw Full() }
            func close() throws {}
        }
        let recorder = HistoryRecorder(sink: Broken())
        recorder.record(.invoke, process: 0, ops: [.read(key: "0/k0", list: nil)])
        #expect(throws: LoadGenError.self) { try recorder.close() }
    }

    @Test func miniCheckerHasTeeth() throws {
        // An ok append missing from the final read, and a failed append that was read.
        let lines = [
            HistoryEvent(index: 0, time: 1, type: .invoke, process: 0, ops: [.append(key: "0/k0", value: 8)]),
            HistoryEvent(index: 1, time: 2, type: .ok, process: 0, ops: [.append(key: "0/k0", value: 8)]),
            HistoryEvent(index: 2, time: 3, type: .invoke, process: 0, ops: [.append(key: "0/k0", value: 16)]),
            HistoryEvent(index: 3, time: 4, type: .fail, process: 0, ops: [.append(key: "0/k0", value: 16)]),
            HistoryEvent(index: 4, time: 5, type: .invoke, process: 1, ops: [.read(key: "0/k0", list: nil)]),
            HistoryEvent(index: 5, time: 6, type: .ok, process: 1, ops: [.read(key: "0/k0", list: [.int(16)])]),
        ].map(\.jsonLine)
        let checker = try MiniChecker(lines: lines)
        #expect(checker.problems.contains { $0.contains("lost") })
        #expect(checker.problems.contains { $0.contains("failed append") })
    }
}
