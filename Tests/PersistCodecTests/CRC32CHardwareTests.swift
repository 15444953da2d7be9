import Foundation
import PersistCore
import Testing

@testable import PersistCodec

/// The CPU-instruction path against the table path, which `CRC32CTests` checks against
/// the bitwise definition. The C code has separate stages (single bytes up to an 8-byte
/// boundary, three interleaved chains over 3 x 8 KiB and 3 x 1 KiB blocks, one chain of
/// 8-byte words, single trailing bytes), so lengths and start offsets are chosen to enter
/// and leave each of them.
@Suite struct CRC32CHardwareTests {
    /// Block sizes of the interleaved loops in ccrc32c.c: each is tested at, just below and
    /// just above its threshold, and with a few blocks' worth plus ragged ends.
    static let largeLengths: [Int] = {
        var lengths: [Int] = []
        for triple in [3 * 1024, 3 * 8192] {
            for multiple in 1...3 {
                for delta in [-9, -8, -1, 0, 1, 7, 8, 13] { lengths.append(triple * multiple + delta) }
            }
        }
        // Both interleaved loops, then words, then bytes; and one buffer of a few MiB.
        lengths += [3 * 8192 + 2 * 3 * 1024 + 8 * 5 + 3, 100_003, 1 << 20, (3 << 20) + 5]
        return lengths
    }()

    /// A test that would pass vacuously if detection wrongly said "no": the answer must
    /// match what the kernel reports about this CPU.
    @Test func detectionMatchesTheKernelsCPUFlags() async throws {
        #if os(Linux) && (arch(x86_64) || arch(arm64))
        let cpuinfo = try await Self.offThread { try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) }
        let flagLine = cpuinfo.split(separator: "\n").first {
            $0.hasPrefix("flags") || $0.hasPrefix("Features")
        }
        let flags = Set((flagLine ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }).map(String.init))
        #if arch(x86_64)
        #expect(CRC32C.isHardwareAccelerated == flags.contains("sse4_2"), "flags: \(flags.sorted())")
        #else
        #expect(CRC32C.isHardwareAccelerated == flags.contains("crc32"), "features: \(flags.sorted())")
        #endif
        #else
        // No instruction path is compiled for other targets.
        #expect(!CRC32C.isHardwareAccelerated)
        #endif
    }

    @Test(.enabled(if: CRC32C.isHardwareAccelerated, "this CPU has no CRC32C instruction"))
    func knownVectors() {
        func hardware(_ bytes: [UInt8]) -> UInt32 {
            bytes.withUnsafeBytes { ~CRC32C.updateWithHardware(CRC32C.start, $0) }
        }
        #expect(hardware(Array("123456789".utf8)) == 0xE306_9283)
        #expect(hardware([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(hardware([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(hardware((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(hardware([]) == 0)
        // The public entry point takes the hardware path on this machine.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test(.enabled(if: CRC32C.isHardwareAccelerated, "this CPU has no CRC32C instruction"))
    func emptyBufferLeavesTheStateAlone() {
        for state: UInt32 in [0, 1, 0xFFFF_FFFF, 0x1234_5678] {
            #expect(CRC32C.updateWithHardware(state, UnsafeRawBufferPointer(start: nil, count: 0)) == state)
        }
    }

    @Test(.enabled(if: CRC32C.isHardwareAccelerated, "this CPU has no CRC32C instruction"))
    func agreesWithTablesAtEveryShortLengthAndOffset() {
        var g = SeededGenerator(seed: 300)
        let bytes = Fixtures.randomBytes(300 + 8, using: &g)
        bytes.withUnsafeBytes { raw in
            for offset in 0..<8 {
                for length in 0..<300 {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + length])
                    // Any running state, not only the initial one.
                    let state = length % 3 == 0 ? CRC32C.start : UInt32.random(in: .min ... .max, using: &g)
                    let hardware = CRC32C.updateWithHardware(state, slice)
                    let tables = CRC32C.updateWithTables(state, slice)
                    #expect(hardware == tables, "offset \(offset) length \(length) state \(state)")
                }
            }
        }
    }

    @Test(.enabled(if: CRC32C.isHardwareAccelerated, "this CPU has no CRC32C instruction"))
    func agreesWithTablesOnLargeBuffersAtEveryOffset() {
        var g = SeededGenerator(seed: 301)
        let longest = Self.largeLengths.max() ?? 0
        let bytes = Fixtures.randomBytes(longest + 8, using: &g)
        bytes.withUnsafeBytes { raw in
            for length in Self.largeLengths {
                for offset in 0..<8 {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + length])
                    let state = UInt32.random(in: .min ... .max, using: &g)
                    #expect(
                        CRC32C.updateWithHardware(state, slice) == CRC32C.updateWithTables(state, slice),
                        "offset \(offset) length \(length)")
                }
            }
        }
    }

    @Test(.enabled(if: CRC32C.isHardwareAccelerated, "this CPU has no CRC32C instruction"))
    func chainedUpdatesAgreeWithOneShotTables() {
        var g = SeededGenerator(seed: 302)
        // Every split point of a short buffer, starting at every offset.
        let short = Fixtures.randomBytes(140, using: &g)
        short.withUnsafeBytes { raw in
            for offset in 0..<8 {
                let whole = UnsafeRawBufferPointer(rebasing: raw[offset...])
                let expected = CRC32C.updateWithTables(CRC32C.start, whole)
                for split in 0...whole.count {
                    var state = CRC32C.updateWithHardware(CRC32C.start, UnsafeRawBufferPointer(rebasing: whole[..<split]))
                    state = CRC32C.updateWithHardware(state, UnsafeRawBufferPointer(rebasing: whole[split...]))
                    #expect(state == expected, "offset \(offset) split \(split)")
                }
            }
        }
        // A large buffer cut into random pieces, small and large, so pieces start at
        // every alignment and some of them reach the interleaved loops.
        let large = Fixtures.randomBytes(400_000, using: &g)
        large.withUnsafeBytes { raw in
            let expected = CRC32C.updateWithTables(CRC32C.start, raw)
            for round in 0..<20 {
                var state = CRC32C.start
                var p = 0
                while p < raw.count {
                    let limit = round.isMultiple(of: 2) ? 100 : 60_000
                    let n = min(Int.random(in: 0...limit, using: &g), raw.count - p)
                    state = CRC32C.updateWithHardware(state, UnsafeRawBufferPointer(rebasing: raw[p..<p + n]))
                    p += n
                }
                #expect(state == expected, "round \(round)")
            }
        }
    }

    /// Blocking file reads run on a thread of their own, never the cooperative pool.
    static func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.start()
        }
    }
}
