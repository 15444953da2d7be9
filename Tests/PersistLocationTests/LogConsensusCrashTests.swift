import Dispatch
import Foundation
import PersistCodec
import PersistConformance
import PersistCore
import PersistLocation
import Synchronization
import Testing

/// Crash tests with real processes: a helper (tools/log-crash-helper) runs CaS chains on
/// a LogConsensus directory and reports every attempt and acknowledgement; the test
/// SIGKILLs it at seeded moments, reopens the log and checks what survived.
@Suite(.serialized) struct LogConsensusCrashTests {
    static let keys = 8
    static let rounds = 30

    /// What the helper said before it died.
    struct Transcript {
        /// CRC of the data of each attempted (key, seqno).
        var attempts: [String: [UInt64: UInt32]] = [:]
        var acked: [String: UInt64] = [:]
        var truncatedBelow: [String: UInt64] = [:]
        var ackCount = 0
        var errors: [String] = []

        mutating func absorb(_ line: Substring) {
            let parts = line.split(separator: " ")
            switch parts.first {
            case "attempt" where parts.count == 4:
                if let s = UInt64(parts[2]), let crc = UInt32(parts[3]) { attempts[String(parts[1]), default: [:]][s] = crc }
            case "ack" where parts.count == 3:
                if let s = UInt64(parts[2]) {
                    acked[String(parts[1])] = max(acked[String(parts[1])] ?? 0, s)
                    ackCount += 1
                }
            case "truncated" where parts.count == 3:
                if let s = UInt64(parts[2]) { truncatedBelow[String(parts[1])] = s }
            case "error":
                errors.append(String(line))
            default:
                break
            }
        }
    }

    static func helperPath() throws -> String {
        let exe = try #require(try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        let dir = (exe as NSString).deletingLastPathComponent
        let path = dir + "/LogCrashHelper"
        try #require(FileManager.default.isExecutableFile(atPath: path), "helper not built at \(path)")
        return path
    }

    /// Runs the helper until it has acknowledged `killAfterAcks` commits (counted over the
    /// output lines), then SIGKILLs it. Returns what it printed.
    static func runAndKill(dir: String, seed: UInt64, killAfterAcks: Int, segmentBytes: Int) throws -> Transcript {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try helperPath())
        process.arguments = [dir, "\(keys)", "\(seed)", "\(segmentBytes)"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let reader = pipe.fileHandleForReading
        var transcript = Transcript()
        var buffer: [UInt8] = []
        var killed = false
        while true {
            let chunk = reader.availableData
            if chunk.isEmpty { break }  // EOF: the process is gone
            buffer += chunk
            while let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                transcript.absorb(Substring(String(decoding: buffer[..<nl], as: UTF8.self)))
                buffer.removeSubrange(...nl)
            }
            if !killed && (transcript.ackCount >= killAfterAcks || !transcript.errors.isEmpty) {
                kill(process.processIdentifier, SIGKILL)
                killed = true
            }
        }
        process.waitUntilExit()
        // A trailing partial line cannot happen (one write per line) but would be ignored.
        return transcript
    }

    @Test func acknowledgedWritesSurviveKill9() async throws {
        let dir = TemporaryDirectory("crash")
        defer { dir.remove() }
        var rng = SeededGenerator(seed: 0xC0FFEE)
        print("crash test seed 0xC0FFEE, \(Self.rounds) rounds")
        // What must hold across rounds: everything acknowledged so far, per key.
        var acked: [String: UInt64] = [:]
        var crcs: [String: [UInt64: UInt32]] = [:]
        var totalAcks = 0
        for round in 0..<Self.rounds {
            let killAfter = Int.random(in: 1...400, using: &rng)
            // The helper's output is read with blocking calls: on a thread of its own, so
            // the cooperative pool other tests need is never held.
            let t = try await SpawnedServer.offThread {
                try Self.runAndKill(dir: dir.path, seed: UInt64(round), killAfterAcks: killAfter, segmentBytes: 16 << 10)
            }
            #expect(t.errors.isEmpty, "helper reported \(t.errors)")
            totalAcks += t.ackCount
            for (k, s) in t.acked { acked[k] = max(acked[k] ?? 0, s) }
            for (k, m) in t.attempts { crcs[k, default: [:]].merge(m) { _, new in new } }

            let log = try LogConsensus.open(directory: dir.path)
            for i in 0..<Self.keys {
                let key = "key-\(i)"
                let versions = try await log.scanAll(key)
                let lastAcked = acked[key] ?? 0
                guard let head = versions.last?.seqno.rawValue else {
                    #expect(lastAcked == 0, "round \(round): \(key) lost everything (acked up to \(lastAcked))")
                    continue
                }
                // Every acknowledged version is still there (nothing was truncated that
                // the helper did not truncate), and at most one unacknowledged attempt.
                #expect(head >= lastAcked, "round \(round): \(key) head v\(head) behind acknowledged v\(lastAcked)")
                #expect(head <= lastAcked + 1, "round \(round): \(key) head v\(head) beyond the one in-flight attempt")
                if head == lastAcked + 1 {
                    acked[key] = head  // it survived; the helper will build on it next round
                }
                let first = versions[0].seqno.rawValue
                #expect(versions.map(\.seqno.rawValue) == Array(first...head), "round \(round): \(key) has gaps")
                // The helper truncates only below (an acknowledged seqno - 3).
                #expect(
                    first <= max(1, lastAcked > 3 ? lastAcked - 3 : 1),
                    "round \(round): \(key) lost acknowledged versions below v\(first)")
                for v in versions {
                    let expectedCRC = crcs[key]?[v.seqno.rawValue]
                    #expect(expectedCRC == CRC32C.checksum(v.data), "round \(round): \(key) v\(v.seqno.rawValue) is not what was written")
                }
            }
            await log.close()
        }
        print("crash test: \(Self.rounds) kills, \(totalAcks) acknowledged commits checked")
        #expect(totalAcks >= Self.rounds, "the helper made progress")
    }
}
