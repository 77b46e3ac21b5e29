import AWSProvisioner
import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing

/// Warm pools and `client run`, through real `worker run`, `worker janitor`, `worker pool` and
/// `client` processes on the loopback cluster: hand-out, refill, concurrent claims, a spec
/// change, `client run` ending with its command, and a `client run` that dies without a word.
/// Every cluster a test made ends destroyed with nothing left in the emulator.
@Suite("Warm pools and client run", .serialized, .timeLimit(.minutes(10)))
struct PoolTests {
    static let fastWorker = LifecycleTests.fastWorker
    /// The janitor checks pool clusters as soon as they are ready (a verdict counts 60 s).
    static let janitor = ["janitor", "--interval-seconds", "1", "--pool-health-valid-seconds", "60"]

    /// Waits until the pool has `ready` ready, health-checked clusters of its current spec.
    /// The wait allows one failed health check and a rebuild on a loaded CI machine (a
    /// cluster that fails its check is torn down and built again, which is the pool working
    /// as meant; one CI run saw it, after a node's key lookup failed under load, and 180 s
    /// was not enough for the rebuild).
    static func waitForPool(_ fleet: Fleet, _ pool: String, ready: Int, timeout: Duration = .seconds(420)) async throws
    {
        let done = try await eventually("pool \(pool) has \(ready) healthy clusters", timeout: timeout) {
            try await fleet.scalar(
                """
                SELECT count(*)::int FROM clusters c JOIN pools p ON p.name = c.pool AND p.spec_hash = c.spec_hash
                WHERE c.pool = \(pool) AND c.handed_out_at IS NULL AND c.state = 'ready' AND c.healthy_until > now()
                """, as: Int.self) >= ready
        }
        if !done {
            let pools = try await fleet.scalar(
                "SELECT coalesce(string_agg(p::text, ' | '), '') FROM operator_pools p", as: String.self)
            Issue.record("pool \(pool) did not reach \(ready) ready clusters: \(pools)\n\(fleet.workerLogs())")
            throw LifecycleTestFailure("pool \(pool) not ready")
        }
    }

    /// The first column of every row of `query`, as text.
    static func strings(_ fleet: Fleet, _ query: PostgresQuery) async throws -> [String] {
        try await fleet.withClient { client in
            var result: [String] = []
            for try await value in try await client.query(query, logger: Fleet.logger).decode(String.self) {
                result.append(value)
            }
            return result
        }
    }

    /// Releases what the test holds, deletes the pools, and checks every cluster it made is destroyed.
    static func cleanUp(_ fleet: Fleet, holding: [(id: String, token: String)], path: String) async throws {
        let trigger = Date()
        for (id, token) in holding {
            let release = try await fleet.run(["client", "release", id, "--lease-token", token])
            #expect(release.status == 0, "\(release.stderr)")
        }
        for pool in try await Self.strings(fleet, "SELECT name FROM pools") {
            let delete = try await fleet.run(["worker", "pool", "delete", pool])
            #expect(delete.status == 0, "\(delete.stderr)")
        }
        let ids = try await Self.strings(fleet, "SELECT id FROM clusters WHERE state <> 'destroyed' ORDER BY id")
        for id in ids { try await LifecycleTests.expectDestroyed(fleet, id, path: "\(path) (\(id))", since: trigger) }
    }

