#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Dispatch
import Foundation
import PersistCore
import Synchronization
import TxnClient

/// `txnctl subscribe`: a shard's changes as they happen.
struct SubscribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscribe",
        abstract: "Print a shard's contents and then every change as it arrives, until Ctrl-C.",
        discussion: """
            Starts at --from (default: the latest time): first the shard's contents then, as \
            updates, and from there every committed change. "progress T" means everything \
            below T has been printed. Ends on Ctrl-C (or SIGTERM), or after --limit-updates \
            updates, and then unsubscribes and exits 0; a second Ctrl-C exits at once (130). \
            With --json: {"type":"update","key":...,"value":...,"time":...,"diff":...} and \
            {"type":"progress","upper":...} lines.

            Example:
              txnctl subscribe orders --from 1700000000000 --limit-updates 100
            """)

    @OptionGroup var global: GlobalOptions

    @Option(
        name: .customLong("from"),
        help: ArgumentHelp("Start at this timestamp instead of the latest time.", valueName: "ts"))
    var from: Timestamp?

    @Option(
        name: .customLong("limit-updates"),
        help: ArgumentHelp("Stop after printing this many updates (rows), then unsubscribe.", valueName: "n"))
    var limitUpdates: Int?

    @Argument(help: ArgumentHelp("The shard to follow, by name or id.", valueName: "shard"))
    var shard: String

    func validate() throws {
        do { _ = try ShardNames.ref(shard) } catch { throw ValidationError(error.message) }
        if let limitUpdates, limitUpdates < 1 { throw ValidationError("--limit-updates must be at least 1") }
    }

    func run() async throws {
        let ref = try ShardNames.ref(shard)
        let json = global.json
        let limit = limitUpdates
        try await global.withClient { client in
            let subscription = try await client.subscribe(ref, from: from)
            let interrupts = InterruptWatch { Task { await subscription.cancel() } }
            defer { interrupts.stop() }
            var printed = 0
            for try await event in subscription {
                switch event {
                case .updates(let rows):
                    let shown = limit.map { Array(rows.prefix($0 - printed)) } ?? rows
                    try Terminal.print(try Rendering.updates(shown, json: json))
                    printed += shown.count
                    if let limit, printed >= limit {
                        await subscription.cancel()
                        return
                    }
                case .progress(let upper):
                    try Terminal.print(try Rendering.progress(upper, json: json))
                }
            }
        }
    }
}

/// Watches SIGINT and SIGTERM while it lives: the first calls `onFirst` (ending the
/// subscription gracefully); a second exits at once with status 130.
final class InterruptWatch {
    private let sources: [any DispatchSourceSignal]
    private static let signals = [SIGINT, SIGTERM]

    init(_ onFirst: @escaping @Sendable () -> Void) {
        let count = SignalCount()
        sources = Self.signals.map { number in
            // Dispatch only sees signals the process does not act on itself.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let n = count.increment()
                if n == 1 { onFirst() } else { exit(130) }
            }
            source.resume()
            return source
        }
    }

    /// Stops watching; the signals act as usual again.
    func stop() {
        for source in sources { source.cancel() }
        for number in Self.signals { signal(number, SIG_DFL) }
    }
}

/// How many interrupts have arrived.
private final class SignalCount: Sendable {
    private let count = Mutex(0)

    func increment() -> Int {
        count.withLock { n in
            n += 1
            return n
        }
    }
}
