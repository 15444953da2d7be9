#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Synchronization

/// Undo actions (stop a server, remove a scratch directory) that must run whether the
/// benchmark ends normally, fails, or is interrupted with Ctrl-C or SIGTERM.
///
/// The normal path calls `run(_:)` for its own token when it is done with a resource; an
/// interrupt runs whatever is still registered, newest first, and exits.
final class CleanupRegistry: Sendable {
    struct Token: Hashable, Sendable {
        fileprivate let id: Int
    }

    private struct State {
        var nextID = 0
        var actions: [(id: Int, label: String, action: @Sendable () -> Void)] = []
        var signalSources: [any DispatchSourceSignal] = []
        var interrupted = false
    }

    private let state = Mutex(State())

    /// Registers `action`; it runs at most once, through `run(_:)` or an interrupt.
    func register(_ label: String, _ action: @escaping @Sendable () -> Void) -> Token {
        state.withLock { s in
            s.nextID += 1
            s.actions.append((s.nextID, label, action))
            return Token(id: s.nextID)
        }
    }

    /// Runs the action registered under `token` now, unless it already ran.
    func run(_ token: Token) {
        let action = state.withLock { s -> (@Sendable () -> Void)? in
            guard let index = s.actions.firstIndex(where: { $0.id == token.id }) else { return nil }
            return s.actions.remove(at: index).action
        }
        action?()
    }

    /// Runs every registered action, newest first.
    func runAll() {
        let pending = state.withLock { s -> [(id: Int, label: String, action: @Sendable () -> Void)] in
            defer { s.actions.removeAll() }
            return s.actions
        }
        for entry in pending.reversed() {
            printError("cleaning up: \(entry.label)")
            entry.action()
        }
    }

    /// Blocks for good if an interrupt is being handled: the handler is still undoing
    /// things (a server may be stopping) and ends the process itself when done. The
    /// main path calls this before it would exit, so it cannot cut the cleanup short.
    func parkIfInterrupted() {
        guard state.withLock({ $0.interrupted }) else { return }
        while true { sleep(60) }
    }

    /// Makes SIGINT and SIGTERM run the registered actions and exit with 128 + signal.
    func installSignalHandlers() {
        // The sources are created under the lock and stored there, so they stay alive
        // (a released source is cancelled) without ever crossing an isolation boundary.
        state.withLock { s in
            guard s.signalSources.isEmpty else { return }
            for signalNumber in [SIGINT, SIGTERM] {
                // The default disposition would kill the process before the source sees it.
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { [self] in
                    state.withLock { $0.interrupted = true }
                    printError("\ninterrupted (signal \(signalNumber)); stopping")
                    runAll()
                    exit(128 + signalNumber)
                }
                source.resume()
                s.signalSources.append(source)
            }
        }
    }
}

/// The one registry of this process.
let cleanup = CleanupRegistry()

/// A benchmark run's fresh scratch directory `<parent>/persist-bench-XXXXXX`, announced on
/// standard output and removed by `finish()` (or by an interrupt) unless kept.
struct ScratchRun {
    let path: String
    private let token: CleanupRegistry.Token

    init(under parent: String, keep: Bool) throws(BenchError) {
        let path = try System.makeScratchDirectory(under: parent, prefix: "persist-bench-")
        self.path = path
        token = cleanup.register("remove \(path)") { if !keep { System.removeTree(path) } }
        print("scratch directory: \(path)\(keep ? " (kept)" : " (removed at the end)")")
    }

    /// Removes the directory unless it is kept.
    func finish() { cleanup.run(token) }
}

/// Writes `message` and a newline to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
