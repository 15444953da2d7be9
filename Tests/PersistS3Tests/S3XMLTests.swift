import Foundation
import PersistConformance
import PersistCore
import Testing

@testable import PersistS3

@Suite struct S3XMLTests {
    static let hostile = BlobConformance.hostileKeys + ["<Key>", "a&b", "]]>", "\"'", "&amp;", "\r\n", " lead", "trail ", "a+b c"]

    @Test func errorDocumentsRoundTrip() throws {
        for key in Self.hostile {
            let document = S3ErrorDocument(code: "NoSuchKey", message: "The specified key <\(key)> does not exist.", key: key, requestID: "r-1")
            #expect(try S3XML.parseError(S3XML.render(document)) == document, "\(key.debugDescription)")
        }
        let bare = S3ErrorDocument(code: "InternalError", message: "")
        #expect(try S3XML.parseError(S3XML.render(bare)) == bare)
    }

    @Test func renderedErrorLooksLikeS3s() {
        let text = String(decoding: S3XML.render(S3ErrorDocument(code: "AccessDenied", message: "a<b", key: "k&", requestID: "1")), as: UTF8.self)
        #expect(
            text == "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                + "<Error><Code>AccessDenied</Code><Message>a&lt;b</Message><Key>k&amp;</Key><RequestId>1</RequestId></Error>")
    }

