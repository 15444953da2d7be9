import PersistCodec

/// A bounded hand-over of subscription events from one producer task to its consumer,
/// as a pure state machine. The producer waits when `capacity` events are unread, so a
/// slow consumer holds the subscription back instead of growing memory.
///
/// `Consumer` and `Producer` are how a parked side is woken (continuations in the
/// subscription, plain values in tests). Once the channel ends, buffered events are
/// still delivered, then the failure (if any) once, then the end.
struct SubscriptionChannel<Event, Consumer, Producer> {
    enum End {
        case finished
        case failed(CoordinatorError)
    }

    let capacity: Int
    private var buffer: [Event] = []
    private var head = 0
    private var consumer: Consumer?
    private var producer: Producer?
    private(set) var end: End?
    private(set) var cancelled = false

    init(capacity: Int) {
        precondition(capacity > 0, "a channel holds at least one event")
        self.capacity = capacity
    }

    var buffered: Int { buffer.count - head }

    enum OfferAction {
        /// Hand the event straight to the parked consumer.
        case deliver(Consumer, Event)
        /// Buffered; the producer may go on.
        case accepted
        /// Buffered, and the buffer is full: the producer should `waitForRoom`.
        case full
        /// The channel has ended: the producer stops.
        case closed
    }

    mutating func offer(_ event: Event) -> OfferAction {
        guard end == nil, !cancelled else { return .closed }
        if let c = consumer {
            consumer = nil
            return .deliver(c, event)
        }
        buffer.append(event)
        return buffered >= capacity ? .full : .accepted
    }

    /// Parks the producer until the consumer takes an event; false (nothing parked) when
    /// there is room already or the channel has ended.
    mutating func waitForRoom(_ p: Producer) -> Bool {
        guard end == nil, !cancelled, buffered >= capacity else { return false }
        precondition(producer == nil, "one producer")
        producer = p
        return true
    }

    enum PollAction {
        /// An event; resume the producer too if it is given.
        case event(Event, wakeProducer: Producer?)
        case failed(CoordinatorError)
        case finished
        /// Nothing yet: the consumer is parked until `offer`, `finish` or `cancel`.
        case parked
    }

    mutating func poll(_ c: Consumer) -> PollAction {
        if buffered > 0 {
            let e = buffer[head]
            head += 1
            if head == buffer.count || head > 64 {
                buffer.removeFirst(head)
                head = 0
            }
            let p = producer
            producer = nil
            return .event(e, wakeProducer: p)
        }
        if cancelled { return .finished }
        switch end {
        case .failed(let error):
            end = .finished
            return .failed(error)
        case .finished:
            return .finished
        case nil:
            // A second concurrent consumer is a caller's bug: refuse it, do not trap.
            guard consumer == nil else {
                return .failed(CoordinatorError(.badRequest, "the subscription already has a waiting consumer"))
            }
            consumer = c
            return .parked
        }
    }

    /// The producer is done (with a failure, or because its source ended). Returns the
    /// parked consumer to resume with the failure or the end; nil if none is parked.
    mutating func finish(_ failure: CoordinatorError?) -> (Consumer, PollAction)? {
        guard end == nil, !cancelled else { return nil }
        end = failure.map { .failed($0) } ?? .finished
        guard let c = consumer else { return nil }
        consumer = nil
        if let failure {
            end = .finished
            return (c, .failed(failure))
        }
        return (c, .finished)
    }

    /// Ends the channel now, dropping unread events. Returns whoever is parked; both
    /// must be resumed (the consumer with the end).
    mutating func cancel() -> (consumer: Consumer?, producer: Producer?) {
        cancelled = true
        buffer.removeAll()
        head = 0
        defer {
            consumer = nil
            producer = nil
        }
        return (consumer, producer)
    }
}
