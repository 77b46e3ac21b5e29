import AWSProvisioner
import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing

@Suite("The fleet end to end, through the built binaries", .serialized, .timeLimit(.minutes(10)))
struct FleetTests {
    static let fastWorker = ["--lease-seconds", "4", "--heartbeat-seconds", "1", "--poll-seconds", "0.5"]

    @Test("three requests at once against two workers get three distinct ready clusters; release tears each down")
    func threeRequestsTwoWorkers() async throws {
        try await Fleet.with { fleet in
            // One job at a time each, so the three requests must be shared.
            try fleet.start(["run", "--worker-id", "w1", "--concurrency", "1"] + Self.fastWorker)
            try fleet.start(["run", "--worker-id", "w2", "--concurrency", "1"] + Self.fastWorker)
            try fleet.start(["janitor", "--interval-seconds", "1"])
            let started = ContinuousClock.now
            let runs = try await withThrowingTaskGroup(of: Fleet.Run.self) { group in
                for index in 0..<3 {
                    group.addTask {
                        try await fleet.run([
                            "client", "request", "--nodes", "3", "--json", "--label", "agent-\(index)",
                            "--key-out",
                            FileManager.default.temporaryDirectory.appendingPathComponent(
                                "e2e-\(fleet.database)-\(index).key"
                            ).path,
                        ])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            print("measured: 3 concurrent requests for 3 nodes ready after \(ContinuousClock.now - started)")
            var ids: Set<String> = []
            for run in runs {
                #expect(run.status == 0, "\(run.stderr)")
                let object = try jsonObject(run.output)
                #expect(object["state"] as? String == "ready")
                let nodes = try #require(object["nodes"] as? [[String: Any]])
                #expect(nodes.count == 3)
                #expect(Set(nodes.compactMap { $0["role"] as? String }) == ["master", "slave", "slave_public"])
                let keyPath = try #require(object["key_path"] as? String)
                let attributes = try FileManager.default.attributesOfItem(atPath: keyPath)
                #expect((attributes[.posixPermissions] as? Int) == 0o600)
                ids.insert(try #require(object["id"] as? String))
            }
            #expect(ids.count == 3)
            let workers = try await fleet.scalar(
                "SELECT count(DISTINCT lease_owner)::int FROM jobs WHERE kind = 'provision'", as: Int.self)
            #expect(workers == 2, "both workers took provision jobs")
            for run in runs {
                let object = try jsonObject(run.output)
                let id = object["id"] as! String
                let token = object["lease_token"] as! String
                #expect(try await fleet.remaining(id).instances == 4)
                #expect(try await fleet.run(["client", "release", id, "--lease-token", token]).status == 0)
            }
            for id in ids {
                try await eventually("\(id) destroyed") {
                    try await fleet.scalar("SELECT state FROM clusters WHERE id = \(id)", as: String.self)
                        == "destroyed"
                }
                let left = try await fleet.remaining(id)
                #expect(left.instances == 0 && left.groups == 0 && left.keys == 0, "\(id): \(left)")
            }
        }
    }

    @Test("a worker killed with SIGKILL mid-provision: the other worker finishes with exactly the requested instances")
    func workerKilledMidProvision() async throws {
        try await Fleet.with { fleet in
            let doomed = try fleet.start(["run", "--worker-id", "doomed"] + Self.fastWorker)
            let request = try await fleet.run(["client", "request", "--nodes", "3", "--no-wait", "--json"])
            #expect(request.status == 0, "\(request.stderr)")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)
            // Kill it once instances exist, before the install finished.
            try await eventually("instances launched", timeout: .seconds(60)) {
                let phase = try await fleet.scalar(
                    "SELECT coalesce(phase, '') FROM clusters WHERE id = \(id)", as: String.self)
                return phase.hasPrefix("instances") && phase.contains("done") || phase.contains("ssh")
                    || phase.contains("bootstrap")
            }
            kill(doomed.processIdentifier, SIGKILL)
            let killedAt = try await fleet.scalar(
                "SELECT coalesce(phase, '') FROM clusters WHERE id = \(id)", as: String.self)
            try fleet.start(["run", "--worker-id", "survivor"] + Self.fastWorker)
            let wait = try await fleet.run(["client", "wait", id, "--json", "--timeout", "3m"])
            #expect(wait.status == 0, "killed at \(killedAt): \(wait.stderr)")
            #expect(try await fleet.remaining(id).instances == 4, "killed at \(killedAt)")
            let finisher = try await fleet.scalar(
                "SELECT lease_owner FROM jobs WHERE kind = 'provision'", as: String.self)
            #expect(finisher == "survivor")
            try fleet.start(["janitor", "--interval-seconds", "1"])
            #expect(try await fleet.run(["client", "release", id, "--lease-token", token]).status == 0)
            try await eventually("destroyed") {
                try await fleet.scalar("SELECT state FROM clusters WHERE id = \(id)", as: String.self) == "destroyed"
            }
            let left = try await fleet.remaining(id)
            #expect(left.instances == 0 && left.groups == 0 && left.keys == 0)
        }
    }

    @Test(
        "a short lifetime expires, the janitor tears the cluster down; extend moves the expiry; a bad token is refused"
    )
    func lifetimeExtendAndExpiry() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run"] + Self.fastWorker)
            try fleet.start(["janitor", "--interval-seconds", "30"])
            let request = try await fleet.run(["client", "request", "--nodes", "1", "--lifetime", "8s", "--json"])
            #expect(request.status == 0, "\(request.stderr)\n\(request.output)\n\(fleet.workerLogs())")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)
            let before = try await fleet.scalar(
                "SELECT extract(epoch FROM expires_at)::float8 FROM clusters WHERE id = \(id)", as: Double.self)

            let wrong = try await fleet.run([
                "client", "extend", id, "--by", "4s", "--lease-token", String(repeating: "0", count: 64),
            ])
            #expect(wrong.status != 0)
            #expect(wrong.stderr.contains("lease token does not match"))
            let wrongKey = try await fleet.run([
                "client", "key", id, "--out", "/tmp/never-written.key", "--lease-token", "nope",
            ])
            #expect(wrongKey.status != 0)
            #expect(!FileManager.default.fileExists(atPath: "/tmp/never-written.key"))
            #expect(
                try await fleet.scalar(
                    "SELECT extract(epoch FROM expires_at)::float8 FROM clusters WHERE id = \(id)", as: Double.self)
                    == before)

            let extend = try await fleet.run(["client", "extend", id, "--by", "4s", "--lease-token", token])
            #expect(extend.status == 0, "\(extend.stderr)")
            let after = try await fleet.scalar(
                "SELECT extract(epoch FROM expires_at)::float8 FROM clusters WHERE id = \(id)", as: Double.self)
            #expect(abs(after - before - 4) < 0.01)

            // The janitor's timer is 30 s, so only the expiry itself can wake it in time.
            try await eventually("teardown after expiry", timeout: .seconds(60)) {
                try await fleet.scalar("SELECT state FROM clusters WHERE id = \(id)", as: String.self) == "destroyed"
            }
            let lag = try await fleet.scalar(
                """
                SELECT extract(epoch FROM e.at - c.expires_at)::float8
                FROM cluster_events e JOIN clusters c ON c.id = e.cluster_id
                WHERE e.cluster_id = \(id) AND e.kind = 'teardown-expired'
                """, as: Double.self)
            print("measured: the janitor started teardown \(lag) s after expiry")
            #expect(lag >= 0 && lag < 5)
            let left = try await fleet.remaining(id)
            #expect(left.instances == 0 && left.groups == 0 && left.keys == 0)
        }
    }

    @Test(
        "expires tag on cluster resources: an upper bound at creation, the expiry once ready, the new one after extend"
    )
    func expiryTags() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run"] + Self.fastWorker)
            let request = try await fleet.run(["client", "request", "--nodes", "1", "--lifetime", "2h", "--json"])
            try #require(request.status == 0, "\(request.stderr)")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)
            let ec2 = fleet.ec2()
            /// The `expires` tags of everything tagged with the cluster, as dates.
            func tags() async throws -> [Date] {
                let tagged = [EC2Filter.tag("cluster", id)]
                var values = try await ec2.describeInstances(filters: tagged).filter { $0.state != .terminated }.map {
                    $0.tags[key: "expires"]
                }
                values += try await ec2.describeVolumes(filters: tagged).filter { $0.state != "deleted" }.map {
                    $0.tags[key: "expires"]
                }
                values += try await ec2.describeSecurityGroups(filters: tagged).map { $0.tags[key: "expires"] }
                values += try await ec2.describeKeyPairs(filters: tagged).map { $0.tags[key: "expires"] }
                return values.map { $0.flatMap { ISO8601DateFormatter().date(from: $0) } ?? .distantPast }
            }
            func expiry() async throws -> Date {
                Date(
                    timeIntervalSince1970: try await fleet.scalar(
                        "SELECT extract(epoch FROM expires_at)::float8 FROM clusters WHERE id = \(id)",
                        as: Double.self))
            }
            // At creation: an upper bound (created + lifetime + an hour to provision) on all of them.
            let created = try await tags()
            let readyExpiry = try await expiry()
            #expect(created.count >= 4 && created.allSatisfy { $0 > readyExpiry }, "\(created) vs \(readyExpiry)")

            try fleet.start(["janitor", "--interval-seconds", "1"])
            let exact = try await eventually("the tags say the expiry", timeout: .seconds(60)) {
                try await tags().allSatisfy { abs($0.timeIntervalSince(readyExpiry)) < 1 }
            }
            let readyTags = try await tags()
            #expect(exact, "\(readyTags) vs \(readyExpiry)")

            let extend = try await fleet.run(["client", "extend", id, "--by", "30m", "--lease-token", token])
            #expect(extend.status == 0, "\(extend.stderr)")
            let extended = try await expiry()
            let moved = try await eventually("the tags follow the extend", timeout: .seconds(60)) {
                try await tags().allSatisfy { abs($0.timeIntervalSince(extended)) < 1 }
            }
            let extendedTags = try await tags()
            #expect(moved && abs(extended.timeIntervalSince(readyExpiry) - 1800) < 1, "\(extendedTags) vs \(extended)")

            #expect(try await fleet.run(["client", "release", id, "--lease-token", token]).status == 0)
            try await eventually("destroyed") {
                try await fleet.scalar("SELECT state FROM clusters WHERE id = \(id)", as: String.self) == "destroyed"
            }
            try await fleet.expectNothingLeft(id)
        }
    }

    @Test("bad input is refused with a message and a non-zero exit, and nothing is written")
    func badInput() async throws {
        try await Fleet.with { fleet in
            let rows = try await fleet.rowCount()
            // Checked by the server alone (migration 0011); the client shows its message.
            let listYAML = FileManager.default.temporaryDirectory.appendingPathComponent("list-\(UUID()).yaml")
            try "- dns_search: example.com\n- check_time: false\n".write(
                to: listYAML, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: listYAML) }
            let cases: [([String], String)] = [
                (["--nodes", "0"], "at least 1"),
                (["--nodes=-3"], "at least 1"),
                (["--dcos-config", listYAML.path], "must be a YAML mapping of config.yaml keys"),
                (["--installer-url", "https://user:secret@example.invalid/dcos_generate_config.sh"], "http"),
                (["--masters", "2"], "1, 3, 5, 7 or 9"),
                (["--nodes", "10000"], "1 to 100"),
                (["--admin-location", "10.0.0.300/8"], "CIDR"),
                (["--admin-location", "everyone"], "CIDR"),
                (["--lifetime", "0"], "positive"),
                (["--lifetime", "999h"], "maximum of 12h (policy max_lifetime)"),
                (["--installer-url", "ftp://example.invalid/dcos_generate_config.sh"], "http"),
                (["--copy-to-installer", "no-colon"], "LOCAL:REMOTE"),
            ]
            for (arguments, words) in cases {
                let run = try await fleet.run(["client", "request", "--no-wait"] + arguments)
                #expect(run.status != 0, "\(arguments)")
                #expect(run.stderr.contains(words), "\(arguments): \(run.stderr)")
                #expect(!run.stderr.contains("secret"), "a refusal repeats no password: \(run.stderr)")
            }
            for command in [
                ["status", "c-0000000000"], ["logs", "c-0000000000", "--out", "/tmp/x", "--lease-token", "t"],
                ["wait", "c-0000000000"],
                ["extend", "c-0000000000", "--by", "1h", "--lease-token", "t"],
                ["release", "c-0000000000", "--lease-token", "t"],
            ] {
                let run = try await fleet.run(["client"] + command)
                #expect(run.status != 0, "\(command)")
                #expect(run.stderr.contains("no cluster with id c-0000000000"), "\(command): \(run.stderr)")
            }
            #expect(try await fleet.rowCount() == rows)
        }
    }

    @Test("operator views show clusters and jobs without secrets, to a read-only role")
    func operatorViews() async throws {
        try await Fleet.with { fleet in
            let request = try await fleet.run(["client", "request", "--nodes", "1", "--no-wait", "--json"])
            #expect(request.status == 0)
            try await fleet.withClient { client in
                let columns = try await client.query(
                    """
                    SELECT string_agg(column_name, ',') FROM information_schema.columns
                    WHERE table_name IN ('operator_clusters', 'operator_jobs', 'operator_nodes',
                                         'operator_key_pair_deletions')
                    """, logger: Fleet.logger)
                for try await names in columns.decode(String.self) {
                    #expect(!names.contains("private_key") && !names.contains("lease_token"))
                }
                let count = try await client.query(
                    "SELECT count(*)::int FROM operator_clusters WHERE state = 'requested'", logger: Fleet.logger)
                for try await value in count.decode(Int.self) { #expect(value == 1) }
                // The operator role reads the views and cannot read secrets.
                try await client.withTransaction(logger: Fleet.logger) { connection in
                    try await connection.query("SET LOCAL ROLE flotilla_operator", logger: Fleet.logger)
                    let rows = try await connection.query(
                        "SELECT count(*)::int FROM operator_jobs", logger: Fleet.logger)
                    for try await value in rows.decode(Int.self) { #expect(value == 1) }
                }
                let refused = await #expect(throws: (any Error).self) {
                    try await client.withTransaction(logger: Fleet.logger) { connection in
                        try await connection.query("SET LOCAL ROLE flotilla_operator", logger: Fleet.logger)
                        try await connection.query("SELECT private_key FROM cluster_secrets", logger: Fleet.logger)
                    }
                }
                #expect(refused != nil)
            }
        }
    }
}