    @Test func parsesRealS3Shapes() throws {
        // As S3 sends them: namespace, whitespace between elements, extra elements, CDATA
        // and comments.
        let error = """
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <Error>
              <Code>SignatureDoesNotMatch</Code>
              <Message><![CDATA[The request signature <we> calculated]]> does not match</Message>
              <StringToSign>AWS4-HMAC-SHA256</StringToSign>
              <RequestId>4442587FB7D0A2F9</RequestId>
              <HostId/>
            </Error>
            """
        let parsed = try S3XML.parseError(Array(error.utf8))
        #expect(parsed.code == "SignatureDoesNotMatch")
        #expect(parsed.message == "The request signature <we> calculated does not match")
        #expect(parsed.requestID == "4442587FB7D0A2F9")
        #expect(parsed.key == nil)

        let listing = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                <Name>bucket</Name>
                <Prefix>a%2Fb+c</Prefix>
                <KeyCount>2</KeyCount>
                <MaxKeys>2</MaxKeys>
                <EncodingType>url</EncodingType>
                <IsTruncated>true</IsTruncated>
                <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
                <Contents>
                    <Key>a/b+c%26d</Key>
                    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
                    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
                    <Size>434234</Size>
                    <StorageClass>STANDARD</StorageClass>
                    <Owner><ID>x</ID><DisplayName>y</DisplayName></Owner>
                </Contents>
                <Contents><Key>a%2Fz%01</Key><Size>0</Size></Contents>
                <CommonPrefixes><Prefix>p%2F</Prefix></CommonPrefixes>
                <CommonPrefixes>
                    <Prefix>q+r/</Prefix>
                </CommonPrefixes>
                <Delimiter>%2F</Delimiter>
            </ListBucketResult>
            """
        let result = try S3XML.parseListBucketResult(Array(listing.utf8))
        #expect(result.name == "bucket")
        #expect(result.prefix == "a/b c")
        #expect(result.isTruncated)
        #expect(result.encodingTypeURL)
        #expect(result.keyCount == 2)
        #expect(result.maxKeys == 2)
        #expect(result.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        #expect(
            result.contents == [
                S3ListedObject(
                    key: "a/b c&d", size: 434_234, lastModified: S3Time.parseISO8601("2009-10-12T17:50:30.000Z"),
                    etag: "\"fba9dede5f27731c9771645a39863328\""),
                S3ListedObject(key: "a/z\u{1}", size: 0),
            ])
        #expect(result.commonPrefixes == ["p/", "q r/"])
        #expect(result.delimiter == "/")
        // Without a delimiter there is none, and no common prefixes.
        let plain = try S3XML.parseListBucketResult(Array("<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>".utf8))
        #expect(plain.delimiter == nil && plain.commonPrefixes.isEmpty && plain.keyCount == 1)
    }

    @Test func renderedListingWithCommonPrefixesLooksLikeS3s() throws {
        let result = S3ListBucketResult(
            name: "b", prefix: "p/", maxKeys: 2, delimiter: "/", contents: [S3ListedObject(key: "p/k", size: 3)], commonPrefixes: ["p/d/"])
        let text = String(decoding: S3XML.render(result), as: UTF8.self)
        #expect(
            text.hasSuffix(
                "<Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><Delimiter>/</Delimiter>"
                    + "<IsTruncated>false</IsTruncated><Contents><Key>p/k</Key><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>"
                    + "<CommonPrefixes><Prefix>p/d/</Prefix></CommonPrefixes></ListBucketResult>"), "\(text)")
        var encoded = result
        encoded.encodingTypeURL = true
        encoded.delimiter = "&"
        encoded.commonPrefixes = ["p/a b&"]
        let encodedText = String(decoding: S3XML.render(encoded), as: UTF8.self)
        #expect(encodedText.contains("<Delimiter>%26</Delimiter>") && encodedText.contains("<Prefix>p/a%20b%26</Prefix></CommonPrefixes>"))
        #expect(try S3XML.parseListBucketResult(S3XML.render(encoded)) == encoded)
    }

    @Test(arguments: [false, true])
    func listingsRoundTrip(urlEncoded: Bool) throws {
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        let contents = Self.hostile.enumerated().map { i, key in
            S3ListedObject(key: key, size: i * 1000, lastModified: date, etag: "\"\(i)\"")
        }
        let result = S3ListBucketResult(
            name: "bucket", prefix: "p<&>\u{1}", maxKeys: 50, isTruncated: true, continuationToken: "tok/+=", nextContinuationToken: "n&x",
            startAfter: "after\u{2}", delimiter: "<\u{3}+ ", encodingTypeURL: urlEncoded, contents: contents,
            commonPrefixes: Self.hostile.map { "p<&>\u{1}" + $0 + "<\u{3}+ " })
        let bytes = S3XML.render(result)
        #expect(try S3XML.parseListBucketResult(bytes) == result)
        if urlEncoded {
            // URL-encoded listings are plain XML 1.0: no character references at all.
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(!text.contains("&#x"))
            #expect(text.contains("<Key>with%00nul</Key>"))
        }
    }

    @Test func escapingCoversEveryCharacterXMLWouldMisread() {
        #expect(S3XML.escape("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;")
        #expect(S3XML.escape("\u{0}\t\n\r\u{1F}\u{7F}é") == "&#x0;&#x9;&#xA;&#xD;&#x1F;\u{7F}é")
        #expect(S3XML.escape("\u{FFFE}\u{FFFF}") == "&#xFFFE;&#xFFFF;")
        #expect(S3XML.urlEncode("a b+c/d&é") == "a%20b%2Bc/d%26%C3%A9")
        #expect(S3XML.urlDecode("a+b%20c%2B") == "a b c+")
        #expect(S3XML.urlDecode("%FF") == nil)
    }

    @Test func randomKeysRoundTrip() throws {
        var rng = SeededGenerator(seed: 11)
        let alphabet: [Character] = ["a", "<", ">", "&", ";", "#", "x", "%", "+", " ", "\u{0}", "\u{1}", "\r", "\n", "\t", "é", "🐘", "]", "/", "\""]
        for _ in 0..<300 {
            let key = String((0..<Int.random(in: 0...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng) ?? "a" })
            for encoded in [false, true] {
                let result = S3ListBucketResult(name: "b", encodingTypeURL: encoded, contents: [S3ListedObject(key: key, size: 1)])
                #expect(try S3XML.parseListBucketResult(S3XML.render(result)).contents.first?.key == key, "\(key.debugDescription)")
            }
        }
    }

    @Test func references() throws {
        let doc = "<Error><Code>&#65;&#x42;&#x1F418;&lt;&gt;&amp;&quot;&apos;</Code></Error>"
        #expect(try S3XML.parseError(Array(doc.utf8)).code == "AB🐘<>&\"'")
        // Attributes are read (and quotes of either kind accepted) though unused.
        let attributes = "<Error a='1' b=\"&lt;2\" ><Code c = 'x'>C</Code ></Error >"
        #expect(try S3XML.parseError(Array(attributes.utf8)).code == "C")
        // A byte-order mark is allowed.
        #expect(try S3XML.parseError([0xEF, 0xBB, 0xBF] + Array("<Error><Code>C</Code></Error>".utf8)).code == "C")
    }

    @Test(arguments: [
        "", "   ", "text", "<Error>", "<Error><Code>x</Code>", "<Error><Code>x</Error></Code>", "<Error></Error><Error></Error>",
        "<Error><Code>&unknown;</Code></Error>", "<Error><Code>&#xZZ;</Code></Error>", "<Error><Code>&#xD800;</Code></Error>",
        "<Error><Code>&#x+41;</Code></Error>", "<Error><Code>&amp</Code></Error>", "<!DOCTYPE x [<!ENTITY e 'boom'>]><Error/>",
        "<Error a='1' a='2'/>", "<Error a=1/>", "<Error a='<'/>", "<1Error/>", "<Error><![CDATA[x</Error>", "<Error><!-- x</Error>",
        "<Error>trailing</Error>junk", "<Error/><?pi?>x",
    ])
    func malformedDocumentsAreRefused(_ text: String) {
        #expect(throws: S3XMLError.self) { try S3XML.parseError(Array(text.utf8)) }
    }

    @Test func invalidUTF8IsRefused() {
        #expect(throws: S3XMLError.self) { try S3XML.parseError(Array("<Error><Code>".utf8) + [0xC3, 0x28] + Array("</Code></Error>".utf8)) }
    }

    @Test func deepNestingIsRefusedWithoutTrapping() {
        let deep = String(repeating: "<a>", count: 100_000) + String(repeating: "</a>", count: 100_000)
        #expect(throws: S3XMLError.self) { try S3XML.parseError(Array(deep.utf8)) }
    }

    @Test func semanticErrors() {
        #expect(throws: S3XMLError.unexpectedRoot(expected: "Error", found: "ListBucketResult")) {
            try S3XML.parseError(Array("<ListBucketResult/>".utf8))
        }
        #expect(throws: S3XMLError.missingElement("Code")) { try S3XML.parseError(Array("<Error><Message>m</Message></Error>".utf8)) }
        #expect(throws: S3XMLError.missingElement("Size")) {
            try S3XML.parseListBucketResult(Array("<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>".utf8))
        }
        #expect(throws: S3XMLError.invalidValue(element: "Size", value: "-1")) {
            try S3XML.parseListBucketResult(Array("<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>".utf8))
        }
        #expect(throws: S3XMLError.invalidValue(element: "IsTruncated", value: "yes")) {
            try S3XML.parseListBucketResult(Array("<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>".utf8))
        }
        #expect(throws: S3XMLError.invalidValue(element: "EncodingType", value: "base64")) {
            try S3XML.parseListBucketResult(Array("<ListBucketResult><EncodingType>base64</EncodingType></ListBucketResult>".utf8))
        }
        #expect(throws: S3XMLError.invalidValue(element: "Key", value: "%C3")) {
            try S3XML.parseListBucketResult(
                Array("<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>%C3</Key><Size>1</Size></Contents></ListBucketResult>".utf8))
        }
        #expect(throws: S3XMLError.invalidValue(element: "LastModified", value: "yesterday")) {
            try S3XML.parseListBucketResult(
                Array("<ListBucketResult><Contents><Key>k</Key><Size>1</Size><LastModified>yesterday</LastModified></Contents></ListBucketResult>".utf8))
        }
    }

    @Test func randomBytesNeverTrap() {
        var rng = SeededGenerator(seed: 5)
        let seed = Array(S3XML.render(S3ListBucketResult(name: "b", contents: [S3ListedObject(key: "k<&", size: 3)])))
        for _ in 0..<3000 {
            var bytes = seed
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] = UInt8.random(in: 0...255, using: &rng)
            }
            _ = try? S3XML.parseListBucketResult(bytes)
            _ = try? S3XML.parseError(Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng))))
        }
    }
}
