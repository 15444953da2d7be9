/// The bookkeeping of a bounded pool of HTTP/1.1 connections, one request at a time on
/// each. Pure: it decides, its owner does the I/O (connecting, closing, resuming waiters).
///
/// `open` counts every connection that exists or is being opened (idle, leased,
/// connecting), and never exceeds `limit`. A lease is granted an idle connection, or the
/// right to open a new one, or waits in FIFO order for a release.
struct S3ConnectionPoolState<Connection, Waiter> {
    /// What a lease gets.
    enum Grant {
        case use(Connection)
        case connect
        case wait
        case shutDown
    }

    /// What to do after a release or a failed connect.
    enum Handoff {
        /// Nothing to do (the connection was parked, or there is no one to give a slot to).
        case none
        /// Close this connection; nobody needs it.
        case close(Connection)
        /// Give this connection to this waiter.
        case give(Connection, to: Waiter)
        /// This waiter may open a new connection (and, if set, close the old one first).
        case connect(for: Waiter, closing: Connection?)
    }

    let limit: Int
    private(set) var idle: [Connection] = []
    private(set) var open = 0
    private(set) var waiters: [(id: Int, waiter: Waiter)] = []
    private(set) var isShutDown = false

    init(limit: Int) { self.limit = max(1, limit) }

    /// Asks for a connection. `isUsable` weeds out idle connections that died while
    /// parked (their slot is freed). On `.wait`, `waiter` is queued under `id`.
    mutating func lease(id: Int, waiter: Waiter, isUsable: (Connection) -> Bool) -> (Grant, discarded: [Connection]) {
        guard !isShutDown else { return (.shutDown, []) }
        var discarded: [Connection] = []
        while let connection = idle.popLast() {
            if isUsable(connection) { return (.use(connection), discarded) }
            discarded.append(connection)
            open -= 1
        }
        if open < limit {
            open += 1
            return (.connect, discarded)
        }
        waiters.append((id: id, waiter: waiter))
        return (.wait, discarded)
    }

    /// Returns a leased connection; `reusable` says whether it may carry another request.
    mutating func release(_ connection: Connection, reusable: Bool) -> Handoff {
        if isShutDown {
            open -= 1
            return .close(connection)
        }
        if reusable {
            if !waiters.isEmpty { return .give(connection, to: waiters.removeFirst().waiter) }
            idle.append(connection)
            return .none
        }
        // The slot stays counted when it passes to a waiter, who opens a fresh connection.
        if !waiters.isEmpty { return .connect(for: waiters.removeFirst().waiter, closing: connection) }
        open -= 1
        return .close(connection)
    }

    /// A connect granted by `.connect` failed: its slot passes to the next waiter, who
    /// tries for itself, or is freed.
    mutating func connectFailed() -> Handoff {
        if !isShutDown, !waiters.isEmpty { return .connect(for: waiters.removeFirst().waiter, closing: nil) }
        open -= 1
        return .none
    }

    /// Removes a waiter whose deadline passed; nil if it was already served.
    mutating func removeWaiter(id: Int) -> Waiter? {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return waiters.remove(at: index).waiter
    }

    /// Refuses every later lease; returns the idle connections to close and the waiters
    /// to fail. Leased connections are closed as they are released.
    mutating func shutDown() -> (idle: [Connection], waiters: [Waiter]) {
        isShutDown = true
        let result = (idle: idle, waiters: waiters.map(\.waiter))
        open -= idle.count
        idle = []
        waiters = []
        return result
    }
}
