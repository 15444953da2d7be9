import Foundation

/// An S3 error response body: `<Error><Code/><Message/><Key/><RequestId/></Error>`.
public struct S3ErrorDocument: Hashable, Sendable {
    /// The S3 error code (`NoSuchKey`, `SignatureDoesNotMatch`, ...).
    public var code: String
    /// A human-readable explanation.
    public var message: String
    /// The object key the error is about, if any.
    public var key: String?
    /// The server's identifier of the failed request, for its logs.
    public var requestID: String?

    /// An error document from its fields.
    public init(code: String, message: String, key: String? = nil, requestID: String? = nil) {
        self.code = code
        self.message = message
        self.key = key
        self.requestID = requestID
    }
}

/// One object of a listing.
public struct S3ListedObject: Hashable, Sendable {
    /// The full object key (decoded, whatever the listing's encoding).
    public var key: String
    /// The object's size in bytes.
    public var size: Int
    /// When the object was last written, to the millisecond, if the server said.
    public var lastModified: Date?
    /// The entity tag as S3 sends it, quotes included (`"d41d8cd9..."`).
    public var etag: String?

    /// A listed object from its fields.
    public init(key: String, size: Int, lastModified: Date? = nil, etag: String? = nil) {
        self.key = key
        self.size = size
        self.lastModified = lastModified
        self.etag = etag
    }
}

/// A ListObjectsV2 response, `<ListBucketResult>`.
///
/// Keys, `prefix`, `delimiter`, `startAfter` and the common prefixes are always the real
/// (decoded) strings here; whether they travel URL-encoded is decided by
/// `encodingTypeURL`, which mirrors the request's `encoding-type=url` (S3 encodes exactly
/// these). Continuation tokens are opaque and never encoded.
public struct S3ListBucketResult: Hashable, Sendable {
    /// The bucket's name.
    public var name: String
    /// The prefix every listed key starts with (empty for all).
    public var prefix: String
    /// How many keys and common prefixes this page holds.
    public var keyCount: Int
    /// The page size the listing used.
    public var maxKeys: Int
    /// Whether more keys follow; ask again with `nextContinuationToken`.
    public var isTruncated: Bool
    /// The token this page was asked for with, echoed.
    public var continuationToken: String?
    /// The token for the next page, when truncated.
    public var nextContinuationToken: String?
    /// The key the listing started after, echoed.
    public var startAfter: String?
    /// The delimiter the listing rolled keys up at, echoed (nil when none was asked for).
    public var delimiter: String?
    /// Whether keys, prefix and start-after are URL-encoded in the document
    /// (`<EncodingType>url</EncodingType>`).
    public var encodingTypeURL: Bool
    /// The objects of this page, in ascending byte order of their keys.
    public var contents: [S3ListedObject]
    /// The common prefixes of this page (`<CommonPrefixes><Prefix>`), in ascending byte
    /// order: for a listing with a delimiter, each distinct run of keys that continue
    /// past `prefix` and contain the delimiter, cut just after its first occurrence there.
    public var commonPrefixes: [String]

    /// A listing page; `keyCount` defaults to the number of `contents` and
    /// `commonPrefixes`.
    public init(
        name: String, prefix: String = "", keyCount: Int? = nil, maxKeys: Int = 1000, isTruncated: Bool = false,
        continuationToken: String? = nil, nextContinuationToken: String? = nil, startAfter: String? = nil,
        delimiter: String? = nil, encodingTypeURL: Bool = false, contents: [S3ListedObject] = [], commonPrefixes: [String] = []
    ) {
        self.name = name
        self.prefix = prefix
        self.keyCount = keyCount ?? contents.count + commonPrefixes.count
        self.maxKeys = maxKeys
        self.isTruncated = isTruncated
        self.continuationToken = continuationToken
        self.nextContinuationToken = nextContinuationToken
        self.startAfter = startAfter
        self.delimiter = delimiter
        self.encodingTypeURL = encodingTypeURL
        self.contents = contents
        self.commonPrefixes = commonPrefixes
    }
}

