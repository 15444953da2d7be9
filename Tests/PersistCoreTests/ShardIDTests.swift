import PersistCore
import Testing

@Suite struct ShardIDTests {
    static let sampleText = "s0f1e2d3c-4b5a-4968-8776-655443322110"
    static let sampleBytes: [UInt8] = [
        0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x49, 0x68,
        0x87, 0x76, 0x65, 0x54, 0x43, 0x32, 0x21, 0x10,
    ]

    @Test func parsesKnownTextToKnownBytes() throws {
        let id = try ShardID(parsing: Self.sampleText)
        #expect(id.bytes == Self.sampleBytes)
        #expect(id.description == Self.sampleText)
        #expect(try ShardID(bytes: Self.sampleBytes) == id)
    }

    @Test func textRoundTripsForRandomIDs() throws {
        var rng = SeededGenerator(seed: 1)
        for _ in 0..<500 {
            let id = ShardID(using: &rng)
            let text = id.description
            #expect(text.utf8.count == 37)
            #expect(text.first == "s")
            #expect(try ShardID(parsing: text) == id)
            #expect(ShardID(text) == id)
            // Parsing from a substring works the same as from a String.
            let padded = "<" + text + ">"
            let inner = padded.dropFirst().dropLast()
            #expect(try ShardID(parsing: inner) == id)
        }
    }

    @Test func randomIDsDifferAndCarryVersion4Bits() {
        var rng = SeededGenerator(seed: 2)
        var seen = Set<ShardID>()
        for _ in 0..<2000 {
            let id = ShardID(using: &rng)
            #expect(id.bytes.count == 16)
            #expect(id.bytes[6] & 0xF0 == 0x40, "version nibble must be 4")
            #expect(id.bytes[8] & 0xC0 == 0x80, "variant bits must be 10")
            let text = id.description
            let version = text.utf8[text.utf8.index(text.utf8.startIndex, offsetBy: 15)]
            #expect(version == UInt8(ascii: "4"))
            seen.insert(id)
        }
        #expect(seen.count == 2000)
        // The system generator also produces distinct, well-formed ids.
        let a = ShardID.random()
        let b = ShardID.random()
        #expect(a != b)
        #expect(a.bytes[6] & 0xF0 == 0x40)
    }

    @Test func sameSeedGivesSameIDs() {
        var r1 = SeededGenerator(seed: 77)
        var r2 = SeededGenerator(seed: 77)
        for _ in 0..<10 {
            #expect(ShardID(using: &r1) == ShardID(using: &r2))
        }
    }

    @Test func uppercaseIsAcceptedAndDescriptionIsLowercase() throws {
        let upper = "s" + Self.sampleText.dropFirst().uppercased()
        #expect(upper != Self.sampleText)
        let id = try ShardID(parsing: upper)
        #expect(id.bytes == Self.sampleBytes)
        #expect(id.description == Self.sampleText)
        #expect(id.description == id.description.lowercased())
        // Mixed case too.
        let mixed = "s0F1e2D3c-4B5a-4968-8776-655443322110"
        #expect(try ShardID(parsing: mixed).bytes == Self.sampleBytes)
    }

    @Test func missingPrefixIsRejected() {
        for text in [
            "", "0f1e2d3c-4b5a-4968-8776-655443322110", "S0f1e2d3c-4b5a-4968-8776-655443322110",
            "t0f1e2d3c-4b5a-4968-8776-655443322110", "u0f1e2d3c-4b5a-4968-8776-655443322110",
        ] {
            #expect(parseReason(text) == .missingPrefix, "\(text)")
        }
    }

    @Test func wrongLengthIsRejected() {
        let full = Self.sampleText
        #expect(parseReason("s") == .badUUID(.wrongLength(0)))
        #expect(parseReason(String(full.dropLast())) == .badUUID(.wrongLength(35)))
        #expect(parseReason(full + "0") == .badUUID(.wrongLength(37)))
        #expect(parseReason("s" + String(repeating: "a", count: 40)) == .badUUID(.wrongLength(40)))
        // 32 hex digits without dashes are not accepted either.
        #expect(parseReason("s0f1e2d3c4b5a49688776655443322110") == .badUUID(.wrongLength(32)))
    }

