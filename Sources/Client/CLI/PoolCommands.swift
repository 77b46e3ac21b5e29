import ArgumentParser
import CommandOptions
import Foundation
import Queue

/// `--pool-name` and `--explain-pool`, for `client request` and `client run`.
struct PoolNameOptions: ParsableArguments {
    @Option(
        help: """
            Take the cluster from this warm pool (`client pools`), whatever the other options say: a ready one at \
            once, else one being built, else one of the pool's shape built for you. Only --lifetime counts.
            """)
    var poolName: String?
    @Flag(help: "Say on standard error which warm pools are nearest to the request and what differs.")
    var explainPool = false

    func validate() throws {
        if let name = self.poolName, name.wholeMatch(of: /[a-z0-9][a-z0-9-]{0,39}/) == nil {
            throw ValidationError(
                "--pool-name takes a pool's name: lowercase letters, digits and dashes (`client pools`)")
        }
    }

    /// The request to send, as JSON: for a pool by name its lifetime alone (the pool's spec is
    /// the rest), else what the shape options and `region` describe.
    func requestJSON(shape: ClusterShapeOptions, region: String?, lifetime: Duration) throws -> String {
        if self.poolName != nil {
            return String(
                decoding: try JSONSerialization.data(withJSONObject: ["lifetimeSeconds": lifetime.seconds]),
                as: UTF8.self)
        }
        var request = try shape.request(lifetimeSeconds: lifetime.seconds)
        request.region = region
        return String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
    }
}

/// After a request: why no warm pool served it, when one nearly could. With `explain`, every
/// nearby pool and what differs; without, one line when the nearest pool differs in at most
/// two fields. Never fails the request: a look that fails says nothing.
func explainPoolMiss(request: String, receipt: RequestReceipt, byName: Bool, explain: Bool, store: ClusterAPI) async {
    guard !byName, receipt.created else { return }
    if let pool = receipt.pool {
        if explain { note("the request matched warm pool \(pool) exactly") }
        return
    }
    guard let near = try? await store.poolsNear(request: request) else { return }
    if explain {
        if near.isEmpty { note("no warm pools exist (`client pools`)") }
        for pool in near {
            let differs = pool.differing.isEmpty ? "the same spec" : "differs in " + flagNames(pool.differing)
            note("warm pool \(pool.pool) (\(pool.ready) ready): \(differs)")
        }
        return
    }
    if let nearest = near.first, (1...2).contains(nearest.differing.count) {
        note(
            "no warm pool matched; the nearest, \(nearest.pool), differs in \(flagNames(nearest.differing)) "
                + "(`--pool-name \(nearest.pool)` takes one of its clusters anyway; --explain-pool says more)")
    }
}

private func note(_ text: String) {
    FileHandle.standardError.write(Data("client: \(text)\n".utf8))
}

/// Request fields as the options that set them.
func flagNames(_ fields: [String]) -> String {
    let flags = [
        "masters": "--masters", "agents": "--agents", "publicAgents": "--public-agents",
        "instanceType": "--instance-type", "adminLocation": "--admin-location", "installerURL": "--installer-url",
        "dcosConfig": "--dcos-config", "genconfFiles": "--copy-to-installer", "tags": "--custom-tag",
        "roleTags": "--master-tag/--agent-tag/--public-agent-tag", "image": "--image", "region": "--region",
        "masterFiles": "--copy-to-master", "nodeSetup": "--node-setup", "provisionOnly": "--provision-only",
    ]
    return fields.map { flags[$0] ?? $0 }.joined(separator: ", ")
}

struct PoolsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pools", abstract: "List the warm pools: name, shape, spares.",
        discussion: """
            A request whose options match a pool's spec exactly is answered from it; `client
            request --pool-name NAME` takes from a pool whatever the other options say, and
            --explain-pool says what differs. Operators make pools with `worker pool set`.

            Example:
              client pools --json
            """)
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let json = self.options.json
        try await withStore(self.options) { store, _ in
            let pools = try await store.pools()
            if json {
                printJSON([
                    "pools": pools.map { pool -> [String: Any] in
                        var object: [String: Any] = [
                            "name": pool.name, "masters": pool.masters, "agents": pool.agents,
                            "public_agents": pool.publicAgents, "instance_type": pool.instanceType,
                            "ready": pool.ready, "building": pool.building, "min_ready": pool.minReady,
                            "max_ready": pool.maxReady,
                        ]
                        object["region"] = pool.region
                        object["target"] = pool.target
                        return object
                    }
                ])
                return
            }
            if pools.isEmpty {
                print("no warm pools (operators make them with `worker pool set`)")
                return
            }
            let header = ["NAME", "SHAPE", "TYPE", "READY", "BUILDING", "TARGET", "MIN-MAX", "REGION"]
            var rows = [header]
            for pool in pools {
                rows.append([
                    pool.name, "\(pool.masters)/\(pool.agents)/\(pool.publicAgents)", pool.instanceType,
                    "\(pool.ready)", "\(pool.building)", pool.target.map(String.init) ?? "-",
                    "\(pool.minReady)-\(pool.maxReady)", pool.region ?? "any",
                ])
            }
            printTable(rows)
            print("\nSHAPE is masters/agents/public agents.")
        }
    }
}

struct ImagesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images", abstract: "List the images and regions a request may name.",
        discussion: """
            `client request --image NAME` builds the cluster from an image of this list (its AMI
            in the cluster's region, its SSH user, the Docker version a node without Docker
            gets); `--region R` builds it in one of the regions listed. Operators keep the list
            (table images); a region appears once a worker builds there.

            Example:
              client images --json
            """)
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let json = self.options.json
        try await withStore(self.options) { store, _ in
            let (images, regions) = (try await store.images(), try await store.regions())
            if json {
                printJSON([
                    "images": images.map {
                        [
                            "name": $0.name, "distribution": $0.distribution, "ssh_user": $0.sshUser,
                            "docker_version": $0.dockerVersion, "regions": $0.regions,
                        ] as [String: Any]
                    },
                    "regions": regions,
                ])
                return
            }
            print("regions the fleet builds in: \(regions.joined(separator: ", "))")
            if images.isEmpty {
                print("no images in the allow-list: requests use the fleet's own image (FLOTILLA_AMI)")
                return
            }
            print("")
            let rows =
                [["NAME", "DISTRIBUTION", "SSH USER", "DOCKER", "REGIONS"]]
                + images.map {
                    [$0.name, $0.distribution, $0.sshUser, $0.dockerVersion, $0.regions.joined(separator: ",")]
                }
            printTable(rows)
        }
    }
}

/// Rows as columns, each as wide as its widest cell plus two spaces.
func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    let widths = first.indices.map { column in
        rows.map { $0.indices.contains(column) ? $0[column].count : 0 }.max()! + 2
    }
    for row in rows {
        print(
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined()
                .trimmingCharacters(in: .whitespaces))
    }
}
