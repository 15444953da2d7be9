import Foundation
import Histogram

/// A plain-text table: a left-aligned first column, right-aligned figures after it.
struct Table {
    var title: String
    var headers: [String]
    var rows: [[String]] = []
    var notes: [String] = []
    /// How many leading columns are labels (left-aligned); the rest are right-aligned.
    var labelColumns: Int

    init(_ title: String, headers: [String], labelColumns: Int = 1) {
        self.title = title
        self.headers = headers
        self.labelColumns = labelColumns
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, widths[min(i, widths.count - 1)] - cell.count))
                return i < labelColumns ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        var out = [title, line(headers)]
        out.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
        out += rows.map(line)
        out += notes.map { "  \($0)" }
        return out.joined(separator: "\n")
    }

    func print() { Swift.print(render() + "\n") }
}

/// Number formatting shared by every table.
enum Format {
    static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        return String(format: "%.\(decimals)f", value)
    }

    /// An integer-valued figure with thousands separators: `1234567` -> `1,234,567`.
    static func count<T: BinaryInteger>(_ value: T) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { grouped.append(",") }
            grouped.append(ch)
        }
        return value < 0 ? "-" + grouped : grouped
    }

    static func rate(_ perSecond: Double) -> String {
        guard perSecond.isFinite else { return "-" }
        return count(Int64(perSecond.rounded()))
    }

    /// A latency in milliseconds from microseconds: two decimals below 10 ms, one above.
    static func millis(_ micros: Double) -> String {
        let ms = micros / 1000
        return fixed(ms, ms < 10 ? 2 : 1)
    }

    /// `12.3x`, or `-` when either side is missing or zero.
    static func ratio(_ numerator: Double?, _ denominator: Double?) -> String {
        guard let n = numerator, let d = denominator, d > 0, n.isFinite else { return "-" }
        return fixed(n / d, 2) + "x"
    }
}

/// Latency percentiles in microseconds, from an HdrHistogram of nanoseconds.
struct LatencySummary: Codable, Sendable {
    var count: UInt64
    var p50: Double
    var p90: Double
    var p99: Double
    var max: Double

    init(_ nanoseconds: Histogram<UInt64>) {
        count = nanoseconds.totalCount
        p50 = Double(nanoseconds.valueAtPercentile(50)) / 1000
        p90 = Double(nanoseconds.valueAtPercentile(90)) / 1000
        p99 = Double(nanoseconds.valueAtPercentile(99)) / 1000
        max = Double(nanoseconds.max) / 1000
    }

    /// Exact nearest-rank percentiles of raw samples in nanoseconds (all zero when there
    /// are none): the value at rank ceil(p% of n) in ascending order.
    init(exactNanoseconds samples: [UInt64]) {
        let sorted = samples.sorted()
        func rank(_ percent: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = Int((percent / 100 * Double(sorted.count)).rounded(.up)) - 1
            return Double(sorted[Swift.min(Swift.max(index, 0), sorted.count - 1)]) / 1000
        }
        count = UInt64(sorted.count)
        p50 = rank(50)
        p90 = rank(90)
        p99 = rank(99)
        max = rank(100)
    }

    /// The histogram every latency goes into: nanoseconds, up to one hour, 3 digits.
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
    }

    /// A microsecond figure: one decimal below 100 µs, whole microseconds above.
    static func format(_ micros: Double) -> String {
        micros < 100 ? Format.fixed(micros, 1) : Format.count(Int64(micros.rounded()))
    }
}

extension Histogram<UInt64> {
    /// Records `nanoseconds`, clamped to the trackable range so no sample is dropped.
    mutating func recordClamped(_ nanoseconds: UInt64) {
        record(Swift.min(nanoseconds, highestTrackableValue))
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }

    var nanoseconds: UInt64 {
        let c = components
        guard c.seconds >= 0 else { return 0 }
        return UInt64(c.seconds) * 1_000_000_000 + UInt64(c.attoseconds / 1_000_000_000)
    }
}

/// The machine the figures come from, printed at the top of every run.
enum MachineInfo {
    static func lines() -> [String] {
        var out: [String] = []
        let kernel = Subprocess.findInPath("uname").flatMap { try? Subprocess.run($0, ["-r"]).output }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "unknown"
        out.append("kernel: \(kernel)")
        out.append("cpus: \(ProcessInfo.processInfo.activeProcessorCount) online")
        out.append("cpu model: \(cpuModel() ?? "unknown")")
        #if DEBUG
        out.append("build: debug (figures are not representative; build with -c release)")
        #else
        out.append("build: release")
        #endif
        out.append(
            "reminder: run ../shared/tools/fsync-probe before and after this benchmark and keep its lines "
                + "with these figures (the disk switches between a fast and a slow flush mode)")
        return out
    }

    static func printHeader(_ what: String) {
        Swift.print("persist-bench \(what)")
        for line in lines() { Swift.print("  \(line)") }
        Swift.print("")
    }

    private static func cpuModel() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }
}

/// Prints `value` as one line of JSON prefixed with `json: `, for scripts to pick out.
func printJSONLine<T: Encodable>(_ value: T) throws(BenchError) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    do {
        let data = try encoder.encode(value)
        print("json: " + String(decoding: data, as: UTF8.self))
    } catch {
        throw BenchError("cannot encode the JSON summary: \(error)")
    }
}
