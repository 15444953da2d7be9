// log-crash-helper: drives a LogConsensus directory with compare-and-set chains until it
// is killed, reporting progress on stdout so a crash test can check recovery.
//
// Usage: LogCrashHelper DIR KEYS SEED [SEGMENT_BYTES]
//
// One task per key `key-<i>` extends that key's chain from its recovered head. Before
// each CaS it prints `attempt <key> <seqno> <crc32c of data>`; after a commit it prints
// `ack <key> <seqno>`; after every 16th commit it truncates to keep the last 4 versions
// and prints `truncated <key> <below>` once that is durable. Lines are written with one
// write(2) each, so a SIGKILL never leaves a half line behind a complete one.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PersistCodec
import PersistCore
import PersistLocation

func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    bytes.withUnsafeBytes { buf in
        var done = 0
        while done < buf.count, let base = buf.baseAddress {
            let n = write(1, base + done, buf.count - done)
            if n <= 0 { exit(3) }
            done += n
        }
    }
}

func fail(_ message: String) -> Never {
    say("error \(message)")
    exit(2)
}

let args = CommandLine.arguments
guard args.count >= 4, let keys = Int(args[2]), let seed = UInt64(args[3]) else {
    fail("usage: LogCrashHelper DIR KEYS SEED [SEGMENT_BYTES]")
}
var options = LogConsensusOptions()
if args.count >= 5, let segment = Int(args[4]) { options.segmentSizeBytes = segment }

let log: LogConsensus
do {
    log = try LogConsensus.open(directory: args[1], options: options)
} catch {
    fail("open: \(error)")
}
say("ready \(log.stats().recoveredTornBytes)")

await withTaskGroup(of: Void.self) { group in
    for i in 0..<keys {
        group.addTask {
            let key = "key-\(i)"
            var rng = SeededGenerator(seed: seed &+ UInt64(i) &* 7919)
            do {
                var head = try await log.head(key)?.seqno
                var commits = 0
                while true {
                    let next = (head?.rawValue ?? 0) + 1
                    guard let seqno = SeqNo(next) else { fail("seqno overflow") }
                    let length = Int.random(in: 1...600, using: &rng)
                    let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    say("attempt \(key) \(next) \(CRC32C.checksum(data))")
                    switch try await log.compareAndSet(key, expected: head, new: VersionedData(seqno: seqno, data: data)) {
                    case .committed:
                        say("ack \(key) \(next)")
                        head = seqno
                        commits += 1
                        if commits % 16 == 0, let below = SeqNo(next - 3) {
                            _ = try await log.truncate(key, seqno: below)
                            say("truncated \(key) \(below.rawValue)")
                        }
                    case .expectationMismatch(let current):
                        fail("unexpected mismatch on \(key): expected \(String(describing: head)), head \(String(describing: current?.seqno))")
                    }
                }
            } catch {
                fail("\(key): \(error)")
            }
        }
    }
}
