/// What a GET should serve, given its `Range` header and the object's size.
public enum ByteRangeResolution: Hashable, Sendable {
    /// Serve the whole object with 200: there was no `Range` header, or one the server
    /// ignores (not `bytes`, malformed, or several ranges, which S3 does not serve).
    case whole
    /// Serve these bytes (inclusive bounds, within the object) with 206 and
    /// `Content-Range: bytes first-last/size`.
    case partial(ClosedRange<Int>)
    /// Answer 416 with `Content-Range: bytes */size`: the single range asked for starts
    /// at or beyond the end of the object (or asks for the last zero bytes).
    case unsatisfiable
}

/// Single byte ranges per RFC 9110 §14: parsing `Range: bytes=a-b`, `bytes=a-` and
/// `bytes=-n` against an object size, and formatting `Content-Range`. Pure.
public enum HTTPByteRange {
    /// Resolves a `Range` header value (nil when absent) against an object of `size` bytes.
    ///
    /// A last position past the end is clamped to the end; a suffix longer than the object
    /// selects all of it. A first position after the last position is malformed and the
    /// header ignored, as RFC 9110 requires.
    public static func resolve(_ header: String?, size: Int) -> ByteRangeResolution {
        guard let header, size >= 0 else { return .whole }
        guard let eq = header.firstIndex(of: "=") else { return .whole }
        guard header[..<eq].lowercased() == "bytes" else { return .whole }
        let specs = header[header.index(after: eq)...].split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingSpaces() }
            .filter { !$0.isEmpty }
        guard specs.count == 1, let spec = specs.first, let dash = spec.firstIndex(of: "-") else { return .whole }
        let firstText = spec[..<dash]
        let lastText = spec[spec.index(after: dash)...]
        if firstText.isEmpty {
            // bytes=-n: the last n bytes.
            guard let suffix = decimal(lastText) else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .partial(max(0, size - suffix)...(size - 1))
        }
        guard let first = decimal(firstText) else { return .whole }
        var last = Int.max
        if !lastText.isEmpty {
            guard let l = decimal(lastText) else { return .whole }
            guard l >= first else { return .whole }
            last = l
        }
        guard first < size else { return .unsatisfiable }
        return .partial(first...min(last, size - 1))
    }

    /// `bytes first-last/size`, the `Content-Range` of a 206.
    public static func contentRange(_ range: ClosedRange<Int>, size: Int) -> String {
        "bytes \(range.lowerBound)-\(range.upperBound)/\(size)"
    }

    /// `bytes */size`, the `Content-Range` of a 416.
    public static func unsatisfiedContentRange(size: Int) -> String { "bytes */\(size)" }

    /// A non-empty run of ASCII digits, saturating at `Int.max` (a position that large is
    /// past the end of any object, which is what it means).
    static func decimal(_ text: Substring) -> Int? {
        guard !text.isEmpty else { return nil }
        var value = 0
        for b in text.utf8 {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (plus, o2) = times.addingReportingOverflow(Int(b - UInt8(ascii: "0")))
            value = o1 || o2 ? Int.max : plus
        }
        return value
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
