import Foundation
import PersistLocation

/// One page of a ListObjectsV2 answer, before it is rendered as XML.
public struct BlobStoreListPage: Hashable, Sendable {
    /// The objects on this page, in ascending byte order of their keys.
    public var contents: [BlobMetadata] = []
    /// The distinct prefixes (up to and including the first delimiter after the request
    /// prefix) of the keys rolled up on this page, in ascending order.
    public var commonPrefixes: [String] = []
    /// Whether more keys follow; if so, `nextContinuationToken` resumes after this page.
    public var isTruncated = false
    /// The token that resumes after this page (only when truncated).
    public var nextContinuationToken: String?

    /// KeyCount: objects plus common prefixes returned.
    public var keyCount: Int { contents.count + commonPrefixes.count }
}

/// ListObjectsV2 pagination over a sorted key listing. Pure.
///
/// Every page entry is either an object or a common prefix; walking the keys in byte
/// order, each key's entry (its common prefix if it has one, else the key itself) never
/// decreases, so a page can end after any entry and the next page resumes after it. The
/// continuation token is that last entry, base64-encoded (so it is opaque to clients and
/// safe in a query string once URL-encoded).
public enum BlobStoreListing {
    /// Computes the page of `query` from `listing`, every object whose key starts with the
    /// query's prefix, sorted by key bytes (as `Blob.list(prefix:)` returns them).
    ///
    /// - Throws: `InvalidArgument` for a continuation token this server did not make.
    public static func page(_ listing: [BlobMetadata], query: ListObjectsV2Query) throws(BlobStoreError) -> BlobStoreListPage {
        // Resume strictly after `marker`: the token wins over start-after, as in S3.
        var marker: [UInt8]?
        if let token = query.continuationToken {
            guard let m = decodeToken(token) else { throw .invalidContinuationToken }
            marker = m
        } else if let s = query.startAfter {
            marker = Array(s.utf8)
        }
        var page = BlobStoreListPage()
        let prefix = Array(query.prefix.utf8)
        let delimiter = query.delimiter.map { Array($0.utf8) }
        var lastEntry: [UInt8]?
        for object in listing {
            let key = Array(object.key.utf8)
            guard key.starts(with: prefix) else { continue }
            let rolledUp = delimiter.flatMap { commonPrefix(of: key, after: prefix.count, delimiter: $0) }
            let entry = rolledUp ?? key
            if let marker, !ByteOrder.less(marker, entry) { continue }
            if let lastEntry, lastEntry == entry { continue }  // same common prefix again
            if page.keyCount == query.maxKeys {
                // Something follows a full page.
                page.isTruncated = query.maxKeys > 0
                break
            }
            if let rolledUp {
                page.commonPrefixes.append(String(decoding: rolledUp, as: UTF8.self))
            } else {
                page.contents.append(object)
            }
            lastEntry = entry
        }
        if page.isTruncated, let lastEntry { page.nextContinuationToken = encodeToken(lastEntry) }
        return page
    }

    /// The key up to and including the first `delimiter` at or after `start`, or nil when
    /// the key has no delimiter there.
    static func commonPrefix(of key: [UInt8], after start: Int, delimiter: [UInt8]) -> [UInt8]? {
        guard !delimiter.isEmpty, key.count >= start + delimiter.count else { return nil }
        var i = start
        while i + delimiter.count <= key.count {
            if key[i..<(i + delimiter.count)].elementsEqual(delimiter) { return Array(key[..<(i + delimiter.count)]) }
            i += 1
        }
        return nil
    }

    static func encodeToken(_ entry: [UInt8]) -> String { Data(entry).base64EncodedString() }

    static func decodeToken(_ token: String) -> [UInt8]? {
        Data(base64Encoded: token).map(Array.init)
    }
}

/// Byte-wise lexicographic order, the order S3 lists keys in.
enum ByteOrder {
    static func less(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.lexicographicallyPrecedes(b)
    }
}
