#if canImport(Glibc)
import Glibc
#endif
import PersistCore
import PersistLocation
import Testing

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TemporaryDirectory: Sendable {
    let path: String

    init(_ label: String = "test") {
        var template = Array("/tmp/swift-txn-wal-\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buf -> Bool in
            guard let base = buf.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        precondition(made, "mkdtemp failed: \(errno)")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() { removeTree(path) }
}

/// Deletes a file tree (test cleanup only).
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        if let dir = opendir(path) {
            var names: [String] = []
            while let e = readdir(dir) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for n in names { removeTree(path + "/" + n) }
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// Every path below `root` (files and directories), relative to it.
func listTree(_ root: String, _ prefix: String = "") -> [String] {
    guard let dir = opendir(root) else { return [] }
    var names: [String] = []
    while let e = readdir(dir) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    closedir(dir)
    var out: [String] = []
    for n in names.sorted() {
        let rel = prefix.isEmpty ? n : prefix + "/" + n
        out.append(rel)
        var st = stat()
        if lstat(root + "/" + n, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            out += listTree(root + "/" + n, rel)
        }
    }
    return out
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "open \(path) failed")
    defer { close(fd) }
    bytes.withUnsafeBytes { buf in
        var done = 0
        while done < buf.count, let base = buf.baseAddress {
            let n = write(fd, base + done, buf.count - done)
            precondition(n > 0, "write failed")
            done += n
        }
    }
}

/// Copies the regular files of `from` into a new directory `to`.
func copyDirectory(_ from: String, _ to: String) {
    mkdir(to, 0o755)
    for name in listTree(from) where !name.contains("/") {
        if let bytes = readFile(from + "/" + name) { writeFile(to + "/" + name, bytes) }
    }
}

func segmentFiles(_ dir: String) -> [String] {
    listTree(dir).filter { $0.hasPrefix("consensus-") && $0.hasSuffix(".log") }.sorted()
}