/// Why an S3 XML body could not be read.
public enum S3XMLError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Not well-formed XML (or a construct this reader refuses, such as a DTD), at a byte
    /// offset.
    case malformed(String, offset: Int)
    /// Well-formed, but the root element is not the expected document.
    case unexpectedRoot(expected: String, found: String)
    /// A required element is absent.
    case missingElement(String)
    /// An element's text is not a valid value for it.
    case invalidValue(element: String, value: String)

    /// A one-line explanation.
    public var description: String {
        switch self {
        case .malformed(let why, let offset): "malformed XML at byte \(offset): \(why)"
        case .unexpectedRoot(let expected, let found): "expected a <\(expected)> document, found <\(found)>"
        case .missingElement(let name): "missing element <\(name)>"
        case .invalidValue(let element, let value): "invalid value \(value.debugDescription) in <\(element)>"
        }
    }
}

/// Rendering and parsing of the XML bodies of the S3 subset: error responses and
/// ListObjectsV2 results.
///
/// Rendering escapes every character XML would misread, and writes characters XML 1.0
/// cannot carry at all (control characters) as numeric references, as S3 does; clients
/// that cannot read those ask for `encoding-type=url`. Parsing is a small strict reader
/// for exactly these documents (elements, attributes, text, entity and character
/// references, CDATA, comments; no DTDs): it never traps and reports typed errors.
public enum S3XML {
    /// The namespace S3 puts on its documents.
    public static let namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

    // MARK: Rendering

