import Foundation
import PostgresNIO
import Queue
import Synchronization
import TestSupport
import Testing

/// The cluster state machine and the convergence rules of migration 0003, against the real
/// PostgreSQL: every way a provision job ends leaves the cluster on its way to destroyed.
@Suite("Cluster lifecycle in the database", .timeLimit(.minutes(3)))
struct ClusterLifecycleTests {
    /// A requested cluster with its provision job, as `client request` writes them.
    static func request(_ store: ClusterStore, abandonAfter: Duration = .seconds(3600)) async throws -> (
        id: String, token: String
    ) {
        let request = ClusterRequest(
            masters: 1, agents: 1, publicAgents: 1, installerURL: "http://127.0.0.1/dcos_generate_config.sh",
            lifetimeSeconds: 3600)
        let made = try await ClusterAPI(client: store.client, logger: store.logger)
            .request(try NewCluster(request: request, abandonAfter: abandonAfter))
        return (made.id, made.leaseToken)
    }

    static func api(_ store: ClusterStore) -> ClusterAPI { ClusterAPI(client: store.client, logger: store.logger) }

    static func scalar<T: PostgresDecodable & Sendable>(
        _ client: PostgresClient, _ query: PostgresQuery, as: T.Type = T.self
    ) async throws -> T {
        let rows = try await client.query(query, logger: TestDatabase.logger)
        for try await value in rows.decode(T.self) { return value }
        throw QueueError(.notFound, "no row")
    }

    static func state(_ client: PostgresClient, _ id: String) async throws -> String {
        try await scalar(client, "SELECT state FROM clusters WHERE id = \(id)")
    }

    static func activeTeardowns(_ client: PostgresClient, _ id: String) async throws -> Int {
        try await scalar(
            client,
            """
            SELECT count(*)::int FROM jobs
            WHERE kind = 'teardown' AND cluster_id = \(id) AND state IN ('queued', 'running')
            """)
    }

    static func claimProvision(_ queue: JobQueue) async throws -> ClaimedJob {
        try #require(try await queue.claim(kinds: [.provision], limit: 1, owner: "w").first)
    }

