import PersistRPC

/// A `txn-coordinator` server process on embedded storage (FileBlob and LogConsensus in
/// a directory of its own), started for the coordinator benchmark.
enum CoordinatorProcess {
    /// The `txn-coordinator` executable built next to this one.
    static func executable() throws(BenchError) -> String {
        try System.siblingExecutable("txn-coordinator", neededBy: "the coordinator benchmark")
    }

    /// Starts a coordinator whose storage lives in `directory/data`, listening on a Unix
    /// socket (or on 127.0.0.1 with a port of the kernel's choosing when `tcp`), and
    /// waits until it is ready.
    static func start(directory: String, groupCommit: Bool, tcp: Bool) throws(BenchError) -> BenchServer {
        try BenchServer.start(
            name: "the txn-coordinator", executable: try executable(),
            arguments: ["--data-dir", "\(directory)/data"] + (groupCommit ? [] : ["--no-group-commit"]),
            directory: directory, unix: !tcp, socketName: "rpc.sock", listener: "rpc")
    }
}
