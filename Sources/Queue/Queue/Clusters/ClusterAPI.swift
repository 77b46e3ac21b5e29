import Foundation
import Logging
import PostgresNIO

/// What a CI agent may do, through the only door the database gives it: the `api_*`
/// functions of migration 0004 (SECURITY DEFINER, granted to `flotilla_client`). The
/// functions check the lease token, the policy and the caller's identity (the login), so a
/// client that bypasses this type with `psql` meets the same refusals.
public struct ClusterAPI: Sendable {
    public let client: PostgresClient
    public let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    private var queue: JobQueue { JobQueue(client: self.client, logger: self.logger) }

    /// Records a request for the login's own cluster, within the policy and its quota. A
    /// request id used before by the same login returns that cluster with a new working
    /// token (`created == false`).
    /// A request whose spec matches a warm pool takes one of its ready clusters in the same
    /// statement (``RequestReceipt/pool`` names it), as `new.poolMode` allows.
    public func request(_ new: NewCluster) async throws -> RequestReceipt {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                """
                SELECT id, lease_token, created, from_pool
                FROM flotilla_api.api_request(\(new.requestID), \(new.label), \(new.request)::jsonb,
                                 \(new.abandonAfter.seconds)::float8, \(new.poolMode.rawValue), \(new.poolName))
                """, logger: self.logger)
            for try await (id, token, created, pool) in rows.decode((String, String, Bool, String?).self) {
                return RequestReceipt(id: id, leaseToken: token, created: created, pool: pool)
            }
            throw QueueError(.database, "the request was not recorded")
        }
    }

    /// A pool near a request: the fields of the request that differ from the pool's spec
    /// (names only), and its ready spares.
    public struct PoolDistance: Sendable {
        public var pool: String
        public var differing: [String]
        public var ready: Int
    }

    /// The pools nearest to `request` (a request's JSON), fewest differences first (at most 5).
    public func poolsNear(request: String) async throws -> [PoolDistance] {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                "SELECT pool, differing, ready FROM flotilla_api.api_pool_explain(\(request)::jsonb)",
                logger: self.logger)
            return try await rows.decode((String, [String], Int).self).collect().map {
                PoolDistance(pool: $0.0, differing: $0.1, ready: $0.2)
            }
        }
    }

    /// A warm pool as any client sees it: name, shape, spares.
    public struct PoolSummary: Sendable {
        public var name: String
        public var masters: Int
        public var agents: Int
        public var publicAgents: Int
        public var instanceType: String
        public var region: String?
        public var ready: Int
        public var building: Int
        public var target: Int?
        public var minReady: Int
        public var maxReady: Int
    }

    public func pools() async throws -> [PoolSummary] {
        try await self.queue.mapErrors {
            let rows = try await self.client.query("SELECT * FROM flotilla_api.api_pools()", logger: self.logger)
            var result: [PoolSummary] = []
            for try await (name, masters, agents, publicAgents, type, region, ready, building, target, low, high)
                in rows.decode((String, Int, Int, Int, String, String?, Int, Int, Int?, Int, Int).self)
            {
                result.append(
                    PoolSummary(
                        name: name, masters: masters, agents: agents, publicAgents: publicAgents, instanceType: type,
                        region: region, ready: ready, building: building, target: target, minReady: low,
                        maxReady: high))
            }
            return result
        }
    }

    /// An image a request may name, and the regions where it can be built.
    public struct ImageSummary: Sendable {
        public var name: String
        public var distribution: String
        public var sshUser: String
        public var dockerVersion: String
        public var regions: [String]
    }

    public func images() async throws -> [ImageSummary] {
        try await self.queue.mapErrors {
            let rows = try await self.client.query("SELECT * FROM flotilla_api.api_images()", logger: self.logger)
            return try await rows.decode((String, String, String, String, [String]).self).collect().map {
                ImageSummary(name: $0.0, distribution: $0.1, sshUser: $0.2, dockerVersion: $0.3, regions: $0.4)
            }
        }
    }

    /// The regions the fleet builds in.
    public func regions() async throws -> [String] {
        try await self.queue.mapErrors {
            let rows = try await self.client.query("SELECT region FROM flotilla_api.api_regions()", logger: self.logger)
            return try await rows.decode(String.self).collect()
        }
    }

    /// Who this connection is, for `client doctor`: the login, whether the connection is
    /// encrypted, and which of Flotilla's roles the login holds.
    public struct Identity: Sendable {
        public var login: String
        public var encrypted: Bool
        public var roles: [String]
        public var serverVersion: String
    }

    public func identity() async throws -> Identity {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                """
                SELECT session_user::text,
                       coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),
                       array(SELECT r FROM unnest(ARRAY['flotilla_client', 'flotilla_worker', 'flotilla_operator']) r
                             WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
                               AND pg_has_role(session_user, r, 'MEMBER')),
                       current_setting('server_version')
                """, logger: self.logger)
            for try await (login, ssl, roles, version) in rows.decode((String, Bool, [String], String).self) {
                return Identity(login: login, encrypted: ssl, roles: roles, serverVersion: version)
            }
            throw QueueError(.database, "no answer")
        }
    }

    /// Where a waiting request stands: its provision job's state, the provision jobs that
    /// will be claimed before it, and the median request → ready time of recent clusters.
    public struct WaitInfo: Sendable {
        public var jobState: String?
        public var ahead: Int
        public var medianSeconds: Double?
        public var sample: Int
    }

    public func waitInfo(clusterID: String) async throws -> WaitInfo {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                "SELECT * FROM flotilla_api.api_wait_info(\(clusterID))", logger: self.logger)
            for try await (state, ahead, median, sample) in rows.decode((String?, Int, Double?, Int).self) {
                return WaitInfo(jobState: state, ahead: ahead, medianSeconds: median, sample: sample)
            }
            return WaitInfo(jobState: nil, ahead: 0, medianSeconds: nil, sample: 0)
        }
    }

    /// One line of a cluster's story.
    public struct Event: Sendable {
        public var id: Int64
        public var at: Date
        public var kind: String
        /// The detail object, as JSON text.
        public var detail: String
    }

    /// The cluster's events after event `after` (all with nil), oldest first.
    public func events(clusterID: String, after: Int64? = nil) async throws -> [Event] {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                "SELECT * FROM flotilla_api.api_events(\(clusterID), \(after))", logger: self.logger)
            return try await rows.decode((Int64, Date, String, String).self).collect().map {
                Event(id: $0.0, at: $0.1, kind: $0.2, detail: $0.3)
            }
        }
    }

    /// `client run`'s heartbeat: the janitor releases the cluster when no beat came for
    /// `timeout`. Returns the expiry (nil before ready).
    @discardableResult
    public func heartbeat(clusterID: String, leaseToken: String, timeout: Duration) async throws -> Date? {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                "SELECT flotilla_api.api_heartbeat(\(clusterID), \(leaseToken), \(timeout.seconds)::float8)",
                logger: self.logger)
            for try await value in rows.decode(Date?.self) { return value }
            return nil
        }
    }

    public func cluster(id: String) async throws -> ClusterRecord? {
        try await self.clusters(id: id, limit: 1).first
    }

    /// Clusters, newest first, optionally of one owner (a login) and/or state.
    public func clusters(id: String? = nil, owner: String? = nil, state: ClusterState? = nil, limit: Int = 200)
        async throws -> [ClusterRecord]
    {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                """
                SELECT * FROM flotilla_api.api_clusters(\(id), \(owner), \(state?.rawValue), \(limit)::int)
                """, logger: self.logger)
            var result: [ClusterRecord] = []
            for try await row in rows { result.append(try ClusterRecord.decode(row)) }
            return result
        }
    }

    public func nodes(clusterID: String) async throws -> [NodeRecord] {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                "SELECT * FROM flotilla_api.api_nodes(\(clusterID))", logger: self.logger)
            var result: [NodeRecord] = []
            for try await (role, instance, privateIP, publicIP, hostKey) in rows.decode(
                (String, String, String, String?, String?).self)
            {
                result.append(
                    NodeRecord(
                        role: role, instanceID: instance, privateIP: privateIP, publicIP: publicIP, hostKey: hostKey))
            }
            return result
        }
    }

    /// The cluster's SSH private key, for the lease holder; the read is recorded.
    public func privateKey(clusterID: String, leaseToken: String) async throws -> String {
        try await self.scalar("SELECT flotilla_api.api_key(\(clusterID), \(leaseToken))", as: String.self)
    }

    /// Moves a ready cluster's expiry by `amount`, within the policy. Returns the new expiry.
    public func extend(clusterID: String, leaseToken: String, by amount: Duration) async throws -> Date {
        try await self.scalar(
            "SELECT flotilla_api.api_extend(\(clusterID), \(leaseToken), \(amount.seconds)::float8)", as: Date.self)
    }

    /// Tears the cluster down now. Returns the state it is in afterwards.
    @discardableResult
    public func release(clusterID: String, leaseToken: String) async throws -> ClusterState {
        let state = try await self.scalar(
            "SELECT flotilla_api.api_release(\(clusterID), \(leaseToken))", as: String.self)
        return ClusterState(rawValue: state) ?? .tearingDown
    }

    /// Installs DC/OS from `installerURL` on a ready cluster of bare nodes (`--provision-only`):
    /// the cluster goes back to provisioning until the install is done.
    public func install(clusterID: String, leaseToken: String, installerURL: String) async throws {
        _ = try await self.scalar(
            "SELECT flotilla_api.api_install(\(clusterID), \(leaseToken), \(installerURL))", as: String.self)
    }

    /// Install logs by name, for the lease holder.
    public func logs(clusterID: String, leaseToken: String) async throws -> [(name: String, contents: String)] {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                "SELECT name, contents FROM flotilla_api.api_logs(\(clusterID), \(leaseToken))", logger: self.logger)
            return try await rows.decode((String, String).self).collect().map { (name: $0.0, contents: $0.1) }
        }
    }

    /// Keeps logs an agent collected with the cluster (as `collected-<name>`, each its last
    /// 1 MiB, at most 16 MiB per cluster), for the operator page. Returns how many were kept.
    @discardableResult
    public func keepLogs(clusterID: String, leaseToken: String, logs: [(name: String, contents: String)]) async throws
        -> Int
    {
        try await self.scalar(
            """
            SELECT flotilla_api.api_keep_logs(\(clusterID), \(leaseToken), \(logs.map(\.name))::text[],
                                              \(logs.map(\.contents))::text[])
            """, as: Int.self)
    }

    /// Jobs by state, the oldest runnable job's age, and the running and failed jobs.
    public func jobs() async throws -> (
        counts: [JobState: Int], oldestRunnableAge: Duration?, running: [JobQueue.JobSummary],
        failed: [JobQueue.JobSummary]
    ) {
        try await self.queue.mapErrors {
            var counts: [JobState: Int] = [:]
            var oldest: Duration?
            let summary = try await self.client.query(
                "SELECT state, jobs, oldest_runnable_seconds FROM flotilla_api.api_job_counts()", logger: self.logger)
            for try await (state, count, age) in summary.decode((String, Int, Double?).self) {
                if let state = JobState(rawValue: state) { counts[state] = count }
                if let age { oldest = .milliseconds(Int64(age * 1000)) }
            }
            var running: [JobQueue.JobSummary] = []
            var failed: [JobQueue.JobSummary] = []
            let rows = try await self.client.query("SELECT * FROM flotilla_api.api_jobs()", logger: self.logger)
            for try await (id, kind, cluster, state, attempt, worker, heartbeat, error)
                in rows.decode((Int64, String, String?, String, Int, String?, Double?, String?).self)
            {
                let job = JobQueue.JobSummary(
                    id: id, kind: kind, clusterID: cluster, attempt: attempt, worker: worker,
                    heartbeatAge: heartbeat, lastError: error)
                if state == "running" { running.append(job) } else { failed.append(job) }
            }
            return (counts, oldest, running, failed)
        }
    }

    private func scalar<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type) async throws -> T {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(query, logger: self.logger)
            for try await value in rows.decode(T.self) { return value }
            throw QueueError(.notFound, "no answer")
        }
    }
}
