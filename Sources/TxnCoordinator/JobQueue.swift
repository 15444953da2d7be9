/// One step of the worker: a job alone, or commits to write together.
enum JobStep<Job> {
    case single(Job)
    /// Groupable commits, in arrival order, to be committed at one timestamp.
    case group([Job])
}

extension JobStep: Sendable where Job: Sendable {}

/// The coordinator's work queue as a pure state machine: jobs go in from any task, the
/// single worker takes them out one step at a time, and commits that may share a
/// timestamp are handed out together as one group.
///
/// `Job` is what is queued and `Waiter` is how the parked worker is woken (a
/// continuation in the coordinator, a plain value in tests). The machine does no I/O and
/// never resumes anything itself: it returns the waiter to resume, with what to give it.
struct JobQueue<Job, Waiter> {
    /// One queued job and what grouping needs to know about it.
    struct Item {
        var job: Job
        /// A commit without an explicit timestamp: it may share one with others.
        var groupable: Bool
        var rows: Int
        var bytes: Int
    }

    typealias Step = JobStep<Job>

    enum Phase: Equatable {
        /// Taking new jobs.
        case open
        /// Refusing new jobs; the worker finishes those already queued, then stops.
        case draining
    }

    /// The answer to the worker asking for work.
    enum Next {
        case run(Step)
        /// Nothing to do: the waiter is kept and is resumed by a later `enqueue` or `close`.
        case parked
        /// Draining and empty: the worker stops.
        case finished
    }

    /// The answer to a producer.
    enum EnqueueAction {
        /// Queued; the worker was busy, or will find the job when it asks.
        case queued
        /// Queued, and the parked worker must be resumed with this step.
        case wake(Waiter, Step)
        /// The queue is draining: the job was not queued.
        case rejected(Job)
    }

    private(set) var phase = Phase.open
    private var items: [Item] = []
    private var parked: Waiter?
    let groupCommit: Bool
    let maxGroupRows: Int
    let maxGroupBytes: Int

    /// With `groupCommit` off every job is its own step. A group stops growing before its
    /// rows or bytes would pass the limits (its first job is always taken).
    init(groupCommit: Bool, maxGroupRows: Int, maxGroupBytes: Int) {
        self.groupCommit = groupCommit
        self.maxGroupRows = maxGroupRows
        self.maxGroupBytes = maxGroupBytes
    }

    /// Jobs waiting for the worker.
    var depth: Int { items.count }

    mutating func enqueue(_ item: Item) -> EnqueueAction {
        guard phase == .open else { return .rejected(item.job) }
        items.append(item)
        if let waiter = parked, let step = takeStep() {
            parked = nil
            return .wake(waiter, step)
        }
        return .queued
    }

    /// The worker asks for its next step; with nothing queued it parks `waiter`.
    mutating func next(parking waiter: Waiter) -> Next {
        precondition(parked == nil, "one worker takes from the queue")
        if let step = takeStep() { return .run(step) }
        if phase == .draining { return .finished }
        parked = waiter
        return .parked
    }

    /// Stops taking jobs. Returns the parked waiter, if any, which must be resumed with
    /// "finished" (the queue is empty whenever the worker is parked).
    mutating func close() -> Waiter? {
        phase = .draining
        defer { parked = nil }
        return parked
    }

    /// Removes the next step: the first job alone, or, when it is groupable, it and every
    /// later groupable job that fits the limits. Later commits may overtake queued
    /// non-commit jobs: none of them has been answered, so any order is a valid one.
    private mutating func takeStep() -> Step? {
        guard !items.isEmpty else { return nil }
        let first = items.removeFirst()
        guard groupCommit, first.groupable else { return .single(first.job) }
        var group = [first.job]
        var rows = first.rows
        var bytes = first.bytes
        var rest: [Item] = []
        rest.reserveCapacity(items.count)
        var full = false
        for item in items {
            if !full, item.groupable {
                if rows + item.rows <= maxGroupRows, bytes + item.bytes <= maxGroupBytes {
                    group.append(item.job)
                    rows += item.rows
                    bytes += item.bytes
                    continue
                }
                // Keep arrival order among commits: nothing after a commit that did not
                // fit joins this group.
                full = true
            }
            rest.append(item)
        }
        items = rest
        return .group(group)
    }
}
