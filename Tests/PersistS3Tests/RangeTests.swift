import PersistCore
import Testing

@testable import PersistS3

@Suite struct RangeTests {
    @Test func singleRanges() {
        #expect(HTTPByteRange.resolve(nil, size: 10) == .whole)
        #expect(HTTPByteRange.resolve("bytes=0-9", size: 10) == .partial(0...9))
        #expect(HTTPByteRange.resolve("bytes=0-0", size: 10) == .partial(0...0))
        #expect(HTTPByteRange.resolve("bytes=2-5", size: 10) == .partial(2...5))
        #expect(HTTPByteRange.resolve("bytes=9-9", size: 10) == .partial(9...9))
        // A last position past the end is clamped.
        #expect(HTTPByteRange.resolve("bytes=5-100", size: 10) == .partial(5...9))
        #expect(HTTPByteRange.resolve("bytes=5-99999999999999999999999", size: 10) == .partial(5...9))
        // Open-ended.
        #expect(HTTPByteRange.resolve("bytes=3-", size: 10) == .partial(3...9))
        #expect(HTTPByteRange.resolve("bytes=0-", size: 1) == .partial(0...0))
        // Suffixes.
        #expect(HTTPByteRange.resolve("bytes=-3", size: 10) == .partial(7...9))
        #expect(HTTPByteRange.resolve("bytes=-10", size: 10) == .partial(0...9))
        #expect(HTTPByteRange.resolve("bytes=-1000", size: 10) == .partial(0...9))
        // Unit names are case-insensitive; whitespace around the range is allowed.
        #expect(HTTPByteRange.resolve("Bytes= 1-2 ", size: 10) == .partial(1...2))
    }

    @Test func unsatisfiableRanges() {
        #expect(HTTPByteRange.resolve("bytes=10-", size: 10) == .unsatisfiable)
        #expect(HTTPByteRange.resolve("bytes=10-20", size: 10) == .unsatisfiable)
        #expect(HTTPByteRange.resolve("bytes=99999999999999999999999-", size: 10) == .unsatisfiable)
        #expect(HTTPByteRange.resolve("bytes=-0", size: 10) == .unsatisfiable)
        // Nothing can be selected from an empty object.
        #expect(HTTPByteRange.resolve("bytes=0-", size: 0) == .unsatisfiable)
        #expect(HTTPByteRange.resolve("bytes=0-0", size: 0) == .unsatisfiable)
        #expect(HTTPByteRange.resolve("bytes=-5", size: 0) == .unsatisfiable)
    }

    @Test(arguments: [
        "", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=1-a", "bytes=5-2", "bytes=+1-2", "bytes=1--2", "bytes=1-2-3",
        "items=0-1", "bytes 0-1", "bytes=0x1-2", "bytes=1 -2", "bytes=,",
        // Several ranges: S3 serves the whole object.
        "bytes=0-1,3-4", "bytes=0-1, -2", "bytes=-1,-2",
    ])
    func ignoredHeadersServeTheWholeObject(_ header: String) {
        #expect(HTTPByteRange.resolve(header, size: 10) == .whole)
    }

    @Test func emptyListElementsAreTolerated() {
        // RFC 9110 list syntax allows empty elements; one real range remains.
        #expect(HTTPByteRange.resolve("bytes=1-2,", size: 10) == .partial(1...2))
        #expect(HTTPByteRange.resolve("bytes=, 1-2", size: 10) == .partial(1...2))
    }

    @Test func contentRangeFormatting() {
        #expect(HTTPByteRange.contentRange(0...9, size: 10) == "bytes 0-9/10")
        #expect(HTTPByteRange.contentRange(7...9, size: 10) == "bytes 7-9/10")
        #expect(HTTPByteRange.unsatisfiedContentRange(size: 10) == "bytes */10")
    }

    @Test func resolvedRangesAlwaysFitTheObject() {
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<5000 {
            let size = Int.random(in: 0...20, using: &rng)
            let a = Int.random(in: 0...25, using: &rng)
            let b = Int.random(in: 0...25, using: &rng)
            let header: String
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: header = "bytes=\(a)-\(b)"
            case 1: header = "bytes=\(a)-"
            default: header = "bytes=-\(a)"
            }
            switch HTTPByteRange.resolve(header, size: size) {
            case .partial(let range):
                #expect(range.lowerBound >= 0 && range.upperBound < size, "\(header) of \(size) gave \(range)")
            case .unsatisfiable:
                #expect(size == 0 || a >= size || header == "bytes=-0", "\(header) of \(size) is satisfiable")
            case .whole:
                #expect(header == "bytes=\(a)-\(b)" && a > b, "\(header) of \(size) was ignored")
            }
        }
    }
}