    @Test func dashInTheWrongPlaceIsRejected() {
        // Offsets are within the 36-character UUID (after the 's').
        for dash in [8, 13, 18, 23] {
            var chars = Array(Self.sampleText.utf8.dropFirst())
            // Move the dash one to the right: the original dash offset now holds a hex digit.
            chars.swapAt(dash, dash + 1)
            let text = "s" + String(decoding: chars, as: UTF8.self)
            #expect(parseReason(text) == .badUUID(.expectedDash(at: dash)), "\(text)")
            // Replacing the dash with a hex digit is also a dash error.
            var replaced = Array(Self.sampleText.utf8.dropFirst())
            replaced[dash] = UInt8(ascii: "a")
            let text2 = "s" + String(decoding: replaced, as: UTF8.self)
            #expect(parseReason(text2) == .badUUID(.expectedDash(at: dash)), "\(text2)")
        }
    }

    @Test func nonHexCharacterIsRejectedAtItsOffset() {
        let dashes: Set<Int> = [8, 13, 18, 23]
        for offset in 0..<36 where !dashes.contains(offset) {
            for bad in ["g", "G", "z", " ", "-", "/", ":", "@", "`"] {
                var chars = Array(Self.sampleText.utf8.dropFirst())
                chars[offset] = bad.utf8.first!
                let text = "s" + String(decoding: chars, as: UTF8.self)
                #expect(parseReason(text) == .badUUID(.notHex(at: offset)), "\(text)")
            }
        }
    }

    @Test func wrongByteCountIsRejected() {
        for n in [0, 1, 15, 17, 32] {
            #expect(throws: ShardIDParseError.self) { try ShardID(bytes: [UInt8](repeating: 1, count: n)) }
            do {
                _ = try ShardID(bytes: [UInt8](repeating: 1, count: n))
            } catch {
                #expect(error.reason == .wrongByteCount(n))
            }
        }
    }

    @Test func losslessInitReturnsNilOnBadText() {
        #expect(ShardID("nope") == nil)
        #expect(ShardID("") == nil)
        #expect(ShardID(Self.sampleText) != nil)
    }

    @Test func errorKeepsTextTruncatedAndDescribesProblem() {
        let long = "x" + String(repeating: "a", count: 200)
        do {
            _ = try ShardID(parsing: long)
            Issue.record("parsed garbage")
        } catch {
            #expect(error.text.count == 80)
            #expect(error.reason == .missingPrefix)
            #expect(error.description.contains("must start with 's'"))
        }
        do {
            _ = try ShardID(parsing: "s0f1e2d3c-4b5a-4968-8776-65544332211z")
            Issue.record("parsed garbage")
        } catch {
            #expect(error.description.contains("offset 35"))
        }
    }

    @Test func orderMatchesTextOrder() {
        // Key statistics on the txns shard compare shard id text, so the text order must be
        // the byte order.
        var rng = SeededGenerator(seed: 3)
        let ids = (0..<300).map { _ in ShardID(using: &rng) }
        for _ in 0..<2000 {
            let a = ids[Int.random(in: 0..<ids.count, using: &rng)]
            let b = ids[Int.random(in: 0..<ids.count, using: &rng)]
            let textLess = Array(a.description.utf8).lexicographicallyPrecedes(Array(b.description.utf8))
            #expect((a < b) == textLess)
            #expect((a < b) == a.bytes.lexicographicallyPrecedes(b.bytes))
        }
    }

    func parseReason(_ text: String) -> ShardIDParseError.Reason? {
        do {
            _ = try ShardID(parsing: text)
            return nil
        } catch {
            return error.reason
        }
    }
}
