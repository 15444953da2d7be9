#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PersistCodec
import PersistConformance
import PersistCore
import Testing
@testable import TxnCtl

// MARK: Pure parsing

@Suite struct TxnctlRowSyntaxTests {
    func row(_ text: String) throws -> ShardRow { try RowSyntax.parse(text) }

    @Test func plainForms() throws {
        #expect(try row("orders:o1=v1") == ShardRow(shard: .name("orders"), row: RowWrite(key: b("o1"), value: b("v1"))))
        #expect(try row("stock:widget:-1") == ShardRow(shard: .name("stock"), row: RowWrite(key: b("widget"), diff: -1)))
        #expect(
            try row("stock:widget=blue:+3")
                == ShardRow(shard: .name("stock"), row: RowWrite(key: b("widget"), value: b("blue"), diff: 3)))
        #expect(try row("orders:o1=") == ShardRow(shard: .name("orders"), row: RowWrite(key: b("o1"))))
        #expect(try row("orders:o1=a=b").row.value == b("a=b"))
        #expect(try row("orders:ключ=значение").row == RowWrite(key: b("ключ"), value: b("значение")))
        let id = ShardID.random()
        #expect(try row("\(id):k").shard == .id(id))
        #expect(try row("stock:k").shard == .name("stock"), "a name starting with s is not an id")
    }

    @Test func escapes() throws {
        let r = try row(#"my\:shard:k\=1=12\:30\\x:2"#)
        #expect(r == ShardRow(shard: .name("my:shard"), row: RowWrite(key: b("k=1"), value: b(#"12:30\x"#), diff: 2)))
        #expect(try row(#"orders:a\:b:5"#).row == RowWrite(key: b("a:b"), diff: 5))
    }

    @Test func mistakesAreUsageErrors() {
        let cases: [(String, String)] = [
            ("orders", "no ':' after the shard"),
            (":k", "the shard is empty"),
            ("orders:k:x", "not a nonzero integer"),
            ("orders:k:0", "not a nonzero integer"),
            ("orders:k=12:30:1", "more than one ':'"),
            ("orders:k:99999999999999999999", "not a nonzero integer"),
            (#"orders:k\"#, "lone backslash"),
            (#"orders:k\n"#, "unknown escape"),
            ("bad name!:k", "neither a shard id"),
        ]
        for (text, expected) in cases {
            #expect(throws: UsageError.self, "\(text)") { try RowSyntax.parse(text) }
            do {
                _ = try RowSyntax.parse(text)
            } catch {
                #expect(error.message.contains(expected), "\(text): \(error.message)")
            }
        }
    }

    @Test func rowsGroupIntoOneTransactionInOrder() throws {
        let rows = try ["orders:a", "stock:w:-1", "orders:b=2"].map(RowSyntax.parse)
        #expect(
            ShardNames.group(rows) == [
                ShardWrites(shard: .name("orders"), rows: [RowWrite(key: b("a")), RowWrite(key: b("b"), value: b("2"))]),
                ShardWrites(shard: .name("stock"), rows: [RowWrite(key: b("w"), diff: -1)]),
            ])
    }

    @Test func shardNames() throws {
        let id = ShardID.random()
        #expect(try ShardNames.refs(["orders", "\(id)"]) == [.name("orders"), .id(id)])
        #expect(throws: UsageError.self) { try ShardNames.refs([]) }
        #expect(throws: UsageError.self) { try ShardNames.ref("has space") }
        #expect(throws: UsageError.self) { try ShardNames.newName("\(id)") }
        #expect(try ShardNames.newName("orders/eu:1") == "orders/eu:1")
    }
}

@Suite struct TxnctlJSONInputTests {
    @Test func linesBecomeRows() throws {
        let text = """
            {"shard": "orders", "key": "o1", "value": "v1", "diff": 1}

            {"shard":"stock","key_b64":"AAE=","value_b64":"/w==","diff":-2}
              {"shard":"orders","key":"o2"}  \r
            """
        let rows = try JSONRowInput.parse(Data(text.utf8), source: "stdin")
        #expect(
            rows == [
                ShardRow(shard: .name("orders"), row: RowWrite(key: b("o1"), value: b("v1"))),
                ShardRow(shard: .name("stock"), row: RowWrite(key: [0, 1], value: [0xff], diff: -2)),
                ShardRow(shard: .name("orders"), row: RowWrite(key: b("o2"))),
            ])
        #expect(try JSONRowInput.parse(Data("\n\n".utf8), source: "stdin").isEmpty)
    }

    @Test func mistakesNameTheLineAndField() {
        let ok = #"{"shard":"orders","key":"a"}"#
        let cases: [(String, String)] = [
            (#"{"shard":"orders"}"#, #"stdin line 1: "key" or "key_b64" is missing"#),
            (#"{"key":"a"}"#, #"line 1: "shard" is missing"#),
            (#"{"shard":"orders","key":"a","key_b64":"AA=="}"#, "not both"),
            (#"{"shard":"orders","key":"a","colour":"red"}"#, #"unknown field "colour""#),
            (#"{"shard":"orders","key":"a","diff":1.5}"#, #""diff" must be a nonzero integer"#),
            (#"{"shard":"orders","key":"a","diff":true}"#, #""diff" must be a nonzero integer"#),
            (#"{"shard":"orders","key":"a","diff":0}"#, #""diff" must be a nonzero integer"#),
            (#"{"shard":"orders","key":5}"#, #""key" must be a string"#),
            (#"{"shard":"orders","key_b64":"!!"}"#, "not valid base64"),
            (#"{"shard":"no spaces please","key":"a"}"#, "neither a shard id"),
            ("[1, 2]", "line 1: expected a JSON object"),
            (#"{"shard":"#, "line 1: not valid JSON"),
            (ok + "\n" + #"{"shard":"orders"}"#, "stdin line 2:"),
        ]
        for (text, expected) in cases {
            do {
                let rows = try JSONRowInput.parse(Data(text.utf8), source: "stdin")
                Issue.record("\(text) parsed as \(rows)")
            } catch {
                #expect(error.message.contains(expected), "\(text): \(error.message)")
            }
        }
    }
}

@Suite struct TxnctlOptionTests {
    @Test func coordinatorAddresses() throws {
        #expect(try CoordinatorAddress.parse("127.0.0.1:7300") == .tcp(host: "127.0.0.1", port: 7300))
        #expect(try CoordinatorAddress.parse("coord.example:1") == .tcp(host: "coord.example", port: 1))
        #expect(try CoordinatorAddress.parse("[::1]:7300") == .tcp(host: "::1", port: 7300))
        #expect(try CoordinatorAddress.parse("unix:/srv/txn.sock") == .unix(path: "/srv/txn.sock"))
        for bad in ["", "nohost", ":7300", "h:0", "h:70000", "h:x", "::1:7300", "[::1]", "unix:"] {
            #expect(throws: UsageError.self, "\(bad)") { try CoordinatorAddress.parse(bad) }
        }
        #expect(try CoordinatorAddress.resolve(flag: nil, environment: [:]) == .tcp(host: "127.0.0.1", port: 7300))
        #expect(
            try CoordinatorAddress.resolve(flag: nil, environment: ["TXNCTL_COORDINATOR": "unix:/a"]) == .unix(path: "/a"))
        #expect(
            try CoordinatorAddress.resolve(flag: "h:1", environment: ["TXNCTL_COORDINATOR": "unix:/a"])
                == .tcp(host: "h", port: 1))
        #expect(throws: UsageError.self) { try CoordinatorAddress.resolve(flag: nil, environment: ["TXNCTL_COORDINATOR": "x"]) }
    }

    @Test func globalOptionsBeforeTheCommandMoveAfterIt() {
        #expect(
            GlobalOptions.hoisted(["--json", "--coordinator", "h:1", "status"]) == ["status", "--json", "--coordinator", "h:1"])
        #expect(GlobalOptions.hoisted(["--timeout=5", "shard", "list"]) == ["shard", "list", "--timeout=5"])
        #expect(GlobalOptions.hoisted(["status", "--json"]) == ["status", "--json"])
        #expect(GlobalOptions.hoisted(["--help"]) == ["--help"])
        #expect(GlobalOptions.hoisted(["--json", "read", "x", "--", "y"]) == ["read", "x", "--json", "--", "y"])
    }

    @Test func commandLinesParse() throws {
        let commit = try #require(
            try TxnCtlCommand.parseAsRoot(["commit", "--at", "9", "--row", "a:k", "--row", "b:j:-1", "--json"])
                as? CommitCommand)
        #expect(commit.at == 9 && commit.rows == ["a:k", "b:j:-1"] && commit.global.json)
        #expect(throws: (any Error).self) { try TxnCtlCommand.parseAsRoot(["commit"]) }
        #expect(throws: (any Error).self) { try TxnCtlCommand.parseAsRoot(["commit", "--row", "nocolon"]) }
        #expect(throws: (any Error).self) { try TxnCtlCommand.parseAsRoot(["status", "--timeout", "0"]) }
        #expect(throws: (any Error).self) { try TxnCtlCommand.parseAsRoot(["subscribe", "x", "--limit-updates", "0"]) }
        let subscribe = try #require(
            try TxnCtlCommand.parseAsRoot(["subscribe", "orders", "--from", "5", "--limit-updates", "3"]) as? SubscribeCommand)
        #expect(subscribe.from == 5 && subscribe.limitUpdates == 3 && subscribe.shard == "orders")
    }
}

// MARK: Pure output and errors

@Suite struct TxnctlRenderingTests {
    @Test func jsonLinesParseBack() throws {
        let rows = [
            Update(key: b("o1"), value: b("v1"), time: 1_700_000_000_000, diff: 1),
            Update(key: [0xff, 0], value: [], time: 7, diff: -2),
        ]
        let lines = try Rendering.snapshot(shard: .name("orders"), asOf: 1_700_000_000_001, rows: rows, json: true)
        let objects = try lines.map(object)
        #expect(objects.count == 3)
        #expect(objects[0]["type"] as? String == "snapshot" && objects[0]["shard"] as? String == "orders")
        #expect(int(objects[0]["as_of"]) == 1_700_000_000_001 && int(objects[0]["rows"]) == 2)
        #expect(objects[1]["type"] as? String == "row" && objects[1]["key"] as? String == "o1")
        #expect(objects[1]["value"] as? String == "v1" && int(objects[1]["time"]) == 1_700_000_000_000)
        #expect(int(objects[1]["diff"]) == 1)
        #expect(objects[2]["key_b64"] as? String == "/wA=" && objects[2]["key"] == nil)
        #expect(objects[2]["value"] as? String == "" && int(objects[2]["diff"]) == -2)

        let update = try object(try #require(try Rendering.updates([rows[0]], json: true).first))
        #expect(update["type"] as? String == "update" && update["key"] as? String == "o1")
        let progress = try object(try #require(try Rendering.progress(42, json: true).first))
        #expect(progress["type"] as? String == "progress" && int(progress["upper"]) == 42)

        let id = ShardID.random()
        let shard = try object(
            try #require(try Rendering.shards([ShardInfo(name: "orders", id: id, registered: true)], json: true).first))
        #expect(shard["name"] as? String == "orders" && shard["id"] as? String == "\(id)")
        #expect(shard["registered"] as? Bool == true)

        let writes = [ShardWrites(shard: .name("a"), rows: [RowWrite(key: [1]), RowWrite(key: [2])])]
        let committed = try object(try #require(try Rendering.committed(at: 12, writes: writes, json: true).first))
        #expect(int(committed["committed_at"]) == 12 && int(committed["shards"]) == 1 && int(committed["rows"]) == 2)
        let done = try object(try #require(try Rendering.done("registered", at: 5, shards: [.name("a")], json: true).first))
        #expect(done["op"] as? String == "registered" && int(done["at"]) == 5 && done["shards"] as? [String] == ["a"])

        let status = try object(
            try #require(
                try Rendering.status(
                    CoordinatorStatus(txnsShard: id, upper: 10, since: 3, shards: 4, registered: 2, unapplied: 1),
                    json: true
                ).first))
        #expect(status["txns_shard"] as? String == "\(id)" && int(status["upper"]) == 10 && int(status["since"]) == 3)
        #expect(int(status["shards"]) == 4 && int(status["registered"]) == 2 && int(status["unapplied"]) == 1)
    }

    @Test func textForPeople() throws {
        let rows = [
            Update(key: b("o1"), value: b("a value"), time: 100, diff: 1),
            Update(key: b("order-22"), value: b("v"), time: 101, diff: -3),
        ]
        #expect(
            try Rendering.snapshot(shard: .name("orders"), asOf: 101, rows: rows, json: false) == [
                "orders as of 101: 2 rows",
                "KEY       VALUE      DIFF  TIME",
                #"o1        "a value"  1     100"#,
                "order-22  v          -3    101",
            ])
        #expect(try Rendering.snapshot(shard: .name("e"), asOf: 1, rows: [], json: false) == ["e as of 1: 0 rows"])
        #expect(try Rendering.committed(at: 77, writes: [], json: false) == ["77"])
        #expect(try Rendering.updates([rows[1]], json: false) == ["update time=101 key=order-22 value=v diff=-3"])
        #expect(try Rendering.progress(9, json: false) == ["progress 9"])
        #expect(try Rendering.done("forgot", at: 3, shards: [.name("a"), .name("b")], json: false) == ["forgot a, b at 3"])
        #expect(try Rendering.shards([], json: false) == ["(no shards)"])
        let txns = try ShardID(parsing: "s7a5a0000-0000-4000-8000-000000000001")
        let status = CoordinatorStatus(txnsShard: txns, upper: 10, since: 3, shards: 4, registered: 2, unapplied: 0)
        #expect(
            try Rendering.status(status, json: false) == [
                "txns shard:  s7a5a0000-0000-4000-8000-000000000001",
                "upper:       10  (every commit so far is below this)",
                "since:       3  (reads below this are no longer possible)",
                "shards:      4  (2 registered)",
                "unapplied:   0  (committed, not yet applied to their shards)",
            ])
    }

    @Test func bytesDisplay() {
        #expect(Rendering.display(b("o1")) == "o1")
        #expect(Rendering.display(b("ключ")) == "ключ")
        #expect(Rendering.display([]) == #""""#)
        #expect(Rendering.display(b("a b")) == #""a b""#)
        #expect(Rendering.display(b("tab\t")) == #""tab\t""#)
        #expect(Rendering.display(b(#"q"uote"#)) == #""q\"uote""#)
        #expect(Rendering.display(b("base64:AA==")) == #""base64:AA==""#)
        #expect(Rendering.display([0xff, 0x00]) == "base64:/wA=")
    }

    @Test func failuresMapToDistinctExitStatuses() {
        #expect(Set(ExitStatus.allCases.map(\.rawValue)).count == ExitStatus.allCases.count)
        let closed = FailureReport.classify(CoordinatorError(.timestampClosed, "timestamp 1 is already closed", nextUsable: 42))
        #expect(closed.status == .refused && closed.status.rawValue == 3)
        #expect(closed.lines == ["error: timestamp_closed: timestamp 1 is already closed (next usable timestamp: 42)"])
        #expect(FailureReport.classify(CoordinatorError(.unknownShard, "no")).lines == ["error: unknown_shard: no"])
        #expect(FailureReport.classify(CoordinatorError(.storage, "commit failed")).status == .inDoubt)
        let unreachable = FailureReport.classify(StorageError.determinate(.unavailable, "cannot connect"))
        #expect(unreachable.status == .unreachable && unreachable.status.rawValue == 4)
        #expect(unreachable.lines.first == "error: unavailable: cannot connect")
        let inDoubt = FailureReport.classify(StorageError.indeterminate(.timeout, "no answer"))
        #expect(inDoubt.status == .inDoubt && inDoubt.lines.last == FailureReport.inDoubtNote)
        #expect(FailureReport.classify(StorageError.determinate(.rejected, "bad token")).status == .refused)
        #expect(FailureReport.classify(UsageError("bad")) == FailureReport(status: .usage, lines: ["error: bad"]))
        #expect(FailureReport.classify(CancellationError()).status == .failure)
    }

    func object(_ line: String) throws -> [String: Any] {
        #expect(!line.contains("\n"))
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
    }
}

// MARK: End to end

/// `txnctl` against a real `txn-coordinator` process (embedded storage, a token), every
/// command through the binary, its output and exit status.
@Suite struct TxnctlProcessTests {
    struct Ctl {
        let executable: String
        let address: String
        let tokenFile: String
        let scratch: String

        /// Runs txnctl with `arguments` followed by the connection options.
        func run(
            _ arguments: [String], standardInput: String? = nil, connection: [String]? = nil,
            environment: [String: String]? = nil
        ) async throws -> ChildProgram.Outcome {
            try await ChildProgram.run(
                executable: executable,
                arguments: arguments + (connection ?? ["--coordinator", address, "--token-file", tokenFile, "--timeout", "120"]),
                environment: environment, standardInput: standardInput, separateStandardError: true,
                timeout: .seconds(300))
        }

        /// Runs txnctl and expects exit status 0 and a quiet stderr; returns stdout.
        func ok(_ arguments: [String], standardInput: String? = nil, sourceLocation: SourceLocation = #_sourceLocation)
            async throws -> String
        {
            let outcome = try await run(arguments, standardInput: standardInput)
            #expect(outcome.status == 0, "\(arguments): \(outcome.output)\(outcome.errorOutput)", sourceLocation: sourceLocation)
            #expect(outcome.errorOutput.isEmpty, "\(arguments): \(outcome.errorOutput)", sourceLocation: sourceLocation)
            return outcome.output
        }

        func file(_ name: String, _ text: String) throws -> String {
            let path = scratch + "/" + name
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
    }

    @Test func everyCommandEndToEnd() async throws {
        let scratch = NSTemporaryDirectory() + "txnctl-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let tokenFile = scratch + "/token"
        try Data("txnctl-test-token\n".utf8).write(to: URL(fileURLWithPath: tokenFile))
        let server = try await SpawnedServer.launch(
            executable: try SpawnedServer.builtExecutable("txn-coordinator"),
            arguments: [
                "--data-dir", scratch + "/data", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--log-level",
                "warning", "--token-file", tokenFile,
            ],
            readyFile: scratch + "/ready", logPath: scratch + "/coordinator.log", timeout: .seconds(120))
        do {
            let ctl = Ctl(
                executable: try SpawnedServer.builtExecutable("txnctl"), address: try server.address("rpc"),
                tokenFile: tokenFile, scratch: scratch)
            try await drive(ctl)
        } catch {
            Issue.record("\(error)\ncoordinator log:\n\(server.logTail())")
        }
        server.signal(SIGTERM)
        if await server.exitStatus(within: .seconds(120)) == nil { await server.killed() }
    }

    func drive(_ ctl: Ctl) async throws {
        // Shards: create (JSON), list (text), register (global option before the command).
        let created = try lines(try await ctl.ok(["shard", "create", "orders", "stock", "events", "--json"]))
        #expect(created.map { $0["name"] as? String } == ["orders", "stock", "events"])
        #expect(created.allSatisfy { $0["registered"] as? Bool == false })
        let ordersIDText = try #require(created.first?["id"] as? String)
        let ordersID = try #require(ShardID(ordersIDText))
        let listed = try await ctl.ok(["shard", "list"])
        #expect(listed.hasPrefix("NAME") && listed.contains("orders") && listed.contains("\(ordersID)"), "\(listed)")
        let registered = try lines(try await ctl.ok(["--json", "shard", "register", "orders", "stock", "events"]))
        #expect(registered.count == 1 && registered.first?["op"] as? String == "registered")
        #expect(try lines(try await ctl.ok(["shard", "list", "--json"])).allSatisfy { $0["registered"] as? Bool == true })

        // Commit from flags: the text output is the timestamp alone.
        let t1Text = try await ctl.ok(["commit", "--row", "orders:o1=v1", "--row", "stock:widget:-1", "--row", "orders:o2=v2"])
        let t1 = try #require(Timestamp(t1Text.trimmingCharacters(in: .whitespacesAndNewlines)), "\(t1Text)")

        // Commit from stdin (JSON lines, binary key) and from --input (by shard id).
        let stdinRows = try ctl.file(
            "rows.jsonl",
            """
            {"shard": "orders", "key": "o3", "value": "v3"}
            {"shard": "stock", "key_b64": "AP8=", "value_b64": "/w==", "diff": 2}
            """)
        let committed = try lines(try await ctl.ok(["commit", "--stdin", "--json"], standardInput: stdinRows))
        let t2 = try #require(int(committed.first?["committed_at"]).map { Timestamp($0) })
        #expect(t2 > t1 && int(committed.first?["rows"]) == 2 && int(committed.first?["shards"]) == 2)
        let retract = try ctl.file("retract.jsonl", #"{"shard": "\#(ordersID)", "key": "o1", "value": "v1", "diff": -1}"# + "\n")
        let t3Text = try await ctl.ok(["commit", "--input", retract])
        let t3 = try #require(Timestamp(t3Text.trimmingCharacters(in: .whitespacesAndNewlines)), "\(t3Text)")
        #expect(t3 > t2)

        // Read: JSON at t2, text at the latest time by id, binary rows as key_b64.
        let atT2 = try lines(try await ctl.ok(["read", "orders", "--as-of", "\(t2)", "--json"]))
        #expect(atT2.first?["type"] as? String == "snapshot" && int(atT2.first?["as_of"]) == Int(t2))
        #expect(Set(atT2.dropFirst().compactMap { $0["key"] as? String }) == ["o1", "o2", "o3"])
        let latest = try await ctl.ok(["read", "\(ordersID)"])
        #expect(latest.contains("KEY") && latest.contains("o2") && latest.contains("o3") && !latest.contains("o1"), "\(latest)")
        let stock = try lines(try await ctl.ok(["read", "stock", "--as-of", "\(t2)", "--json"])).dropFirst()
        #expect(stock.contains { $0["key_b64"] as? String == "AP8=" && $0["value_b64"] as? String == "/w==" && int($0["diff"]) == 2 })
        #expect(stock.contains { $0["key"] as? String == "widget" && int($0["diff"]) == -1 })

        // Subscribe from t1: the contents then (o1, o2) are the first two updates.
        let fromT1 = try lines(try await ctl.ok(["subscribe", "orders", "--from", "\(t1)", "--limit-updates", "2", "--json"]))
        let updates = fromT1.filter { $0["type"] as? String == "update" }
        #expect(Set(updates.compactMap { $0["key"] as? String }) == ["o1", "o2"], "\(fromT1)")

        // Subscribe live: an update committed while it runs ends it (whichever starts first).
        let status = try lines(try await ctl.ok(["status", "--json"]))
        let upper = try #require(int(status.first?["upper"]))
        #expect(upper > Int(t3) && int(status.first?["shards"]) == 3 && int(status.first?["registered"]) == 3)
        async let live = ctl.run(["subscribe", "events", "--from", "\(upper - 1)", "--limit-updates", "1"])
        _ = try await ctl.ok(["commit", "--row", "events:e1=hello world"])
        let liveOutcome = try await live
        #expect(liveOutcome.status == 0, "\(liveOutcome.output)\(liveOutcome.errorOutput)")
        #expect(liveOutcome.output.contains(#"key=e1 value="hello world" diff=1"#), "\(liveOutcome.output)")

        // Ctrl-C ends a subscription cleanly (exit 0) once it has started printing.
        let script = """
            "$0" subscribe orders "$@" > "$TXNCTL_OUT" 2>&1 &
            pid=$!
            while ! grep -q progress "$TXNCTL_OUT"; do
              kill -0 $pid 2>/dev/null || break
              sleep 0.05
            done
            kill -INT $pid
            wait $pid
            """
        var environment = ProcessInfo.processInfo.environment
        environment["TXNCTL_OUT"] = ctl.scratch + "/interrupted.out"
        let interrupted = try await ChildProgram.run(
            executable: "/bin/sh",
            arguments: ["-c", script, ctl.executable, "--coordinator", ctl.address, "--token-file", ctl.tokenFile],
            environment: environment, timeout: .seconds(300))
        let interruptedOutput = (try? String(contentsOfFile: ctl.scratch + "/interrupted.out", encoding: .utf8)) ?? ""
        #expect(interrupted.status == 0, "\(interrupted.output)\(interruptedOutput)")
        #expect(interruptedOutput.contains("progress"), "\(interruptedOutput)")

        // The coordinator's refusals: exit 3 with the code on stderr.
        let closed = try await ctl.run(["commit", "--at", "1", "--row", "orders:late"])
        #expect(closed.status == 3 && closed.output.isEmpty, "\(closed.output)\(closed.errorOutput)")
        #expect(closed.errorOutput.hasPrefix("error: timestamp_closed: "), "\(closed.errorOutput)")
        #expect(closed.errorOutput.contains("next usable timestamp: "), "\(closed.errorOutput)")
        let unknown = try await ctl.run(["read", "nosuch"])
        #expect(unknown.status == 3 && unknown.errorOutput.hasPrefix("error: unknown_shard: "), "\(unknown.errorOutput)")
        let forgot = try lines(try await ctl.ok(["shard", "forget", "events", "--json"]))
        #expect(forgot.first?["op"] as? String == "forgot" && int(forgot.first?["at"]) != nil)
        let notRegistered = try await ctl.run(["commit", "--row", "events:e2"])
        #expect(notRegistered.status == 3 && notRegistered.errorOutput.hasPrefix("error: not_registered: "), "\(notRegistered.errorOutput)")
        let noToken = try await ctl.run(["status"], connection: ["--coordinator", ctl.address, "--timeout", "120"])
        #expect(noToken.status == 3, "\(noToken.output)\(noToken.errorOutput)")

        // Usage mistakes: exit 2, nothing sent.
        let badRow = try await ctl.run(["commit", "--row", "nocolon"])
        #expect(badRow.status == 2 && badRow.errorOutput.contains("no ':' after the shard"), "\(badRow.errorOutput)")
        let nothing = try await ctl.run(["commit"])
        #expect(nothing.status == 2, "\(nothing.errorOutput)")
        let badLines = try await ctl.run(["commit", "--stdin"], standardInput: try ctl.file("bad.jsonl", "{\"shard\": 1}\n"))
        #expect(badLines.status == 2 && badLines.errorOutput.contains("stdin line 1: "), "\(badLines.errorOutput)")

        // Unreachable: exit 4. The address from the environment.
        let unreachable = try await ctl.run(
            ["status"], connection: ["--coordinator", "unix:\(ctl.scratch)/absent.sock", "--timeout", "120"])
        #expect(unreachable.status == 4, "\(unreachable.output)\(unreachable.errorOutput)")
        var withAddress = ProcessInfo.processInfo.environment
        withAddress["TXNCTL_COORDINATOR"] = ctl.address
        let fromEnvironment = try await ctl.run(
            ["status"], connection: ["--token-file", ctl.tokenFile, "--timeout", "120"], environment: withAddress)
        #expect(fromEnvironment.status == 0 && fromEnvironment.output.contains("upper:"), "\(fromEnvironment.errorOutput)")

        // Compact, and help that warns about in-doubt commits.
        let compacted = try lines(try await ctl.ok(["compact", "--since", "\(t1)", "--json"]))
        #expect(compacted.first?["op"] as? String == "compacted")
        let help = try await ctl.run(["commit", "--help"], connection: [])
        let helpText = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.status == 0 && helpText.contains("The commit MAY have happened") && helpText.contains("--row"), "\(helpText)")
    }

    /// Every stdout line as a JSON object.
    func lines(_ output: String) throws -> [[String: Any]] {
        try output.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
    }
}

private func b(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A JSON number as an Int (JSONSerialization gives Int or NSNumber depending on platform).
private func int(_ value: Any?) -> Int? {
    if let i = value as? Int { return i }
    return (value as? NSNumber)?.intValue
}