    /// `text` escaped for element content or a double-quoted attribute value.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // Controls (including tab, CR and LF, which parsers would normalise) and
                // the two non-characters XML excludes become character references.
                if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF {
                    out += "&#x" + String(scalar.value, radix: 16, uppercase: true) + ";"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// The URL encoding of `encoding-type=url`: every byte except unreserved characters
    /// and `/` as `%XX` (so spaces are `%20` and `+` is `%2B`, which decoders that treat
    /// `+` as a space read correctly too).
    public static func urlEncode(_ text: String) -> String { SigV4.uriEncode(text, encodeSlash: false) }

    /// Decodes `encoding-type=url` text: `%XX` escapes, and `+` as a space (S3 writes
    /// spaces that way). Nil if the result is not UTF-8.
    public static func urlDecode(_ text: String) -> String? {
        let bytes = SigV4.percentDecode(text.replacingOccurrences(of: "+", with: " "))
        return String(validating: bytes, as: UTF8.self)
    }

    /// An `<Error>` document.
    public static func render(_ error: S3ErrorDocument) -> [UInt8] {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
        xml += element("Code", error.code)
        xml += element("Message", error.message)
        if let key = error.key { xml += element("Key", key) }
        if let requestID = error.requestID { xml += element("RequestId", requestID) }
        xml += "</Error>"
        return Array(xml.utf8)
    }

    /// A `<ListBucketResult>` document (keys, prefixes, delimiter and start-after
    /// URL-encoded when `encodingTypeURL` is set), its elements in the order S3 writes
    /// them.
    public static func render(_ result: S3ListBucketResult) -> [UInt8] {
        let url = result.encodingTypeURL
        func encode(_ text: String) -> String { url ? urlEncode(text) : text }
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"\(namespace)\">"
        xml += element("Name", result.name)
        xml += element("Prefix", encode(result.prefix))
        xml += element("KeyCount", String(result.keyCount))
        xml += element("MaxKeys", String(result.maxKeys))
        if let delimiter = result.delimiter { xml += element("Delimiter", encode(delimiter)) }
        xml += element("IsTruncated", result.isTruncated ? "true" : "false")
        if result.encodingTypeURL { xml += element("EncodingType", "url") }
        if let token = result.continuationToken { xml += element("ContinuationToken", token) }
        if let token = result.nextContinuationToken { xml += element("NextContinuationToken", token) }
        if let startAfter = result.startAfter { xml += element("StartAfter", encode(startAfter)) }
        for object in result.contents {
            xml += "<Contents>"
            xml += element("Key", encode(object.key))
            if let modified = object.lastModified { xml += element("LastModified", S3Time.iso8601(modified)) }
            if let etag = object.etag { xml += element("ETag", etag) }
            xml += element("Size", String(object.size))
            xml += element("StorageClass", "STANDARD")
            xml += "</Contents>"
        }
        for prefix in result.commonPrefixes {
            xml += "<CommonPrefixes>" + element("Prefix", encode(prefix)) + "</CommonPrefixes>"
        }
        xml += "</ListBucketResult>"
        return Array(xml.utf8)
    }

    private static func element(_ name: String, _ text: String) -> String { "<\(name)>\(escape(text))</\(name)>" }

    // MARK: Parsing

    /// Reads an `<Error>` document. `Code` is required; the rest default to empty or nil.
    public static func parseError(_ bytes: [UInt8]) throws(S3XMLError) -> S3ErrorDocument {
        let root = try XMLReader.parse(bytes)
        guard root.localName == "Error" else { throw .unexpectedRoot(expected: "Error", found: root.name) }
        guard let code = root.child("Code")?.text else { throw .missingElement("Code") }
        return S3ErrorDocument(
            code: code, message: root.child("Message")?.text ?? "", key: root.child("Key")?.text,
            requestID: root.child("RequestId")?.text)
    }

    /// Reads a `<ListBucketResult>` document, decoding keys, prefixes, the delimiter and
    /// start-after when it says `<EncodingType>url</EncodingType>`. Elements this subset
    /// does not use (`StorageClass`, `Owner`, ...) are ignored.
    public static func parseListBucketResult(_ bytes: [UInt8]) throws(S3XMLError) -> S3ListBucketResult {
        let root = try XMLReader.parse(bytes)
        guard root.localName == "ListBucketResult" else { throw .unexpectedRoot(expected: "ListBucketResult", found: root.name) }
        let encodingType = root.child("EncodingType")?.text
        guard encodingType == nil || encodingType == "url" else { throw .invalidValue(element: "EncodingType", value: encodingType ?? "") }
        let encoded = encodingType == "url"
        func decode(_ name: String, _ text: String) throws(S3XMLError) -> String {
            guard encoded else { return text }
            guard let decoded = urlDecode(text) else { throw .invalidValue(element: name, value: text) }
            return decoded
        }
        var contents: [S3ListedObject] = []
        for item in root.children where item.localName == "Contents" {
            guard let key = item.child("Key")?.text else { throw .missingElement("Key") }
            guard let sizeText = item.child("Size")?.text else { throw .missingElement("Size") }
            guard let size = Int(sizeText), size >= 0 else { throw .invalidValue(element: "Size", value: sizeText) }
            var modified: Date?
            if let text = item.child("LastModified")?.text {
                guard let date = S3Time.parseISO8601(text) else { throw .invalidValue(element: "LastModified", value: text) }
                modified = date
            }
            contents.append(S3ListedObject(key: try decode("Key", key), size: size, lastModified: modified, etag: item.child("ETag")?.text))
        }
        var commonPrefixes: [String] = []
        for item in root.children where item.localName == "CommonPrefixes" {
            guard let prefix = item.child("Prefix")?.text else { throw .missingElement("Prefix") }
            commonPrefixes.append(try decode("Prefix", prefix))
        }
        let isTruncatedText = root.child("IsTruncated")?.text ?? "false"
        guard isTruncatedText == "true" || isTruncatedText == "false" else {
            throw .invalidValue(element: "IsTruncated", value: isTruncatedText)
        }
        func integer(_ name: String, default value: Int) throws(S3XMLError) -> Int {
            guard let text = root.child(name)?.text else { return value }
            guard let n = Int(text), n >= 0 else { throw .invalidValue(element: name, value: text) }
            return n
        }
        return S3ListBucketResult(
            name: root.child("Name")?.text ?? "", prefix: try decode("Prefix", root.child("Prefix")?.text ?? ""),
            keyCount: try integer("KeyCount", default: contents.count + commonPrefixes.count), maxKeys: try integer("MaxKeys", default: 1000),
            isTruncated: isTruncatedText == "true", continuationToken: root.child("ContinuationToken")?.text,
            nextContinuationToken: root.child("NextContinuationToken")?.text,
            startAfter: try root.child("StartAfter").map { (e) throws(S3XMLError) in try decode("StartAfter", e.text) },
            delimiter: try root.child("Delimiter").map { (e) throws(S3XMLError) in try decode("Delimiter", e.text) },
            encodingTypeURL: encoded, contents: contents, commonPrefixes: commonPrefixes)
    }
}

/// A parsed XML element: its name, attributes, child elements and the concatenation of
/// its own text (character data and CDATA directly inside it).
struct XMLNode: Sendable {
    var name: String
    var attributes: [(name: String, value: String)] = []
    var children: [XMLNode] = []
    var text: String = ""

