/// The type of a history line (Jepsen's `:type`).
public enum HistoryEventType: String, Hashable, Sendable {
    case invoke, ok, fail, info

    public init(_ outcome: TxnOutcome) {
        switch outcome {
        case .ok: self = .ok
        case .fail: self = .fail
        case .info: self = .info
        }
    }
}

/// A micro-op as a history line carries it: reads are `null` on invocations (and on
/// failed or unknown completions) and the whole observed list on `ok` completions.
public enum HistoryOp: Hashable, Sendable {
    case append(key: String, value: Int)
    case read(key: String, list: [ReadElement]?)
}

/// One line of a list-append history, in the format `tools/checker/README.md` defines:
/// `{"index":..,"time":..,"type":..,"process":..,"f":"txn","value":[..]}`.
public struct HistoryEvent: Hashable, Sendable {
    public var index: Int
    /// Monotonic nanoseconds since the run started (informational; line order is what
    /// the checker uses).
    public var time: UInt64
    public var type: HistoryEventType
    public var process: Int
    public var ops: [HistoryOp]

    public init(index: Int, time: UInt64, type: HistoryEventType, process: Int, ops: [HistoryOp]) {
        self.index = index
        self.time = time
        self.type = type
        self.process = process
        self.ops = ops
    }

    /// The JSON object, on one line, without the newline.
    public var jsonLine: String {
        var out =
            "{\"index\":\(index),\"time\":\(time),\"type\":\"\(type.rawValue)\",\"process\":\(process),\"f\":\"txn\",\"value\":["
        for (i, op) in ops.enumerated() {
            if i > 0 { out += "," }
            switch op {
            case .append(let key, let value):
                out += "[\"append\",\(Self.quoted(key)),\(value)]"
            case .read(let key, let list):
                out += "[\"r\",\(Self.quoted(key)),"
                if let list {
                    out += "["
                    for (j, element) in list.enumerated() {
                        if j > 0 { out += "," }
                        switch element {
                        case .int(let n): out += String(n)
                        case .text(let s): out += Self.quoted(s)
                        }
                    }
                    out += "]"
                } else {
                    out += "null"
                }
                out += "]"
            }
        }
        out += "]}"
        return out
    }

    /// A JSON string literal for `text`.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension MicroOp {
    /// The op as an invocation (or a failed or unknown completion) records it.
    public var invocation: HistoryOp {
        switch self {
        case .read(let k): .read(key: k.historyName, list: nil)
        case .append(let k, let v): .append(key: k.historyName, value: v)
        }
    }
}
