import Logging
import PersistClient
import PersistCodec
import PersistCore
import Synchronization
import TxnWAL

/// A stream of one data shard's changes, started by `TxnCoordinator.subscribe`.
///
/// Events are `CoordinatorResponse.updates` (updates at their times: first the shard's
/// contents at `asOf`, all at `asOf`, then every later change) and
/// `CoordinatorResponse.progress(t)` (every update before `t` has been delivered). Events
/// stay in that order and progress only grows. `next()` throws a `CoordinatorError` once
/// if the subscription fails, and returns nil after that or after `cancel()`.
///
/// One consumer at a time: a `next()` made while another waits fails with `badRequest`.
/// The subscription holds readers on the data and txns shards
/// until `cancel()` (or the coordinator's shutdown) releases them: always cancel it.
public final class CoordinatorSubscription: AsyncSequence, Sendable {
    public typealias Element = CoordinatorResponse
    public typealias Failure = CoordinatorError

    typealias ConsumerWaiter = CheckedContinuation<Result<CoordinatorResponse?, CoordinatorError>, Never>
    typealias ProducerWaiter = CheckedContinuation<Void, Never>
    typealias Channel = SubscriptionChannel<CoordinatorResponse, ConsumerWaiter, ProducerWaiter>

    /// The data shard.
    public let shard: ShardID
    /// The time of the first event's snapshot.
    public let asOf: Timestamp
    private let channel: Mutex<Channel>
    private let pump = Mutex<Task<Void, Never>?>(nil)
    private let onCancel = Mutex<(@Sendable () -> Void)?>(nil)

    private init(shard: ShardID, asOf: Timestamp, capacity: Int) {
        self.shard = shard
        self.asOf = asOf
        self.channel = Mutex(Channel(capacity: capacity))
    }

    /// Opens the txn-wal subscription and starts moving its events into the channel.
    /// Returns once the snapshot is readable, or throws why it is not.
    static func start(
        client: PersistClient, txnsID: ShardID, shard: ShardID, asOf: Timestamp, capacity: Int, logger: Logger
    ) async throws(CoordinatorError) -> CoordinatorSubscription {
        let sub = CoordinatorSubscription(shard: shard, asOf: asOf, capacity: capacity)
        let opened: Result<Void, CoordinatorError> = await withCheckedContinuation { ready in
            let task = Task {
                let source: DataSubscribe
                do {
                    source = try await DataSubscribe.open(client: client, txnsID: txnsID, dataID: shard, asOf: asOf)
                } catch {
                    ready.resume(returning: .failure(CoordinatorError.from(error, during: "subscribing to \(shard)")))
                    return
                }
                ready.resume(returning: .success(()))
                await sub.forward(from: source, logger: logger)
            }
            sub.pump.withLock { $0 = task }
        }
        try opened.get()
        return sub
    }

    /// Moves events from `source` into the channel until the channel ends or the source
    /// fails, then releases the source's readers.
    private func forward(from source: sending DataSubscribe, logger: Logger) async {
        var failure: CoordinatorError?
        while true {
            let event: DataSubscribeEvent
            do {
                event = try await source.next()
            } catch {
                // Cancellation is how `cancel()` stops a wait for new data.
                if !Task.isCancelled { failure = CoordinatorError.from(error, during: "subscription to \(shard)") }
                break
            }
            let response: CoordinatorResponse
            switch event {
            case .updates(let u): response = .updates(u)
            case .progress(let p): response = .progress(p)
            }
            guard await send(response) else { break }
        }
        if let failure {
            logger.warning("subscription failed", metadata: ["shard": "\(shard)", "error": "\(failure)"])
        }
        if let (consumer, action) = channel.withLock({ $0.finish(failure) }) {
            consumer.resume(returning: Self.result(action))
        }
        // Released from a fresh task: this one may be cancelled, and the release must
        // still reach storage.
        let release = Task {
            do {
                try await source.expire()
            } catch {
                logger.debug("releasing a subscription's readers failed", metadata: ["error": "\(error)"])
            }
        }
        await release.value
    }

    /// Offers one event; false once the channel has ended.
    private func send(_ response: CoordinatorResponse) async -> Bool {
        switch channel.withLock({ $0.offer(response) }) {
        case .deliver(let consumer, let event):
            consumer.resume(returning: .success(event))
            return true
        case .accepted:
            return true
        case .closed:
            return false
        case .full:
            await withCheckedContinuation { (producer: ProducerWaiter) in
                if !channel.withLock({ $0.waitForRoom(producer) }) { producer.resume() }
            }
            return !channel.withLock { $0.cancelled }
        }
    }

    private static func result(_ action: Channel.PollAction) -> Result<CoordinatorResponse?, CoordinatorError> {
        switch action {
        case .event(let e, _): return .success(e)
        case .failed(let error): return .failure(error)
        case .finished, .parked: return .success(nil)
        }
    }

    /// The next event; nil once the subscription has ended (after `cancel()`).
    public func next() async throws(CoordinatorError) -> CoordinatorResponse? {
        let result: Result<CoordinatorResponse?, CoordinatorError> = await withCheckedContinuation { consumer in
            let action = channel.withLock { $0.poll(consumer) }
            switch action {
            case .parked:
                break
            case .event(_, let producer):
                producer?.resume()
                consumer.resume(returning: Self.result(action))
            case .failed, .finished:
                consumer.resume(returning: Self.result(action))
            }
        }
        return try result.get()
    }

    /// Ends the subscription: a waiting `next()` returns nil, unread events are dropped,
    /// and the subscription's readers are released before this returns. Idempotent.
    public func cancel() async {
        let (consumer, producer) = channel.withLock { $0.cancel() }
        consumer?.resume(returning: .success(nil))
        producer?.resume()
        let task = pump.withLock { $0 }
        task?.cancel()
        await task?.value
        let hook = onCancel.withLock { h in
            defer { h = nil }
            return h
        }
        hook?()
    }

    /// Called once by the first `cancel()` after the readers are released.
    func setOnCancel(_ hook: @escaping @Sendable () -> Void) { onCancel.withLock { $0 = hook } }

    /// Iterates the events (see `next()`).
    public struct AsyncIterator: AsyncIteratorProtocol {
        public typealias Element = CoordinatorResponse
        public typealias Failure = CoordinatorError
        let subscription: CoordinatorSubscription

        public mutating func next() async throws(CoordinatorError) -> CoordinatorResponse? {
            try await subscription.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }
}
