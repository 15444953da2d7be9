import Foundation

/// The `zstd` and `lz4` command-line tools' own benchmark mode (`-b`), run on the same
/// bytes as ours, as an outside reference for what the libraries can do on this machine.
struct CLICompressionPeer {
    /// One line of a tool's quiet benchmark output.
    struct Figure: Codable {
        /// Our codec name for the same setting (`lz4`, `zstd-1`, ...).
        var codec: String
        var tool: String
        var level: Int
        var compressedBytes: Int
        var ratio: Double
        /// Megabytes (1e6 bytes, as both tools count them) of input per second.
        var compressMBPerSecond: Double
        var decompressMBPerSecond: Double
    }

    var seconds: Int

    /// Writes `payload` to a scratch file and benchmarks it with every tool found. A
    /// tool that is missing or fails is reported in `notes` and skipped.
    func run(payload: [UInt8]) throws(BenchError) -> (figures: [Figure], notes: [String]) {
        let dir = try System.makeScratchDirectory(under: NSTemporaryDirectory(), prefix: "persist-bench-cli-")
        let token = cleanup.register("remove \(dir)") { System.removeTree(dir) }
        defer { cleanup.run(token) }
        let file = "\(dir)/payload.bin"
        guard FileManager.default.createFile(atPath: file, contents: Data(payload)) else {
            throw BenchError("cannot write \(file)")
        }

        var figures: [Figure] = []
        var notes: [String] = []
        let iterations = "-i\(max(1, seconds))"
        let runs: [(tool: String, args: [String], levels: Set<Int>, codec: (Int) -> String)] = [
            ("zstd", ["-q", "-b1", "-e3", iterations, file], [1, 3], { "zstd-\($0)" }),
            ("lz4", ["-q", "-b1", iterations, file], [1], { _ in "lz4" }),
        ]
        for run in runs {
            guard let path = Subprocess.findInPath(run.tool) else {
                notes.append("\(run.tool) is not installed; skipped (Debian package \(run.tool))")
                continue
            }
            let result = try Subprocess.run(path, run.args)
            guard result.succeeded else {
                notes.append("\(run.tool) -b failed with status \(result.status); skipped")
                continue
            }
            let parsed = Self.parse(result.output, tool: run.tool)
                .filter { run.levels.contains($0.level) }
                .map { figure -> Figure in
                    var f = figure
                    f.codec = run.codec(figure.level)
                    return f
                }
            if parsed.isEmpty { notes.append("could not read \(run.tool)'s benchmark output") }
            figures += parsed
        }
        return (figures, notes)
    }

    /// Reads lines like `-1   4072597 (1.327) 549.68 MB/s 1377.5 MB/s  file`: level,
    /// compressed size, ratio, compression and decompression speed.
    static func parse(_ output: String, tool: String) -> [Figure] {
        var figures: [Figure] = []
        for line in output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 7, fields[0].hasPrefix("-"), let level = Int(fields[0].dropFirst()),
                let size = Int(fields[1]), fields[2].hasPrefix("("), fields[2].hasSuffix(")"),
                let ratio = Double(fields[2].dropFirst().dropLast()), let comp = Double(fields[3]),
                fields[4] == "MB/s", let decomp = Double(fields[5]), fields[6] == "MB/s"
            else { continue }
            figures.append(
                Figure(
                    codec: "", tool: tool, level: level, compressedBytes: size, ratio: ratio,
                    compressMBPerSecond: comp, decompressMBPerSecond: decomp))
        }
        return figures
    }
}
