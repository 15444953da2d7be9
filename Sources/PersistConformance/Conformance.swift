import PersistCore
import PersistLocation

/// A failed conformance expectation, with where it was checked.
public struct ConformanceFailure: Error, CustomStringConvertible {
    public let message: String
    public let file: StaticString
    public let line: UInt

    public var description: String { "\(file):\(line): \(message)" }

    public init(_ message: String, file: StaticString = #filePath, line: UInt = #line) {
        self.message = message
        self.file = file
        self.line = line
    }

    init(message: String, file: StaticString, line: UInt) {
        self.init(message, file: file, line: line)
    }
}

/// Fails the running check unless `condition` holds.
func expect(
    _ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line
) throws {
    if !condition { throw ConformanceFailure(message: message(), file: file, line: line) }
}

/// Fails unless `a == b`, showing both.
func expectEqual<T: Equatable>(
    _ a: T, _ b: T, _ what: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line
) throws {
    if a != b { throw ConformanceFailure(message: "\(what()): got \(a), expected \(b)", file: file, line: line) }
}

/// Fails unless `body` throws a `StorageError` with `code` (and `determinacy`, if given).
func expectStorageError<T>(
    _ code: StorageError.Code, determinacy: StorageError.Determinacy? = .determinate,
    _ what: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line,
    _ body: () async throws(StorageError) -> T
) async throws {
    let value: T
    do throws(StorageError) {
        value = try await body()
    } catch {
        try expect(error.code == code, "\(what()): expected a \(code) error, got \(error)", file: file, line: line)
        if let determinacy {
            try expect(
                error.determinacy == determinacy, "\(what()): expected a \(determinacy) error, got \(error)",
                file: file, line: line)
        }
        return
    }
    throw ConformanceFailure(message: "\(what()): expected a \(code) error, got \(value)", file: file, line: line)
}

/// How a conformance check gets backends: a fresh empty one, and, for durable backends,
/// a new instance over the same storage (as after a process restart).
public struct ConformanceHarness<Backend: Sendable>: Sendable {
    public var open: @Sendable () async throws -> Backend
    public var reopen: (@Sendable (Backend) async throws -> Backend)?

    public init(
        open: @escaping @Sendable () async throws -> Backend,
        reopen: (@Sendable (Backend) async throws -> Backend)? = nil
    ) {
        self.open = open
        self.reopen = reopen
    }
}

/// One named check of a conformance suite. Test targets run each as its own test case.
public struct ConformanceCheck<Backend: Sendable>: Sendable, CustomStringConvertible {
    public let name: String
    public let run: @Sendable (ConformanceHarness<Backend>) async throws -> Void

    public var description: String { name }
}

/// Deterministic payloads for the suites.
func payload(_ seed: UInt64, count: Int) -> [UInt8] {
    var g = SeededGenerator(seed: seed)
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
}

func seq(_ n: Int) -> SeqNo { SeqNo(n) }
