import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Logging
import Queue

struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Define warm pools: ready clusters kept ahead of demand and handed out in one statement.",
        discussion: """
            A pool is a cluster spec (the same options as `client request`, without the
            lifetime) and sizes. `worker janitor` keeps `ready + building ≥ target` by queueing
            pool clusters that `worker run` provisions; the target follows the requests that
            matched the pool within the last --cooldown, between --min and --max (up at once on
            a burst, down once the burst is older than the cooldown). A `client request` whose
            spec matches a pool takes one of its ready, health-checked clusters at once; its
            lifetime starts then. Pool clusters older than --max-warm-age are retired and
            replaced; changing the spec (`pool set` again) replaces the clusters of the old one.

              worker pool set ci-small --nodes 1 --min 2 --max 6
              worker pool list
              worker pool pause ci-small      stop refilling; ready clusters are still handed out
              worker pool resume ci-small
              worker pool delete ci-small     its unclaimed clusters are torn down
            """,
        subcommands: [Set.self, List.self, Pause.self, Resume.self, Delete.self]
    )

    /// Runs `body` with a store on the environment's database; a refusal exits 1 with its message.
    static func withStore<T: Sendable>(
        _ common: CommonOptions, _ body: @escaping @Sendable (ClusterStore) async throws -> T
    ) async throws -> T {
        let logger = common.makeLogger()
        do {
            let settings = try DatabaseSettings.fromEnvironment()
            return try await settings.withClient(maximumConnections: 1, logger: logger) { client in
                try await body(ClusterStore(client: client, logger: logger))
            }
        } catch let error as QueueError {
            fail(error.message, code: error.code == .invalidInput ? 64 : 1)
        } catch {
            fail(DatabaseErrorDescription.describe(error))
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a pool, or change its spec or sizes.",
            discussion: ClusterShapeOptions.splitHelp)

        @Argument(help: "The pool's name: lowercase letters, digits and dashes.") var name: String
        @OptionGroup var shape: ClusterShapeOptions
        @Option(help: "Ready clusters kept at least.") var min: Int = 1
        @Option(help: "Ready clusters kept at most, however high demand goes (0 to 50).") var max: Int?
        @Option(help: "Build pool clusters in this region only (default: any worker's).") var region: String?
        @Option(help: "Retire a pool cluster nobody took after this long (e.g. 6h; at least 5m).") var maxWarmAge:
            String?
        @Option(help: "How long a burst of demand keeps the target up (e.g. 15m).") var cooldown: String?
        @OptionGroup var common: CommonOptions

        func validate() throws {
            guard self.min >= 0, (self.max ?? self.min) >= self.min, (self.max ?? 0) <= 50 else {
                throw ValidationError("sizes need 0 <= --min <= --max <= 50")
            }
            for (option, value) in [("--max-warm-age", self.maxWarmAge), ("--cooldown", self.cooldown)] {
                if let value, ClusterRequest.parseDuration(value) == nil {
                    throw ValidationError("\(option) must be a duration like 6h or 15m")
                }
            }
        }

        func run() async throws {
            // pool_set keeps the spec without its lifetime (pool_spec), as requests are matched.
            let request = try self.shape.request(lifetimeSeconds: 0)
            let json = String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
            let (name, region, min, max) = (self.name, self.region, self.min, self.max ?? Swift.max(self.min, 1))
            let warm = self.maxWarmAge.flatMap(ClusterRequest.parseDuration)
            let cooldown = self.cooldown.flatMap(ClusterRequest.parseDuration)
            let hash = try await PoolCommand.withStore(self.common) { store in
                try await store.setPool(
                    name: name, spec: json, region: region, min: min, max: max, maxWarmAge: warm, cooldown: cooldown)
            }
            let nodes = request.masters + request.agents + request.publicAgents
            print(
                "pool \(name): \(nodes) nodes of \(request.instanceType), min \(min), max \(max) "
                    + "(spec \(hash.prefix(12)))")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pools with their target and ready, building and handed-out clusters.")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let pools = try await PoolCommand.withStore(self.common) { try await $0.pools() }
            if self.json {
                let objects: [[String: Any]] = pools.map {
                    [
                        "name": $0.name, "paused": $0.paused, "min": $0.minReady, "max": $0.maxReady,
                        "target": $0.target,
                        "ready": $0.ready, "building": $0.building, "handed_out": $0.handedOut,
                        "region": $0.region ?? NSNull(),
                        "instance_type": $0.instanceType, "nodes": $0.nodeCount,
                        "max_warm_age_seconds": $0.maxWarmAgeSeconds,
                        "cooldown_seconds": $0.cooldownSeconds, "spec_hash": $0.specHash,
                    ]
                }
                let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            guard !pools.isEmpty else {
                print("no pools (create one with `worker pool set NAME --nodes 3 --min 1 --max 4`)")
                return
            }
            print("NAME                 STATE    NODES TYPE         MIN MAX TARGET READY BUILDING OUT  SPEC")
            for pool in pools {
                print(
                    String(
                        format: "%-20@ %-8@ %5d %-12@ %3d %3d %6d %5d %8d %4d %@", pool.name as NSString,
                        (pool.paused ? "paused" : "active") as NSString, pool.nodeCount, pool.instanceType as NSString,
                        pool.minReady, pool.maxReady, pool.target, pool.ready, pool.building, pool.handedOut,
                        pool.specHash as NSString))
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop refilling a pool; its ready clusters are still handed out.")
        @Argument(help: "The pool's name.") var name: String
        @OptionGroup var common: CommonOptions
        func run() async throws { try await PoolCommand.setPaused(self.name, true, self.common) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Refill a paused pool again.")
        @Argument(help: "The pool's name.") var name: String
        @OptionGroup var common: CommonOptions
        func run() async throws { try await PoolCommand.setPaused(self.name, false, self.common) }
    }

    static func setPaused(_ name: String, _ paused: Bool, _ common: CommonOptions) async throws {
        guard try await Self.withStore(common, { try await $0.pausePool(name: name, paused: paused) }) else {
            fail("no pool named \(name) (see `worker pool list`)")
        }
        print("pool \(name) \(paused ? "paused" : "resumed")")
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a pool; its unclaimed clusters are torn down.")
        @Argument(help: "The pool's name.") var name: String
        @OptionGroup var common: CommonOptions
        func run() async throws {
            let name = self.name
            let count = try await PoolCommand.withStore(self.common) { try await $0.deletePool(name: name) }
            print("pool \(name) deleted; \(count) unclaimed clusters are being torn down")
        }
    }
}
