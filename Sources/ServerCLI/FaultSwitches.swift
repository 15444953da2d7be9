import ArgumentParser
import Logging
import PersistCore

/// The crash test's switches every server checks before serving: the failpoints
/// (`TXNWAL_FAILPOINTS`, `TXNWAL_FAILPOINT_SEED`) and the deliberate bugs
/// (`TXNWAL_TEST_BUGS`). deploy/README.md lists the names.
public enum FaultSwitches {
    /// Validates both variables, switches the named test bugs on, and logs at warning
    /// level every armed failpoint and every bug (naming each), so a server running with
    /// them cannot be mistaken for a normal one.
    ///
    /// - Throws: `ExitCode(2)` (a usage error) after logging the reason when either
    ///   variable is malformed or names an unknown point or bug; nothing is switched on.
    public static func prepare(logger: Logger) throws(ExitCode) {
        let failpoints: FailpointTable
        let bugs: Set<TestBug>
        do throws(FailpointConfigError) {
            failpoints = try Failpoints.validate()
        } catch {
            logger.critical("refusing to start: \(error)")
            throw ExitCode(2)
        }
        do throws(TestBugConfigError) {
            bugs = try TestBugs.enableFromEnvironment()
        } catch {
            logger.critical("refusing to start: \(error)")
            throw ExitCode(2)
        }
        if !failpoints.isEmpty {
            logger.warning(
                "failpoints armed: this process may kill itself on purpose",
                metadata: [
                    "failpoints": "\(failpoints)", "seed": "\(failpoints.seed)", "pid": "\(failpoints.processSalt)",
                ])
        }
        for bug in bugs.sorted(by: { $0.rawValue < $1.rawValue }) {
            logger.warning(
                "DELIBERATE BUG ENABLED (\(TestBugs.variable)): \(bug.rawValue): \(bug.summary); never use this server for real data")
        }
    }
}