    /// The name without a namespace prefix.
    var localName: String {
        guard let colon = name.lastIndex(of: ":") else { return name }
        return String(name[name.index(after: colon)...])
    }

    /// The first child element with this local name.
    func child(_ localName: String) -> XMLNode? { children.first { $0.localName == localName } }
}

/// A strict, non-validating reader for small XML documents. It refuses DTDs (so no entity
/// expansion), limits nesting depth, requires matching end tags and valid UTF-8, and
/// accepts character references to any scalar value (S3 writes control characters that
/// way).
struct XMLReader {
    static let maxDepth = 32

    private let bytes: [UInt8]
    private var i = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The root element of `bytes`.
    static func parse(_ bytes: [UInt8]) throws(S3XMLError) -> XMLNode {
        var reader = XMLReader(bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { reader.i = 3 }
        try reader.skipMisc()
        guard reader.peek() == UInt8(ascii: "<") else { throw reader.fail("expected the root element") }
        let root = try reader.element(depth: 0)
        try reader.skipMisc()
        guard reader.i == bytes.count else { throw reader.fail("content after the root element") }
        return root
    }

    private func fail(_ why: String) -> S3XMLError { .malformed(why, offset: i) }

    private func peek(_ offset: Int = 0) -> UInt8? { i + offset < bytes.count ? bytes[i + offset] : nil }

    private func starts(with literal: String) -> Bool {
        let l = Array(literal.utf8)
        return i + l.count <= bytes.count && bytes[i..<(i + l.count)].elementsEqual(l)
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    private mutating func skipSpace() { while let b = peek(), Self.isSpace(b) { i += 1 } }

    /// Whitespace, comments and processing instructions (the XML declaration included)
    /// outside the root element.
    private mutating func skipMisc() throws(S3XMLError) {
        while true {
            skipSpace()
            if starts(with: "<?") {
                try skip(past: "?>")
            } else if starts(with: "<!--") {
                try skip(past: "-->")
            } else if starts(with: "<!") {
                throw fail("document type declarations are not accepted")
            } else {
                return
            }
        }
    }

    private mutating func skip(past terminator: String) throws(S3XMLError) {
        let t = Array(terminator.utf8)
        while i + t.count <= bytes.count {
            if bytes[i..<(i + t.count)].elementsEqual(t) {
                i += t.count
                return
            }
            i += 1
        }
        throw fail("unterminated construct, expected \(terminator)")
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_") || b == UInt8(ascii: ":")
            || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b >= 0x80
    }

    private mutating func name() throws(S3XMLError) -> String {
        let start = i
        while let b = peek(), Self.isNameByte(b) { i += 1 }
        guard i > start else { throw fail("expected a name") }
        let first = bytes[start]
        guard !(first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) && first != UInt8(ascii: "-") && first != UInt8(ascii: ".")
        else { throw fail("a name cannot start with \(Character(Unicode.Scalar(first)))") }
        guard let text = String(validating: bytes[start..<i], as: UTF8.self) else { throw fail("a name is not UTF-8") }
        return text
    }

    /// An element starting at `<`.
    private mutating func element(depth: Int) throws(S3XMLError) -> XMLNode {
        guard depth < Self.maxDepth else { throw fail("elements nested too deeply") }
        i += 1  // "<"
        var node = XMLNode(name: try name())
        // Attributes until ">" or "/>".
        while true {
            let hadSpace = peek().map(Self.isSpace) ?? false
            skipSpace()
            guard let b = peek() else { throw fail("unterminated start tag <\(node.name)>") }
            if b == UInt8(ascii: "/") {
                guard peek(1) == UInt8(ascii: ">") else { throw fail("expected /> in <\(node.name)>") }
                i += 2
                return node
            }
            if b == UInt8(ascii: ">") {
                i += 1
                break
            }
            guard hadSpace else { throw fail("expected whitespace before an attribute in <\(node.name)>") }
            let attribute = try name()
            skipSpace()
            guard peek() == UInt8(ascii: "=") else { throw fail("expected = after attribute \(attribute)") }
            i += 1
            skipSpace()
            guard let quote = peek(), quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else {
                throw fail("expected a quoted value for attribute \(attribute)")
            }
            i += 1
            let value = try characterData(until: quote)
            i += 1  // closing quote
            guard !node.attributes.contains(where: { $0.name == attribute }) else { throw fail("repeated attribute \(attribute)") }
            node.attributes.append((name: attribute, value: value))
        }
        // Content until the matching end tag.
        var text = ""
        while true {
            guard let b = peek() else { throw fail("unterminated element <\(node.name)>") }
            if b != UInt8(ascii: "<") {
                text += try characterData(until: UInt8(ascii: "<"))
            } else if starts(with: "</") {
                i += 2
                let end = try name()
                guard end == node.name else { throw fail("</\(end)> does not close <\(node.name)>") }
                skipSpace()
                guard peek() == UInt8(ascii: ">") else { throw fail("expected > after </\(end)") }
                i += 1
                node.text = text
                return node
            } else if starts(with: "<!--") {
                try skip(past: "-->")
            } else if starts(with: "<![CDATA[") {
                i += 9
                let start = i
                try skip(past: "]]>")
                guard let chunk = String(validating: bytes[start..<(i - 3)], as: UTF8.self) else { throw fail("CDATA is not UTF-8") }
                text += chunk
            } else if starts(with: "<?") {
                try skip(past: "?>")
            } else if starts(with: "<!") {
                throw fail("unexpected declaration inside <\(node.name)>")
            } else {
                node.children.append(try element(depth: depth + 1))
            }
        }
    }

    /// Text up to (not including) `terminator` or the end, with references resolved.
    /// A `<` inside an attribute value is refused, as XML requires.
    private mutating func characterData(until terminator: UInt8) throws(S3XMLError) -> String {
        var out: [UInt8] = []
        while let b = peek(), b != terminator {
            if b == UInt8(ascii: "&") {
                try reference(into: &out)
            } else if b == UInt8(ascii: "<") {
                throw fail("< in an attribute value")
            } else {
                out.append(b)
                i += 1
            }
        }
        guard peek() == terminator else { throw fail("unexpected end of document") }
        guard let text = String(validating: out, as: UTF8.self) else { throw fail("text is not UTF-8") }
        return text
    }

    private mutating func reference(into out: inout [UInt8]) throws(S3XMLError) {
        let start = i
        i += 1  // "&"
        while let b = peek(), b != UInt8(ascii: ";") {
            guard i - start < 12 else { throw fail("unterminated reference") }
            i += 1
        }
        guard peek() == UInt8(ascii: ";") else { throw fail("unterminated reference") }
        let body = String(decoding: bytes[(start + 1)..<i], as: UTF8.self)
        i += 1  // ";"
        switch body {
        case "amp": out.append(UInt8(ascii: "&"))
        case "lt": out.append(UInt8(ascii: "<"))
        case "gt": out.append(UInt8(ascii: ">"))
        case "quot": out.append(UInt8(ascii: "\""))
        case "apos": out.append(UInt8(ascii: "'"))
        default:
            var value: UInt32?
            if body.hasPrefix("#x"), body.count > 2, body.dropFirst(2).allSatisfy(\.isHexDigit) {
                value = UInt32(body.dropFirst(2), radix: 16)
            } else if body.hasPrefix("#"), body.count > 1, body.dropFirst(1).allSatisfy({ $0.isASCII && $0.isNumber }) {
                value = UInt32(body.dropFirst(1), radix: 10)
            }
            guard let value, let scalar = Unicode.Scalar(value) else {
                i = start
                throw fail("unknown reference &\(body);")
            }
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        }
    }
}
