import ArgumentParser
import PersistCodec
import PersistCore

/// `txnctl shard ...`: the data shards the coordinator knows.
struct ShardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard",
        abstract: "Create, list, register and forget data shards.",
        discussion: """
            A shard takes commits once it is created and registered. Shards are named by name \
            or by id (s<uuid>).

            Example:
              txnctl shard create orders stock && txnctl shard register orders stock
            """,
        subcommands: [Create.self, List.self, Register.self, Forget.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create data shards (an existing name answers its existing shard).",
            discussion: """
                Prints each shard's name, id and whether it is registered. Names are 1-256 \
                letters, digits, '_', '-', '.', '/' or ':', and must not look like an id.

                Example:
                  txnctl shard create orders stock
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: ArgumentHelp("Names of the shards to create.", valueName: "name"))
        var names: [String]

        func validate() throws {
            guard !names.isEmpty else { throw ValidationError("name at least one shard to create") }
            for name in names {
                do { _ = try ShardNames.newName(name) } catch { throw ValidationError(error.message) }
            }
        }

        func run() async throws {
            let infos = try await global.withClient { client in
                var infos: [ShardInfo] = []
                for name in names { infos.append(try await client.createShard(try ShardNames.newName(name))) }
                return infos
            }
            try Terminal.print(try Rendering.shards(infos, json: global.json))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the data shards: name, id, and whether registered at the latest time.",
            discussion: """
                Example:
                  txnctl shard list --json
                """)

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let infos = try await global.withClient { try await $0.listShards() }
            try Terminal.print(try Rendering.shards(infos, json: global.json))
        }
    }

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register shards with the txns shard, so they take commits.",
            discussion: """
                Prints the registration time. With --at, registers at that time (it must not \
                be closed yet); otherwise the coordinator picks one. Exit status 5 means the \
                registration may or may not have happened: run `txnctl shard list`.

                Example:
                  txnctl shard register orders stock
                """)

        @OptionGroup var global: GlobalOptions

        @Option(
            name: .customLong("at"),
            help: ArgumentHelp("Register at this timestamp instead of one the coordinator picks.", valueName: "ts"))
        var at: Timestamp?

        @Argument(help: ArgumentHelp("Shards to register, by name or id.", valueName: "shard"))
        var shards: [String]

        func validate() throws {
            do { _ = try ShardNames.refs(shards) } catch { throw ValidationError(error.message) }
        }

        func run() async throws {
            let refs = try ShardNames.refs(shards)
            let ts = try await global.withClient { try await $0.register(refs, at: at) }
            try Terminal.print(try Rendering.done("registered", at: ts, shards: refs, json: global.json))
        }
    }

    struct Forget: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget shards: they stop taking commits.",
            discussion: """
                Prints the time it took effect. With --at, forgets at that time (it must not be \
                closed yet); otherwise the coordinator picks one.

                Example:
                  txnctl shard forget stock
                """)

        @OptionGroup var global: GlobalOptions

        @Option(
            name: .customLong("at"),
            help: ArgumentHelp("Forget at this timestamp instead of one the coordinator picks.", valueName: "ts"))
        var at: Timestamp?

        @Argument(help: ArgumentHelp("Shards to forget, by name or id.", valueName: "shard"))
        var shards: [String]

        func validate() throws {
            do { _ = try ShardNames.refs(shards) } catch { throw ValidationError(error.message) }
        }

        func run() async throws {
            let refs = try ShardNames.refs(shards)
            let ts = try await global.withClient { try await $0.forget(refs, at: at) }
            try Terminal.print(try Rendering.done("forgot", at: ts, shards: refs, json: global.json))
        }
    }
}
