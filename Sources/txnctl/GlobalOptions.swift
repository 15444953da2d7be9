import ArgumentParser
import Foundation
import PersistRPC
import TxnClient

/// The options every `txnctl` command takes: where the coordinator is, its token, the
/// output format and the request timeout.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .customLong("coordinator"),
        help: ArgumentHelp(
            "The coordinator's address: host:port, [ipv6]:port or unix:/path/to/socket.",
            discussion: """
                Without it, the TXNCTL_COORDINATOR environment variable is used, else \
                \(CoordinatorAddress.defaultAddress). Example: --coordinator unix:/srv/txn/coordinator.sock
                """,
            valueName: "address"))
    var coordinator: String?

    @Option(
        name: .customLong("token-file"),
        help: ArgumentHelp(
            "File holding the coordinator's shared token (whitespace around it is ignored).",
            discussion: """
                Needed when the coordinator was started with --token-file. Without it, the \
                TXNCTL_TOKEN_FILE environment variable is used when set.
                """, valueName: "path"))
    var tokenFile: String?

    @Flag(
        name: .customLong("json"),
        help: ArgumentHelp(
            "Machine-readable output: one JSON object per line on stdout.",
            discussion: "Errors still go to stderr as text; the exit status tells their class."))
    var json = false

    @Option(
        name: .customLong("timeout"),
        help: ArgumentHelp(
            "Seconds to wait for the coordinator's answer to each request (connecting waits at most 10).",
            discussion: """
                A request that times out after it was sent is in doubt (exit status 5): a commit \
                may have happened. Subscriptions themselves have no deadline.
                """,
            valueName: "seconds"))
    var timeout: Double = 60

    func validate() throws {
        guard timeout.isFinite, timeout > 0 else { throw ValidationError("--timeout must be a positive number of seconds") }
        if let coordinator {
            do { _ = try CoordinatorAddress.parse(coordinator) } catch { throw ValidationError("--coordinator: \(error.message)") }
        }
    }

    /// The global options that take a value.
    static let valued: Set<String> = ["--coordinator", "--token-file", "--timeout"]

    /// `arguments` with the global options given before the command moved after it, so
    /// `txnctl --json status` means `txnctl status --json` (ArgumentParser only reads a
    /// command's options after its name).
    static func hoisted(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let a = arguments[i]
            let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            if a == "--json" || (valued.contains(name) && a.contains("=")) {
                leading.append(a)
                i += 1
            } else if valued.contains(a), i + 1 < arguments.endIndex {
                leading += [a, arguments[i + 1]]
                i += 2
            } else {
                break
            }
        }
        guard !leading.isEmpty else { return arguments }
        var rest = Array(arguments[i...])
        let end = rest.firstIndex(of: "--") ?? rest.endIndex
        rest.insert(contentsOf: leading, at: end)
        return rest
    }

    /// The client configuration these options describe (reads the environment and the
    /// token file).
    func clientConfiguration() throws(UsageError) -> TxnClient.Configuration {
        let endpoint = try CoordinatorAddress.resolve(flag: coordinator, environment: ProcessInfo.processInfo.environment)
        var token: [UInt8]?
        if let tokenFile = tokenFile ?? ProcessInfo.processInfo.environment["TXNCTL_TOKEN_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard let data = FileManager.default.contents(atPath: tokenFile) else {
                throw UsageError("--token-file: cannot read \(tokenFile)")
            }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty else { throw UsageError("--token-file: \(tokenFile) is empty") }
            token = Array(text.utf8)
        }
        return TxnClient.Configuration(
            endpoint: endpoint, token: token, connections: 1, connectTimeout: .seconds(min(timeout, 10)),
            requestTimeout: .seconds(timeout))
    }

    /// Runs `body` with a connected client, shutting it down afterwards either way.
    func withClient<T>(_ body: (TxnClient) async throws -> T) async throws -> T {
        let client = TxnClient(try clientConfiguration())
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }
}

/// The process's stdout and stderr, written unbuffered so streamed output (subscribe)
/// appears as it arrives.
enum Terminal {
    static func print(_ lines: [String]) throws {
        guard !lines.isEmpty else { return }
        try FileHandle.standardOutput.write(contentsOf: Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    static func printError(_ lines: [String]) {
        guard !lines.isEmpty else { return }
        try? FileHandle.standardError.write(contentsOf: Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
