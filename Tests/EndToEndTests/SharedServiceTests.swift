import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing
import Timing

/// One fleet, many teams: the provision queue serves owners in turn, and agents that only
/// wait cost the server no connection of their own.
@Suite("A shared service: fair turns, and waiting agents that hold no connection", .timeLimit(.minutes(10)))
struct SharedServiceTests {
    /// The owners of the queued provision jobs, in the order a worker claims them.
    static func claimOrder(_ fleet: Fleet) async throws -> [String] {
        let owners = try await fleet.scalar(
            """
            SELECT coalesce(string_agg(c.owner, ' ' ORDER BY j.priority DESC, j.run_after, j.id), '')
            FROM jobs j JOIN clusters c ON c.id = j.cluster_id
            WHERE j.kind = 'provision' AND j.state = 'queued'
            """, as: String.self)
        return owners.split(separator: " ").map(String.init)
    }

    @Test(
        "two owners: one with 50 queued requests, one with 1; the single request starts next (a third keeps its place)")
    func fairTurns() async throws {
        try await Fleet.with { fleet in
            try await SecurityTests.makeLogins(fleet)
            let (heavy, light) = (Fleet.clientLogin, SecurityTests.otherAgent)
            try await fleet.execute(
                """
                INSERT INTO policy (owner, max_lifetime, max_total_lifetime, max_nodes, max_clusters, max_total_nodes)
                VALUES (\(heavy), interval '12 hours', interval '24 hours', 100, 60, 100)
                """)
            // One team queues 50 requests (one transaction: the worst case, all at one now()).
            let fifty = try await SecurityTests.psql(
                fleet, as: heavy,
                "SELECT count(*) FROM generate_series(1, 50) AS n, "
                    + "LATERAL flotilla_api.api_request(NULL, 'batch ' || n, '\(SecurityTests.validRequest)', 600)")
            #expect(fifty.status == 0 && fifty.output.contains("50"), "\(fifty.error)")
            // Then another team asks for one, through the client, and after it a third team.
            let single = try await SecurityTests.request(fleet, as: light)
            let third = "e2e_ci_agent_c"
            try await fleet.createLogin(third, in: "flotilla_client")
            let another = try await SecurityTests.request(fleet, as: third)
            let order = try await Self.claimOrder(fleet)
            #expect(order.count == 52 && order.prefix(3) == [light, third, heavy], "claim order: \(order.prefix(5))")
            let ahead = try await SecurityTests.psql(
                fleet, as: light, "SELECT ahead FROM flotilla_api.api_wait_info('\(single.id)')")
            #expect(
                ahead.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(ahead.output) \(ahead.error)")

            // A real worker, one job at a time, claims in that order. The clusters live in a
            // region (live: a worker there beats) other than this worker's, so each claim is
            // handed back at once, before anything is built or marked provisioning, and the
            // claims come one after the other with nothing to clean up.
            try await fleet.execute("SELECT worker_beat('eu-north-1', 'ami-12345678', interval '1 hour')")
            try await fleet.execute("UPDATE clusters SET region = 'eu-north-1'")
            let worker = try fleet.start(["run", "--concurrency", "1", "--kinds", "provision"])
            let claimed = """
                SELECT coalesce(string_agg(c.id, ' ' ORDER BY j.started_at), '')
                FROM jobs j JOIN clusters c ON c.id = j.cluster_id
                WHERE j.kind = 'provision' AND j.started_at IS NOT NULL
                """
            try await eventually("three provision jobs claimed", timeout: .seconds(120)) {
                try await fleet.scalar(PostgresQuery(unsafeSQL: claimed), as: String.self)
                    .split(separator: " ").count >= 3
            }
            // Stopped at once: a claim handed back is claimed again 30 s later (a new start time).
            await fleet.stopProcess(worker, signal: SIGKILL)
            let started = try await fleet.scalar(PostgresQuery(unsafeSQL: claimed), as: String.self)
                .split(separator: " ").map(String.init)
            let heavyFirst = try await fleet.scalar(
                """
                SELECT c.id FROM clusters c JOIN jobs j ON j.cluster_id = c.id AND j.kind = 'provision'
                WHERE c.owner = \(heavy) ORDER BY j.id LIMIT 1
                """, as: String.self)
            #expect(
                Array(started.prefix(3)) == [single.id, another.id, heavyFirst],
                "claimed: \(started)\n\(fleet.workerLogs())")
            #expect(
                try await fleet.scalar("SELECT count(*)::int FROM clusters WHERE state = 'requested'", as: Int.self)
                    == 52,
                "a worker of another region marks nothing provisioning")
        }
    }

    @Test("30 agents waiting for one cluster hold no connection between looks, and each sees it ready within seconds")
    func waitingAgentsHoldNoConnection() async throws {
        try await Fleet.with { fleet in
            // Next in line, with no worker: the agents look at their quickest (every 2 s).
            let cluster = try await SecurityTests.request(fleet, as: Fleet.clientLogin)
            let agents = try (0..<30).map { _ in
                try fleet.startInBackground(["client", "wait", cluster.id, "--timeout", "5m"])
            }
            try await eventually("every agent looked once", timeout: .seconds(60)) {
                agents.allSatisfy { $0.stderrSoFar().contains("\(cluster.id): requested") }
            }
            // The agents' connections, sampled for 6 s (each used to hold 3: two pooled and a LISTEN).
            var samples: [Int] = []
            let until = ContinuousClock.now + .seconds(6)
            while ContinuousClock.now < until {
                samples.append(
                    try await fleet.scalar(
                        "SELECT count(*)::int FROM pg_stat_activity WHERE usename = \(Fleet.clientLogin)", as: Int.self)
                )
                try await Task.sleep(for: .milliseconds(100))
            }
            let peak = samples.max() ?? 0
            let mean = Double(samples.reduce(0, +)) / Double(max(samples.count, 1))
            print(
                "measured: 30 waiting agents held at most \(peak) connections "
                    + "(mean \(mean) over \(samples.count) samples)"
            )
            #expect(peak < 15, "30 waiting agents held \(peak) connections at once")
            let stillWaiting = agents.filter(\.isRunning).count
            #expect(stillWaiting == 30)

            // Ready: every agent notices within a few looks, and exits 0.
            try await fleet.execute("UPDATE clusters SET state = 'provisioning' WHERE id = \(cluster.id)")
            try await fleet.execute(
                """
                UPDATE clusters SET state = 'ready', ready_at = now(), expires_at = now() + interval '1 hour'
                WHERE id = \(cluster.id)
                """)
            let ready = ContinuousClock.now
            var noticed: [Double] = []
            for agent in agents {
                let run = await agent.finish(within: .seconds(30))
                #expect(run?.status == 0, "\(run?.stderr ?? "still waiting 30 s after ready")")
                noticed.append((ContinuousClock.now - ready).seconds)
            }
            print("measured: the last of 30 agents exited \(noticed.max() ?? 0) s after ready")
        }
    }

    @Test("a cluster queued for a region whose workers are gone is failed and torn down; a live worker keeps its own")
    func regionWithoutWorker() async throws {
        try await Fleet.with { fleet in
            let (gone, here) = ("eu-north-1", fleet.region)
            let worker = try fleet.start(["run", "--region-grace-seconds", "3", "--kinds", "provision,teardown"])
            try await eventually("the worker beats for its region", timeout: .seconds(60)) {
                try await fleet.scalar("SELECT region_live(\(here))", as: Bool.self)
            }
            // A cluster recorded in a region whose last worker beat once and left.
            let cluster = try await SecurityTests.request(fleet, as: Fleet.clientLogin)
            try await fleet.execute("SELECT worker_beat(\(gone), 'ami-12345678', interval '2 seconds')")
            try await fleet.execute("UPDATE clusters SET region = \(gone) WHERE id = \(cluster.id)")
            try fleet.start(["janitor", "--interval-seconds", "1"])
            try await eventually("the cluster destroyed", timeout: .seconds(120)) {
                try await fleet.state(of: cluster.id) == "destroyed"
            }
            let events = try await fleet.events(of: cluster.id)
            #expect(events.contains("failed") && events.contains("teardown-no-worker"), "\(events)")
            let error = try await fleet.scalar(
                "SELECT last_error FROM clusters WHERE id = \(cluster.id)", as: String.self)
            #expect(error.contains("no live worker in region \(gone)"), "\(error)")
            try await fleet.expectNothingLeft(cluster.id, region: gone)
            // Its own region stayed live while it ran (it beats every 0.75 s), and lapses once it stopped.
            #expect(try await fleet.scalar("SELECT region_live(\(here))", as: Bool.self))
            await fleet.stopProcess(worker)
            try await eventually("the stopped worker's region lapses", timeout: .seconds(30)) {
                try await !fleet.scalar("SELECT region_live(\(here))", as: Bool.self)
            }
        }
    }
}