    @Test(
        "an extend that returned is never followed by the expiry it prevented: the pass skips the row and decides again"
    )
    func extendRacingExpiry() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let (id, token) = try await Self.request(store)
            try await client.query(
                "UPDATE clusters SET state = 'provisioning' WHERE id = \(id)", logger: TestDatabase.logger)
            try await client.query(
                """
                UPDATE clusters SET state = 'ready', ready_at = now(), expires_at = now() + interval '1 hour'
                WHERE id = \(id)
                """, logger: TestDatabase.logger)
            try await client.withConnection { extender in
                // The extend has run (the row is locked, its answer on the way) but not committed, with the
                // committed expiry a moment away. api_extend refuses a cluster already past its expiry by the
                // clock, so on a loaded machine a short margin can pass before the call arrives: then the
                // margin doubles and the extend is tried again.
                var margin = 1
                while true {
                    try await client.query(
                        "UPDATE clusters SET expires_at = now() + make_interval(secs => \(margin)) WHERE id = \(id)",
                        logger: TestDatabase.logger)
                    try await extender.query("BEGIN", logger: TestDatabase.logger)
                    do {
                        for try await _ in try await extender.query(
                            "SELECT flotilla_api.api_extend(\(id), \(token), 3600)", logger: TestDatabase.logger)
                        {}
                        break
                    } catch let error as PSQLError where error.serverInfo?[.sqlState] == "FLT03" && margin < 16 {
                        try await extender.query("ROLLBACK", logger: TestDatabase.logger)
                        margin *= 2
                    }
                }
                // api_extend limits this transaction's idle time to 15 s (the server's guard against
                // a tenant's open transaction; SecurityTests covers it). On a loaded run the steps
                // below can outlast it, and that guard is not what this test is about.
                for try await _ in try await extender.query(
                    "SELECT set_config('idle_in_transaction_session_timeout', '0', true)", logger: TestDatabase.logger)
                {}
                // ...when the old expiry passes and the lifetime pass comes.
                try await eventually("the old expiry passed") {
                    try await Self.scalar(
                        client, "SELECT clock_timestamp() > expires_at FROM clusters WHERE id = \(id)")
                }
                let finished = Mutex(false)
                let pass = Task {
                    defer { finished.withLock { $0 = true } }
                    return try await store.startDueTeardowns()
                }
                // It skips the row (SKIP LOCKED), or waits for it; the extend commits either way.
                try await eventually("the pass skipped the row or waits for it") {
                    if finished.withLock({ $0 }) { return true }
                    let waiting: Int = try await Self.scalar(
                        client,
                        """
                        SELECT count(*)::int FROM pg_stat_activity
                        WHERE datname = current_database() AND wait_event_type = 'Lock'
                        """)
                    return waiting > 0
                }
                try await extender.query("COMMIT", logger: TestDatabase.logger)
                let started = try await pass.value
                #expect(started.isEmpty, "the pass tore down a cluster whose extend had returned: \(started)")
            }
            #expect(try await store.startDueTeardowns().isEmpty, "no longer due")
            #expect(try await Self.state(client, id) == "ready")
            let left: Double = try await Self.scalar(
                client, "SELECT extract(epoch FROM expires_at - now())::float8 FROM clusters WHERE id = \(id)")
            #expect(left > 3000, "the extended expiry stands: \(left) s left")
        }
    }

    @Test("a pool cluster handed out while its pool is deleted stays with the one it was handed to")
    func handOutRacingPoolDelete() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let spec =
                #"{"masters":1,"agents":0,"publicAgents":0,"instanceType":"m4.large","adminLocation":"0.0.0.0/0","#
                + #""installerURL":"http://127.0.0.1/dcos_generate_config.sh","genconfFiles":[]}"#
            let request = String(spec.dropLast()) + #","lifetimeSeconds":3600}"#
            for try await _ in try await client.query(
                "SELECT pool_set('race', \(spec)::jsonb, NULL, 1, 1, NULL, NULL)", logger: TestDatabase.logger)
            {}
            for try await _ in try await client.query("SELECT * FROM pools_refill()", logger: TestDatabase.logger) {}
            let id: String = try await Self.scalar(client, "SELECT id FROM clusters WHERE pool = 'race'")
            // Built and health-checked: a spare ready to hand out (its provision job long gone).
            try await client.query("DELETE FROM jobs WHERE cluster_id = \(id)", logger: TestDatabase.logger)
            try await client.query(
                "UPDATE clusters SET state = 'provisioning' WHERE id = \(id)", logger: TestDatabase.logger)
            try await client.query(
                """
                UPDATE clusters SET state = 'ready', ready_at = now(), expires_at = now() + interval '1 hour',
                                    healthy_until = now() + interval '1 hour'
                WHERE id = \(id)
                """, logger: TestDatabase.logger)
            try await client.withConnection { agent in
                // A CI job's request takes the spare; its answer is on the way, uncommitted...
                try await agent.query("BEGIN", logger: TestDatabase.logger)
                var taken: [String] = []
                for try await (cluster, pool) in try await agent.query(
                    "SELECT id, from_pool FROM flotilla_api.api_request(NULL, NULL, \(request)::jsonb, 60)",
                    logger: TestDatabase.logger
                ).decode((String, String?).self) { taken.append("\(cluster) \(pool ?? "-")") }
                #expect(taken == ["\(id) race"])
                // ...when an operator deletes the pool. The hand-out's demand row (a foreign key
                // to the pool) already holds the pool's row, which pool_delete locks first: the
                // deletion waits for the hand-out and then sees the cluster taken.
                let finished = Mutex(false)
                let deletion = Task {
                    defer { finished.withLock { $0 = true } }
                    let rows = try await client.query("SELECT pool_delete('race')", logger: TestDatabase.logger)
                    for try await count in rows.decode(Int.self) { return count }
                    return -1
                }
                try await eventually("the deletion waits for the row or is done") {
                    if finished.withLock({ $0 }) { return true }
                    let waiting: Int = try await Self.scalar(
                        client,
                        """
                        SELECT count(*)::int FROM pg_stat_activity
                        WHERE datname = current_database() AND wait_event_type = 'Lock'
                        """)
                    return waiting > 0
                }
                try await agent.query("COMMIT", logger: TestDatabase.logger)
                let tornDown = try await deletion.value
                #expect(tornDown == 0, "the pool's deletion tore down the cluster just handed out")
            }
            #expect(try await Self.state(client, id) == "ready")
            let handedOut: Bool = try await Self.scalar(
                client, "SELECT handed_out_at IS NOT NULL FROM clusters WHERE id = \(id)")
            #expect(handedOut)
        }
    }

    @Test("transitions outside the state machine are refused by the database, whoever writes them")
    func transitionsRefused() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let (id, _) = try await Self.request(store)
            for (from, to) in [("requested", "ready"), ("requested", "destroyed")] {
                let error = await #expect(throws: PSQLError.self, "\(from) → \(to)") {
                    try await client.query(
                        "UPDATE clusters SET state = \(to) WHERE id = \(id)", logger: TestDatabase.logger)
                }
                #expect(error?.serverInfo?[.sqlState] == "FLT01")
                #expect(error?.serverInfo?[.message]?.contains("cannot go from \(from) to \(to)") == true)
            }
            try await client.query(
                "UPDATE clusters SET state = 'provisioning' WHERE id = \(id)", logger: TestDatabase.logger)
            try await client.query(
                "UPDATE clusters SET state = 'tearing_down' WHERE id = \(id)", logger: TestDatabase.logger)
            for to in ["ready", "provisioning", "failed", "requested"] {
                await #expect(throws: PSQLError.self, "tearing_down → \(to)") {
                    try await client.query(
                        "UPDATE clusters SET state = \(to) WHERE id = \(id)", logger: TestDatabase.logger)
                }
            }
            #expect(try await Self.state(client, id) == "tearing_down")
        }
    }

    @Test(
        "checkpoints and ready need the job's lease and a provisioning cluster; released, they fail, never turn ready"
    )
    func guardedWrites() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let (id, token) = try await Self.request(store)
            let job = try await Self.claimProvision(queue)
            let fence = JobFence(job)
            let recorded = try await store.startProvisioning(
                clusterID: id, fence: fence, region: "us-west-2", deployment: "dep", account: nil)
            #expect(recorded.region == "us-west-2")
            // A second worker in another region gets the recorded region back.
            let again = try await store.startProvisioning(
                clusterID: id, fence: fence, region: "eu-west-1", deployment: "other", account: nil)
            #expect(again.region == "us-west-2" && again.deployment == "dep")
            try await store.saveCheckpoint(
                clusterID: id, fence: fence, checkpoint: "{}", phase: "key pair", subnetID: "subnet-1",
                privateKey: nil, publicKey: nil, keyPairName: nil)

            var stolen = fence
            stolen.leaseToken = UUID()
            let lost = await #expect(throws: QueueError.self) {
                try await store.saveCheckpoint(
                    clusterID: id, fence: stolen, checkpoint: "{}", phase: "x", subnetID: nil,
                    privateKey: nil, publicKey: nil, keyPairName: nil)
            }
            #expect(lost?.code == .leaseLost)

            #expect(try await Self.api(store).release(clusterID: id, leaseToken: token) == .tearingDown)
            #expect(
                try await Self.scalar(client, "SELECT cancel_requested FROM jobs WHERE id = \(job.id)", as: Bool.self))
            let refused = await #expect(throws: QueueError.self) {
                try await store.saveCheckpoint(
                    clusterID: id, fence: fence, checkpoint: "{}", phase: "instances", subnetID: nil,
                    privateKey: nil, publicKey: nil, keyPairName: nil)
            }
            #expect(refused?.code == .conflict)
            #expect(refused?.message.contains("cannot save a checkpoint") == true, "\(refused?.message ?? "")")
            let notReady = await #expect(throws: QueueError.self) {
                try await store.markReady(clusterID: id, fence: fence, nodes: [], sshUser: "centos", sshPort: 22)
            }
            #expect(notReady?.code == .conflict)
            #expect(try await Self.state(client, id) == "tearing_down")
            #expect(
                try await Self.scalar(
                    client, "SELECT count(*)::int FROM cluster_events WHERE cluster_id = \(id) AND kind = 'ready'",
                    as: Int.self) == 0)
        }
    }

    @Test(
        "a provision job failing on its last attempt, with any error, fails its cluster and queues one teardown"
    )
    func lastAttemptFails() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let (id, _) = try await Self.request(store)
            try await client.query(
                "UPDATE jobs SET max_attempts = 1 WHERE kind = 'provision'", logger: TestDatabase.logger)
            let job = try await Self.claimProvision(queue)
            _ = try await store.startProvisioning(
                clusterID: id, fence: JobFence(job), region: "r", deployment: "d", account: nil)
            #expect(
                try await queue.fail(
                    job, error: "DecodingError: the checkpoint is not a provision state", retryable: true) == .failed)
            #expect(try await Self.state(client, id) == "failed")
            #expect(
                try await Self.scalar(client, "SELECT last_error FROM clusters WHERE id = \(id)", as: String.self)
                    .contains("DecodingError"))
            #expect(try await Self.activeTeardowns(client, id) == 1)
        }
    }

    @Test("a lease lost on the last attempt (the worker died) ends the same way, through the rescuer")
    func leaseLostOnLastAttempt() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let (id, _) = try await Self.request(store)
            try await client.query(
                "UPDATE jobs SET max_attempts = 1 WHERE kind = 'provision'", logger: TestDatabase.logger)
            let job = try await Self.claimProvision(queue)
            _ = try await store.startProvisioning(
                clusterID: id, fence: JobFence(job), region: "r", deployment: "d", account: nil)
            try await client.query(
                "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = \(job.id)",
                logger: TestDatabase.logger)
            let report = try await queue.rescueExpiredLeases()
            #expect(report.failed == [job.id])
            #expect(try await Self.state(client, id) == "failed")
            #expect(try await Self.activeTeardowns(client, id) == 1)
        }
    }

    @Test(
        "an operator's SQL cancel: a queued provision ends at once, a running one when its worker acks; both converge"
    )
    func operatorCancel() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let (queuedID, _) = try await Self.request(store)
            let queuedJob = try await Self.scalar(
                client, "SELECT id FROM jobs WHERE cluster_id = \(queuedID)", as: Int64.self)
            #expect(try await Self.scalar(client, "SELECT cancel_job(\(queuedJob))", as: String.self) == "cancelled")
            #expect(try await Self.state(client, queuedID) == "failed")
            #expect(try await Self.activeTeardowns(client, queuedID) == 1)

            let (runningID, _) = try await Self.request(store)
            let job = try await Self.claimProvision(queue)
            _ = try await store.startProvisioning(
                clusterID: runningID, fence: JobFence(job), region: "r", deployment: "d", account: nil)
            #expect(try await Self.scalar(client, "SELECT cancel_job(\(job.id))", as: String.self) == "running")
            #expect(try await queue.heartbeat(job).cancelRequested)
            // A worker that has not noticed yet cannot go on: no checkpoint, no ready.
            let refused = await #expect(throws: QueueError.self) {
                try await store.markReady(
                    clusterID: runningID, fence: JobFence(job), nodes: [], sshUser: "centos", sshPort: 22)
            }
            #expect(refused?.code == .conflict)
            // Whatever the worker's handler then throws, a cancelled job never runs again.
            #expect(try await queue.fail(job, error: "interrupted", retryable: true) == .cancelled)
            #expect(try await Self.state(client, runningID) == "failed")
            #expect(
                try await Self.scalar(
                    client, "SELECT last_error FROM clusters WHERE id = \(runningID)", as: String.self
                ).hasPrefix("provisioning cancelled"))
            #expect(try await Self.activeTeardowns(client, runningID) == 1)
        }
    }

    @Test(
        "a teardown waits, spending no attempts, while a provision job runs; then it runs once and erases the secrets"
    )
    func teardownWaitsForProvision() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let (id, token) = try await Self.request(store)
            let provision = try await Self.claimProvision(queue)
            _ = try await store.startProvisioning(
                clusterID: id, fence: JobFence(provision), region: "r", deployment: "d", account: nil)
            try await store.saveCheckpoint(
                clusterID: id, fence: JobFence(provision), checkpoint: "{}", phase: "key pair", subnetID: nil,
                privateKey: "PRIVATE", publicKey: "ssh-ed25519 AAAA", keyPairName: "flotilla-x")
            try await Self.api(store).release(clusterID: id, leaseToken: token)
            // A second release, and a reconcile, queue nothing more.
            try await Self.api(store).release(clusterID: id, leaseToken: token)
            _ = try await store.reconcile(retryAfter: .seconds(0))
            #expect(try await Self.activeTeardowns(client, id) == 1)

            let teardown = try #require(try await queue.claim(kinds: [.teardown], limit: 1, owner: "t").first)
            #expect(try await store.beginTeardownJob(clusterID: id, fence: JobFence(teardown)) == .wait)
            try await queue.snooze(teardown, for: .zero)
            #expect(
                try await Self.scalar(client, "SELECT attempt FROM jobs WHERE id = \(teardown.id)", as: Int.self) == 0)

            try await queue.acknowledgeCancel(provision)
            #expect(try await Self.state(client, id) == "tearing_down")
            let again = try #require(try await queue.claim(kinds: [.teardown], limit: 1, owner: "t").first)
            #expect(again.id == teardown.id && again.attempt == 1)
            #expect(try await store.beginTeardownJob(clusterID: id, fence: JobFence(again)) == .tearingDown)
            try await store.teardownProgress(clusterID: id, fence: JobFence(again), phase: "terminating instances")
            try await store.markDestroyed(clusterID: id, fence: JobFence(again))
            #expect(try await Self.state(client, id) == "destroyed")
            let erased = try await Self.scalar(
                client,
                """
                SELECT private_key IS NULL AND public_key IS NULL
                       AND NOT EXISTS (SELECT 1 FROM cluster_tokens WHERE cluster_id = \(id))
                FROM cluster_secrets WHERE cluster_id = \(id)
                """, as: Bool.self)
            #expect(erased)
            await #expect(throws: QueueError.self) {
                try await Self.api(store).privateKey(clusterID: id, leaseToken: token)
            }
        }
    }

    @Test(
        "reconcile: a cluster whose provision job vanished fails and is torn down; a failed teardown is requeued later"
    )
    func reconcile() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let (id, _) = try await Self.request(store)
            try await client.query(
                "DELETE FROM jobs WHERE cluster_id = \(id)", logger: TestDatabase.logger)
            let first = try await store.reconcile(retryAfter: .seconds(3600))
            #expect(first.map(\.clusterID) == [id])
            #expect(try await Self.state(client, id) == "failed")
            #expect(try await Self.activeTeardowns(client, id) == 1)
            #expect(try await store.reconcile(retryAfter: .seconds(3600)).isEmpty, "a queued teardown is left alone")

            // The teardown runs out of attempts: visible as teardown_failed, retried after the wait.
            try await client.query(
                "UPDATE jobs SET max_attempts = 1 WHERE kind = 'teardown'", logger: TestDatabase.logger)
            let teardown = try #require(try await queue.claim(kinds: [.teardown], limit: 1, owner: "t").first)
            #expect(try await store.beginTeardownJob(clusterID: id, fence: JobFence(teardown)) == .tearingDown)
            #expect(try await queue.fail(teardown, error: "AuthFailure: credentials expired") == .failed)
            #expect(try await Self.state(client, id) == "teardown_failed")
            #expect(try await store.reconcile(retryAfter: .seconds(3600)).isEmpty, "not before the retry wait")
            let retried = try await store.reconcile(retryAfter: .seconds(0))
            #expect(retried.map(\.clusterID) == [id])
            #expect(try await Self.activeTeardowns(client, id) == 1)
            #expect(
                try await Self.scalar(client, "SELECT count(*)::int FROM jobs WHERE kind = 'teardown'", as: Int.self)
                    == 2)
        }
    }

    @Test("a request nobody collected by its deadline is given up; a collected one is not")
    func abandoned() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            let (forgotten, _) = try await Self.request(store, abandonAfter: .seconds(60))
            let (collected, _) = try await Self.request(store, abandonAfter: .seconds(60))
            // Their deadlines pass (as if a minute went by).
            try await client.query(
                "UPDATE clusters SET abandon_at = now() - interval '1 second' WHERE id IN (\(forgotten), \(collected))",
                logger: TestDatabase.logger)
            try await client.query(
                "UPDATE clusters SET collected_at = now() WHERE id = \(collected)", logger: TestDatabase.logger)
            let (fresh, _) = try await Self.request(store, abandonAfter: .seconds(3600))
            let started = try await store.startDueTeardowns()
            #expect(started.map(\.clusterID) == [forgotten])
            #expect(started.first?.reason == "abandoned")
            #expect(try await Self.state(client, forgotten) == "tearing_down")
            #expect(
                try await Self.scalar(
                    client,
                    "SELECT state FROM jobs WHERE kind = 'provision' AND cluster_id = \(forgotten)",
                    as: String.self) == "cancelled")
            #expect(try await Self.state(client, collected) == "requested")
            #expect(try await Self.state(client, fresh) == "requested")
            let next = try #require(try await store.nextExpiry())
            #expect(next.timeIntervalSinceNow > 3000)
        }
    }

    @Test(
        "a cluster not ready by its provisioning deadline, or in a region with no live worker, is failed and torn down"
    )
    func unsettled() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            func run(_ sql: PostgresQuery) async throws { try await client.query(sql, logger: TestDatabase.logger) }
            // Every new cluster has a deadline from the policy (2 hours by default).
            let (late, _) = try await Self.request(store, abandonAfter: .seconds(3600))
            let deadline = try await Self.scalar(
                client,
                "SELECT extract(epoch FROM provision_deadline - created_at)::int FROM clusters WHERE id = \(late)",
                as: Int.self)
            #expect(deadline == 7200)
            // Collected (a heartbeat set collected_at), so only the provisioning deadline can end it.
            try await run(
                """
                UPDATE clusters SET collected_at = now(), provision_deadline = now() - interval '1 second'
                WHERE id = \(late)
                """
            )
            // A region whose worker stopped beating, one whose worker beats, and one building on time.
            let (orphan, _) = try await Self.request(store, abandonAfter: .seconds(3600))
            let (served, _) = try await Self.request(store, abandonAfter: .seconds(3600))
            let (onTime, _) = try await Self.request(store, abandonAfter: .seconds(3600))
            try await run("SELECT worker_beat('eu-north-1', 'ami-1', interval '1 hour')")
            try await run("SELECT worker_beat('ap-south-2', 'ami-2', interval '1 hour')")
            try await run(
                "UPDATE build_regions SET live_until = now() - interval '1 second' WHERE region = 'ap-south-2'")
            try await run("UPDATE clusters SET region = 'ap-south-2' WHERE id = \(orphan)")
            try await run("UPDATE clusters SET region = 'eu-north-1', state = 'provisioning' WHERE id = \(served)")
            let next = try #require(try await store.nextExpiry())
            #expect(next.timeIntervalSinceNow < 1, "the passed deadlines are next: \(next)")

            let started = try await store.startDueTeardowns()
            #expect(
                Set(started.map { "\($0.clusterID) \($0.reason)" })
                    == ["\(late) provision-deadline", "\(orphan) no-worker"])
            for id in [late, orphan] {
                #expect(try await Self.state(client, id) == "tearing_down")
                #expect(try await Self.activeTeardowns(client, id) == 1)
                #expect(
                    try await Self.scalar(
                        client, "SELECT state FROM jobs WHERE kind = 'provision' AND cluster_id = \(id)",
                        as: String.self)
                        == "cancelled")
            }
            let errors = try await Self.scalar(
                client,
                """
                SELECT string_agg(last_error, ' | ' ORDER BY id = \(late) DESC) FROM clusters
                WHERE id IN (\(late), \(orphan))
                """, as: String.self)
            #expect(errors.contains("not ready by its provisioning deadline"), "\(errors)")
            #expect(errors.contains("no live worker in region ap-south-2"), "\(errors)")
            #expect(
                try await Self.scalar(
                    client,
                    """
                    SELECT count(*)::int FROM cluster_events
                    WHERE kind = 'failed' AND cluster_id IN (\(late), \(orphan))
                    """,
                    as: Int.self) == 2)
            #expect(try await Self.state(client, served) == "provisioning")
            #expect(try await Self.state(client, onTime) == "requested")
        }
    }
}