    /// Runs `client request` and returns the cluster, its token, whether a pool served it, and the wall time.
    static func request(_ fleet: Fleet, _ extra: [String] = []) async throws -> (
        id: String, token: String, pool: String?, seconds: Double
    ) {
        let started = ContinuousClock.now
        let run = try await fleet.run(
            ["client", "request", "--nodes", "1", "--json", "--key-out", LifecycleTests.keyPath(fleet)] + extra)
        let seconds = (ContinuousClock.now - started).seconds
        try #require(run.status == 0, "\(run.stderr)")
        let object = try jsonObject(run.output)
        let id = try #require(object["id"] as? String)
        let pool = run.stderr.firstMatch(of: /from warm pool ([a-z0-9-]+)/).map { String($0.1) }
        return (id, try #require(object["lease_token"] as? String), pool, seconds)
    }

    @Test(
        """
        --pool-name hands out a pool's cluster to a request whose installer URL differs; --explain-pool and the \
        default line name the differing option; client pools lists it; an unknown pool is refused
        """)
    func poolByName() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1", "--concurrency", "2"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            let set = try await fleet.run([
                "worker", "pool", "set", "named", "--nodes", "1", "--min", "1", "--max", "1",
            ])
            try #require(set.status == 0, "\(set.stderr)")
            try await Self.waitForPool(fleet, "named", ready: 1)
            let spare = try await Self.strings(
                fleet, "SELECT id FROM clusters WHERE pool = 'named' AND handed_out_at IS NULL AND state = 'ready'")

            let pools = try await fleet.run(["client", "pools", "--json"])
            #expect(pools.status == 0, "\(pools.stderr)")
            let listed = try jsonObject(pools.output)["pools"] as? [[String: Any]] ?? []
            #expect(listed.count == 1 && listed.first?["name"] as? String == "named", "\(pools.output)")
            #expect(listed.first?["ready"] as? Int == 1 && listed.first?["masters"] as? Int == 1, "\(pools.output)")
            #expect(listed.first?["installer_url"] == nil, "a client sees a pool's shape, not its configuration")

            // Another installer URL: the spec misses the pool. The explanation names the option.
            let other = try #require(ProcessInfo.processInfo.environment["FLOTILLA_TEST_INSTALLER_URL"]) + "?build=2"
            let explained = try await fleet.run([
                "client", "request", "--nodes", "1", "--installer-url", other, "--explain-pool", "--no-wait", "--json",
                "--pool", "auto",
            ])
            #expect(explained.status == 0, "\(explained.stderr)")
            #expect(
                explained.stderr.contains("warm pool named (1 ready): differs in --installer-url"),
                "\(explained.stderr)")
            let missed = try jsonObject(explained.output)
            let missedID = try #require(missed["id"] as? String)
            let missedToken = try #require(missed["lease_token"] as? String)
            #expect(!spare.contains(missedID), "a request that differs is not served by the pool")
            let release = try await fleet.run(["client", "release", missedID, "--lease-token", missedToken])
            #expect(release.status == 0, "\(release.stderr)")
            let quiet = try await fleet.run([
                "client", "request", "--nodes", "1", "--installer-url", other, "--no-wait", "--json",
            ])
            #expect(quiet.stderr.contains("the nearest, named, differs in --installer-url"), "\(quiet.stderr)")
            let quietObject = try jsonObject(quiet.output)
            _ = try await fleet.run([
                "client", "release", try #require(quietObject["id"] as? String), "--lease-token",
                try #require(quietObject["lease_token"] as? String),
            ])

            // By name: the spare, whatever the request's own installer URL.
            let taken = try await Self.request(
                fleet, ["--installer-url", other, "--pool-name", "named", "--lifetime", "1h"])
            #expect(taken.pool == "named" && spare == [taken.id], "\(taken) vs \(spare)")
            let left = try await fleet.scalar(
                "SELECT extract(epoch FROM expires_at - now())::float8 FROM clusters WHERE id = \(taken.id)",
                as: Double.self)
            #expect(left > 3500 && left <= 3600, "the request's lifetime counts: \(left) s")

            let unknown = try await fleet.run(["client", "request", "--pool-name", "nosuch", "--no-wait"])
            #expect(
                unknown.status == 1 && unknown.stderr.contains("no pool named nosuch (pools: named"),
                "\(unknown.stderr)")
            let bad = try await fleet.run(["client", "request", "--pool-name", "Bad Name", "--no-wait"])
            #expect(bad.status == 64, "\(bad.stderr)")

            try await Self.cleanUp(fleet, holding: [(taken.id, taken.token)], path: "pool by name")
        }
    }

    @Test(
        "a pool of 2 fills, serves ready clusters at once, refills after 2 claims; a spec change replaces its clusters"
    )
    func refillAndReplace() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1", "--concurrency", "4"] + Self.fastWorker)
            try fleet.start(Self.janitor)

            let set = try await fleet.run([
                "worker", "pool", "set", "small", "--nodes", "1", "--min", "2", "--max", "2",
            ])
            try #require(set.status == 0, "\(set.stderr)")
            let filling = ContinuousClock.now
            try await Self.waitForPool(fleet, "small", ready: 2)
            let fillSeconds = (ContinuousClock.now - filling).seconds
            print(
                "measured: an empty pool of 2 one-node clusters filled and health-checked in "
                    + "\(String(format: "%.1f", fillSeconds)) s")
            // The ready ones: a cluster that failed its health check on the way (torn down, then
            // built again) is in the pool's rows too, but is not a spare.
            let spares = try await Self.strings(
                fleet,
                "SELECT id FROM clusters WHERE pool = 'small' AND handed_out_at IS NULL AND state = 'ready' ORDER BY id"
            )

            // Two claims: each answered from the pool, with a cluster that was ready before it asked.
            let first = try await Self.request(fleet)
            let second = try await Self.request(fleet)
            #expect(first.pool == "small" && second.pool == "small")
            #expect(
                Set([first.id, second.id]) == Set(spares),
                "the pool's clusters were handed out: \(first.id), \(second.id) vs \(spares)")
            print(
                """
                measured: client request answered from the warm pool in \(String(format: "%.2f", first.seconds)) s \
                and \(String(format: "%.2f", second.seconds)) s (process start to exit)
                """)
            for claim in [first, second] {
                let owner = try await fleet.scalar("SELECT owner FROM clusters WHERE id = \(claim.id)", as: String.self)
                #expect(owner == Fleet.clientLogin, "a handed-out cluster belongs to the login that took it")
                // The lifetime starts at hand-out: 2 h from now, not from when it became ready.
                let left = try await fleet.scalar(
                    "SELECT extract(epoch FROM expires_at - now())::float8 FROM clusters WHERE id = \(claim.id)",
                    as: Double.self)
                #expect(left > 7100 && left <= 7200, "expires in \(left) s")
                let events = try await fleet.events(of: claim.id)
                #expect(events.contains("handed-out") && events.contains("key-read"), "\(events)")
            }

            // The pool refills to its target, with new clusters.
            let refill = ContinuousClock.now
            try await Self.waitForPool(fleet, "small", ready: 2)
            let refillSeconds = (ContinuousClock.now - refill).seconds
            let refilled = try await Self.strings(
                fleet, "SELECT id FROM clusters WHERE pool = 'small' AND handed_out_at IS NULL AND state = 'ready'")
            #expect(Set(refilled).isDisjoint(with: [first.id, second.id]))
            let cold = try await Self.request(fleet, ["--pool", "never"])
            #expect(cold.pool == nil)
            print(
                """
                measured: pool of 2 back at target \(String(format: "%.1f", refillSeconds)) s after two claims; \
                a cold 1-node request → ready took \(String(format: "%.1f", cold.seconds)) s in the same run
                """)

            // A spec change: the unclaimed clusters of the old spec are torn down, new ones built.
            let change = try await fleet.run([
                "worker", "pool", "set", "small", "--nodes", "1", "--instance-type", "m5.large", "--min", "2", "--max",
                "2",
            ])
            try #require(change.status == 0, "\(change.stderr)")
            let trigger = Date()
            for id in refilled {
                try await LifecycleTests.expectDestroyed(
                    fleet, id, path: "pool spec changed: old spare \(id)", since: trigger)
                let reason = try await fleet.scalar(
                    "SELECT coalesce(teardown_reason, '') FROM clusters WHERE id = \(id)", as: String.self)
                #expect(reason == "pool-replaced")
            }
            try await Self.waitForPool(fleet, "small", ready: 2)
            let types = try await fleet.scalar(
                """
                SELECT string_agg(DISTINCT instance_type, ',') FROM clusters
                WHERE pool = 'small' AND handed_out_at IS NULL AND state = 'ready'
                """, as: String.self)
            #expect(types == "m5.large")
            // A request of the new spec is served by the pool.
            let newSpec = try await Self.request(fleet, ["--instance-type", "m5.large"])
            #expect(newSpec.pool == "small")
            let list = try await fleet.run(["worker", "pool", "list", "--json"])
            #expect(list.status == 0 && list.output.contains("\"target\" : 2"), "\(list.output)")

            try await Self.cleanUp(
                fleet,
                holding: [
                    (first.id, first.token), (second.id, second.token), (cold.id, cold.token),
                    (newSpec.id, newSpec.token),
                ], path: "pool test clean-up")
        }
    }

    @Test("8 concurrent claims against a pool of 4: 4 get pool clusters and 4 get new ones, all distinct")
    func concurrentClaims() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1", "--concurrency", "4"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            let set = try await fleet.run(["worker", "pool", "set", "four", "--nodes", "1", "--min", "4", "--max", "4"])
            try #require(set.status == 0, "\(set.stderr)")
            try await Self.waitForPool(fleet, "four", ready: 4)
            // No refill while the claims run, so "new" can only mean a request that found the pool empty.
            let pause = try await fleet.run(["worker", "pool", "pause", "four"])
            try #require(pause.status == 0, "\(pause.stderr)")

            let claims = try await withThrowingTaskGroup(of: Fleet.Run.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await fleet.run(["client", "request", "--nodes", "1", "--no-wait", "--json"]) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            var ids: [String] = []
            var holding: [(String, String)] = []
            var fromPool = 0
            for claim in claims {
                try #require(claim.status == 0, "\(claim.stderr)")
                let object = try jsonObject(claim.output)
                let id = try #require(object["id"] as? String)
                ids.append(id)
                holding.append((id, try #require(object["lease_token"] as? String)))
                if claim.stderr.contains("from warm pool four") { fromPool += 1 }
            }
            #expect(Set(ids).count == 8, "every claim got its own cluster: \(ids)")
            #expect(fromPool == 4, "4 claims were answered from the pool")
            let handedOut = try await fleet.scalar(
                "SELECT count(*)::int FROM clusters WHERE pool = 'four' AND handed_out_at IS NOT NULL", as: Int.self)
            let fresh = try await fleet.scalar("SELECT count(*)::int FROM clusters WHERE pool IS NULL", as: Int.self)
            #expect(handedOut == 4 && fresh == 4, "pool clusters handed out: \(handedOut); new clusters: \(fresh)")
            let owners = try await fleet.scalar(
                "SELECT count(DISTINCT id)::int FROM clusters WHERE owner = \(Fleet.clientLogin)", as: Int.self)
            #expect(owners == 8)
            try await Self.cleanUp(fleet, holding: holding, path: "concurrent claims clean-up")
        }
    }

    @Test("client run -- false: the command sees the cluster, the client exits 1, and the cluster ends destroyed")
    func runFalse() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            let out = try fleet.makeScratchDirectory(suffix: "run").appendingPathComponent("seen")
            let script = """
                printf '%s %s %s %s' "$FLOTILLA_CLUSTER_ID" "$FLOTILLA_MASTER" "$FLOTILLA_SSH_USER" \
                "$(stat -c %a "$FLOTILLA_SSH_KEY")" > \(out.path); false
                """
            let run = try await fleet.run(["client", "run", "--nodes", "1", "--", "sh", "-c", script])
            #expect(run.status == 1, "\(run.stderr)")
            let trigger = Date()
            let id = try await LifecycleTests.onlyCluster(fleet)
            let seen = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            let master = try await fleet.scalar(
                "SELECT coalesce(public_ip, private_ip) FROM nodes WHERE cluster_id = \(id) AND role = 'master'",
                as: String.self)
            let user = try await fleet.scalar("SELECT ssh_user FROM clusters WHERE id = \(id)", as: String.self)
            #expect(seen == "\(id) \(master) \(user) 600", "the command saw: \(seen)")
            #expect(run.stderr.contains("released cluster \(id)"), "\(run.stderr)")
            try await LifecycleTests.expectDestroyed(fleet, id, path: "client run -- false", since: trigger)
            #expect(
                try await fleet.scalar("SELECT teardown_reason FROM clusters WHERE id = \(id)", as: String.self)
                    == "released")
            try await fleet.expectSecretsErased(id)
        }
    }

    @Test(
        "client run given SIGTERM: the command gets SIGTERM, the client exits 143, and the cluster ends destroyed"
    )
    func runTerminated() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            let seen = try fleet.makeScratchDirectory(suffix: "term").appendingPathComponent("signal")
            // The command records the signal it got; `wait` lets the trap run while sleep runs.
            let client = try fleet.startInBackground([
                "client", "run", "--nodes", "1", "--", "sh", "-c",
                "trap 'echo TERM > \(seen.path); exit 7' TERM; sleep 300 & wait",
            ])
            let id = try await LifecycleTests.waitForClusterRow(fleet)
            let running = try await eventually("the command runs on a ready cluster", timeout: .seconds(120)) {
                try await fleet.state(of: id) == "ready" && client.stderrSoFar().contains("; running ")
            }
            try #require(running, "\(client.stderrSoFar())\n\(fleet.workerLogs())")

            let trigger = Date()
            client.send(SIGTERM)
            let finished = try #require(
                await client.finish(within: .seconds(30)),
                "the client still runs 30 s after SIGTERM: \(client.stderrSoFar())")
            #expect(finished.status == 143, "\(finished.stderr)")
            #expect((try? String(contentsOf: seen, encoding: .utf8)) == "TERM\n", "the command was given the SIGTERM")
            #expect(finished.stderr.contains("released cluster \(id)"), "\(finished.stderr)")
            try await LifecycleTests.expectDestroyed(fleet, id, path: "client run SIGTERMed", since: trigger)
            #expect(
                try await fleet.scalar("SELECT teardown_reason FROM clusters WHERE id = \(id)", as: String.self)
                    == "released")
        }
    }

    @Test("client run killed with SIGKILL: its heartbeat stops and the janitor releases the cluster within the bound")
    func runKilled() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            // The command outlives the SIGKILLed client; it says its pid, and the fleet ends it.
            let pidFile = try fleet.orphanPIDFile()
            let client = try fleet.startInBackground([
                "client", "run", "--nodes", "1", "--heartbeat-timeout", "4s", "--",
                "sh", "-c", "echo $$ > \(pidFile.path); exec sleep 300",
            ])
            let id = try await LifecycleTests.waitForClusterRow(fleet)
            let running = try await eventually("the command runs on a ready cluster", timeout: .seconds(120)) {
                try await fleet.state(of: id) == "ready" && client.stderrSoFar().contains("; running ")
            }
            try #require(running, "\(client.stderrSoFar())\n\(fleet.workerLogs())")
            let beat = try await fleet.scalar(
                "SELECT holder_heartbeat_at IS NOT NULL FROM clusters WHERE id = \(id)", as: Bool.self)
            #expect(beat)

            let trigger = Date()
            client.send(SIGKILL)
            _ = await client.finish(within: .seconds(10))
            let released = try await eventually("the janitor releases the cluster", timeout: .seconds(30)) {
                try await fleet.events(of: id).contains("teardown-holder-lost")
            }
            let summary = await fleet.summary(id)
            #expect(released, "\(summary)")
            let lag =
                try await fleet.scalar(
                    """
                    SELECT coalesce((SELECT extract(epoch FROM at)::float8 FROM cluster_events
                                     WHERE cluster_id = \(id) AND kind = 'teardown-holder-lost'), 0)
                    """, as: Double.self) - trigger.timeIntervalSince1970
            print(
                "measured: client run SIGKILLed: teardown started \(String(format: "%.1f", lag)) s later "
                    + "(heartbeat timeout 4 s, janitor interval 1 s)")
            #expect(
                lag > 0 && lag <= 4 + 1 + 3,
                """
                released \(lag) s after the kill; the bound is the timeout (4 s) + the janitor's interval (1 s) \
                + a beat (1 s)
                """)
            try await LifecycleTests.expectDestroyed(
                fleet, id, path: "client run SIGKILLed (holder lost)", since: trigger)
        }
    }

    @Test("expiry warnings 30 and 10 minutes before expiry are recorded as events, and client status shows them")
    func expiryWarnings() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            let made = try await Self.request(fleet, ["--lifetime", "25m"])
            let warned = try await eventually("the 30-minute warning", timeout: .seconds(20)) {
                try await fleet.events(of: made.id).contains("expiry-warning")
            }
            #expect(warned)
            let status = try await fleet.run(["client", "status", made.id])
            #expect(status.output.contains("30-minute warning"), "\(status.output)")
            // Nine minutes left: the 10-minute warning, once.
            try await fleet.execute(
                "UPDATE clusters SET expires_at = now() + interval '9 minutes' WHERE id = \(made.id)")
            let second = try await eventually("the 10-minute warning", timeout: .seconds(20)) {
                try await fleet.scalar(
                    """
                    SELECT count(*)::int FROM cluster_events
                    WHERE cluster_id = \(made.id) AND kind = 'expiry-warning' AND detail ->> 'minutes' = '10'
                    """, as: Int.self) == 1
            }
            #expect(second)
            let after = try await fleet.run(["client", "status", made.id, "--json"])
            let object = try jsonObject(after.output)
            #expect((object["expiry_warning"] as? [String: Any])?["minutes"] as? Int == 10, "\(after.output)")
            let count = try await fleet.scalar(
                "SELECT count(*)::int FROM cluster_events WHERE cluster_id = \(made.id) AND kind = 'expiry-warning'",
                as: Int.self)
            #expect(count == 2, "one warning per threshold")
            try await Self.cleanUp(fleet, holding: [(made.id, made.token)], path: "expiry warnings clean-up")
        }
    }

    @Test("a pool cluster that fails its health check is torn down, never handed out, and the pool builds another")
    func unhealthyClusterReplaced() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            // Verdicts count 10 s, so a ready cluster is checked again every 5 s.
            try fleet.start(["janitor", "--interval-seconds", "1", "--pool-health-valid-seconds", "10"])
            let set = try await fleet.run(["worker", "pool", "set", "one", "--nodes", "1", "--min", "1", "--max", "1"])
            try #require(set.status == 0, "\(set.stderr)")
            try await Self.waitForPool(fleet, "one", ready: 1)
            let sick = try #require(
                try await Self.strings(fleet, "SELECT id FROM clusters WHERE pool = 'one' AND state = 'ready'").first)
            let master = try await fleet.scalar(
                "SELECT private_ip FROM nodes WHERE cluster_id = \(sick) AND role = 'master'", as: String.self)
            // The master's next post-start check fails (the stub's failure injection).
            let state = try #require(fleet.environment["FLOTILLA_TEST_STUB_STATE"], "run through ./scripts/test")
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: state).appendingPathComponent("fail"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("postflight \(master) 1\n".utf8))
            try handle.close()

            let trigger = Date()
            try await LifecycleTests.expectDestroyed(
                fleet, sick, path: "pool cluster failed its health check", since: trigger)
            #expect(
                try await fleet.scalar("SELECT teardown_reason FROM clusters WHERE id = \(sick)", as: String.self)
                    == "pool-unhealthy")
            #expect(try await fleet.events(of: sick).contains("health-check-failed"))
            #expect(
                try await fleet.scalar("SELECT handed_out_at IS NULL FROM clusters WHERE id = \(sick)", as: Bool.self))
            // The pool builds a replacement, and a request gets it.
            try await Self.waitForPool(fleet, "one", ready: 1)
            let taken = try await Self.request(fleet)
            #expect(taken.pool == "one" && taken.id != sick)
            try await Self.cleanUp(fleet, holding: [(taken.id, taken.token)], path: "unhealthy pool cluster clean-up")
        }
    }

    @Test("--pool wait takes a pool cluster still being built; its lifetime starts when it becomes ready")
    func poolWait() async throws {
        try await Fleet.with { fleet in
            // The janitor alone: the pool cluster is queued, and nobody builds it yet.
            try fleet.start(Self.janitor)
            let set = try await fleet.run(["worker", "pool", "set", "slow", "--nodes", "1", "--min", "1", "--max", "1"])
            try #require(set.status == 0, "\(set.stderr)")
            let queued = try await eventually("the pool queued a cluster", timeout: .seconds(30)) {
                try await fleet.scalar("SELECT count(*)::int FROM clusters WHERE pool = 'slow'", as: Int.self) == 1
            }
            try #require(queued)
            let spare = try #require(try await Self.strings(fleet, "SELECT id FROM clusters WHERE pool = 'slow'").first)

            // auto finds nothing ready and records a new cluster; wait takes the one being built.
            let auto = try await fleet.run(["client", "request", "--nodes", "1", "--no-wait", "--json"])
            try #require(auto.status == 0, "\(auto.stderr)")
            let autoID = try #require(try jsonObject(auto.output)["id"] as? String)
            #expect(autoID != spare && !auto.stderr.contains("from warm pool"))
            let autoToken = try #require(try jsonObject(auto.output)["lease_token"] as? String)
            let waited = try await fleet.run([
                "client", "request", "--nodes", "1", "--pool", "wait", "--no-wait", "--json",
            ])
            try #require(waited.status == 0, "\(waited.stderr)")
            let object = try jsonObject(waited.output)
            #expect(
                object["id"] as? String == spare && waited.stderr.contains("from warm pool slow"), "\(waited.stderr)")
            let token = try #require(object["lease_token"] as? String)

            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            let ready = try await eventually("the waited-for cluster is ready", timeout: .seconds(120)) {
                try await fleet.state(of: spare) == "ready"
            }
            try #require(ready)
            let lifetime = try await fleet.scalar(
                "SELECT extract(epoch FROM expires_at - ready_at)::float8 FROM clusters WHERE id = \(spare)",
                as: Double.self)
            #expect(abs(lifetime - 7200) < 2, "the holder's 2 h start at ready: \(lifetime) s")
            #expect(
                try await fleet.scalar("SELECT owner FROM clusters WHERE id = \(spare)", as: String.self)
                    == Fleet.clientLogin)
            try await Self.cleanUp(fleet, holding: [(spare, token), (autoID, autoToken)], path: "pool wait clean-up")
        }
    }
}
