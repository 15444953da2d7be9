import Foundation
import Testing

/// A parsed history line.
struct ParsedEvent {
    var index: Int
    var time: UInt64
    var type: String
    var process: Int
    /// `[f, key, value]` per micro-op; value is an Int (append), nil or [Any] (read).
    var ops: [(f: String, key: String, value: Any?)]

    init(line: String) throws {
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
        guard let dict = object as? [String: Any] else { throw HistoryProblem("not an object: \(line)") }
        guard let index = dict["index"] as? Int, let time = dict["time"] as? Int, let type = dict["type"] as? String,
            let process = dict["process"] as? Int, dict["f"] as? String == "txn", let value = dict["value"] as? [Any]
        else { throw HistoryProblem("missing or mistyped fields: \(line)") }
        self.index = index
        self.time = UInt64(time)
        self.type = type
        self.process = process
        ops = try value.map { raw in
            guard let op = raw as? [Any], op.count == 3, let f = op[0] as? String, let key = op[1] as? String else {
                throw HistoryProblem("bad micro-op in \(line)")
            }
            return (f: f, key: key, value: op[2] is NSNull ? nil : op[2])
        }
    }

    func readList(_ i: Int) -> [Int]? { (ops[i].value as? [Any])?.compactMap { $0 as? Int } }
}

struct HistoryProblem: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A few of the checker's rules, enough to catch a broken generator or model in tests:
/// well-formed pairing, every ok read a prefix of the final read of its key, every ok
/// append in the final read, no failed append ever read, and final reads of every key
/// appended to.
struct MiniChecker {
    var events: [ParsedEvent] = []
    var problems: [String] = []

    init(lines: [String]) throws {
        events = try lines.map(ParsedEvent.init(line:))
        check()
    }

    mutating func check() {
        var open: [Int: ParsedEvent] = [:]  // process -> invocation
        var finished: Set<Int> = []  // processes that ended with info
        var okAppends: [String: Set<Int>] = [:]
        var failedAppends: [String: Set<Int>] = [:]
        var allAppends: [String: Set<Int>] = [:]
        var reads: [(key: String, list: [Int], index: Int)] = []
        for (lineNumber, e) in events.enumerated() {
            if e.index != lineNumber { problems.append("index \(e.index) on line \(lineNumber)") }
            if lineNumber > 0, e.time < events[lineNumber - 1].time { problems.append("time goes back at \(e.index)") }
            if e.type == "invoke" {
                if open[e.process] != nil { problems.append("process \(e.process) invoked twice at \(e.index)") }
                if finished.contains(e.process) {
                    problems.append("process \(e.process) reused after info at \(e.index)")
                }
                for op in e.ops where op.f == "r" && op.value != nil {
                    problems.append("filled read in invocation \(e.index)")
                }
                for op in e.ops where op.f == "append" {
                    guard let v = op.value as? Int else { continue }
                    if allAppends[op.key, default: []].contains(v) {
                        problems.append("value \(v) appended twice to \(op.key)")
                    }
                    allAppends[op.key, default: []].insert(v)
                }
                open[e.process] = e
                continue
            }
            guard let inv = open.removeValue(forKey: e.process) else {
                problems.append("completion without invocation at \(e.index)")
                continue
            }
            if e.type == "info" { finished.insert(e.process) }
            guard e.ops.count == inv.ops.count else {
                problems.append("completion \(e.index) has other ops than its invocation")
                continue
            }
            for (i, op) in e.ops.enumerated() {
                if op.f != inv.ops[i].f || op.key != inv.ops[i].key { problems.append("op \(i) differs at \(e.index)") }
                if op.f == "append", let v = op.value as? Int {
                    if e.type == "ok" { okAppends[op.key, default: []].insert(v) }
                    if e.type == "fail" { failedAppends[op.key, default: []].insert(v) }
                }
                if op.f == "r", e.type == "ok" {
                    guard let list = e.readList(i) else {
                        problems.append("ok read without a list at \(e.index)")
                        continue
                    }
                    reads.append((op.key, list, e.index))
                }
            }
        }
        // The final read of a key: its last ok read.
        var finalRead: [String: [Int]] = [:]
        for r in reads { finalRead[r.key] = r.list }
        for key in allAppends.keys where finalRead[key] == nil { problems.append("no read of \(key)") }
        for r in reads {
            let final = finalRead[r.key] ?? []
            if Array(final.prefix(r.list.count)) != r.list {
                problems.append("read of \(r.key) at \(r.index) \(r.list) is no prefix of the final \(final)")
            }
            if Set(r.list).count != r.list.count { problems.append("duplicates in read of \(r.key) at \(r.index)") }
            for v in r.list where failedAppends[r.key]?.contains(v) == true {
                problems.append("read of \(r.key) at \(r.index) shows failed append \(v)")
            }
            for v in r.list where allAppends[r.key]?.contains(v) != true {
                problems.append("read of \(r.key) at \(r.index) shows \(v), which nobody appended")
            }
        }
        for (key, values) in okAppends {
            let final = Set(finalRead[key] ?? [])
            for v in values where !final.contains(v) { problems.append("ok append \(v) to \(key) lost") }
        }
    }
}
