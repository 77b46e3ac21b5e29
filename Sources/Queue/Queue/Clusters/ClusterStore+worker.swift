import Foundation
import PostgresNIO

/// A worker's view of the job it holds, for fencing cluster writes on its lease.
public struct JobFence: Sendable {
    public var jobID: Int64
    public var leaseToken: UUID
    public init(_ job: ClaimedJob) {
        self.jobID = job.id
        self.leaseToken = job.leaseToken
    }
}

/// The fleet's writes to a cluster. Every change of `clusters.state` passes trigger
/// `clusters_guard_transition` (a transition the state machine does not allow fails with SQLSTATE
/// FLT01, see the diagram in README.md) and fires `clusters_notify_change` (`NOTIFY
/// flotilla_clusters` with the id, which wakes waiting clients and the janitor).
extension ClusterStore {
    /// The secrets a worker needs to resume: the private key and the key pair name.
    public func keyMaterial(clusterID: String) async throws -> (
        privateKey: String?, publicKey: String?, keyPairName: String?
    ) {
        let rows = try await self.client.query(
            """
            SELECT private_key, public_key, key_pair_name FROM cluster_secrets WHERE cluster_id = \(clusterID)
            """, logger: self.logger)
        for try await (privateKey, publicKey, name) in rows.decode((String?, String?, String?).self) {
            return (privateKey, publicKey, name)
        }
        return (nil, nil, nil)
    }

    /// Runs one of the worker functions of migration 0003, which check the job's lease and
    /// the cluster's state in the same statement and raise when either does not hold.
    @discardableResult
    private func call<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type = T.self) async throws
        -> T?
    where T._DecodableType == T {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(query, logger: self.logger)
            for try await value in rows.decode(T?.self) { return value }
            return nil
        }
    }

    /// Marks the cluster provisioning (from requested, or again on a later attempt) and
    /// records where it lives. The first worker's region and deployment win: the recorded
    /// ones are returned, and the caller must build in them.
    public func startProvisioning(
        clusterID: String, fence: JobFence, region: String, deployment: String,
        account: String?
    ) async throws -> (region: String, deployment: String) {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                """
                SELECT region, deployment
                FROM cluster_start_provisioning(\(fence.jobID), \(fence.leaseToken), \(clusterID),
                                                \(region), \(deployment), \(account))
                """, logger: self.logger)
            for try await (region, deployment) in rows.decode((String, String).self) { return (region, deployment) }
            throw QueueError(.conflict, "cluster \(clusterID) could not start provisioning")
        }
    }

    /// Stores a provisioning checkpoint (and the key, the first time it is seen): only while
    /// the cluster is provisioning under this job's lease.
    public func saveCheckpoint(
        clusterID: String, fence: JobFence, checkpoint: String, phase: String, subnetID: String?,
        privateKey: String?, publicKey: String?, keyPairName: String?
    ) async throws {
        try await self.call(
            """
            SELECT cluster_save_checkpoint(\(fence.jobID), \(fence.leaseToken), \(clusterID), \(checkpoint)::jsonb,
                                           \(phase), \(subnetID), \(privateKey), \(publicKey), \(keyPairName))::text
            """, as: String.self)
    }

    /// Publishes the nodes and starts the lifetime (provisioning → ready, nothing else).
    public func markReady(clusterID: String, fence: JobFence, nodes: [NodeRecord], sshUser: String, sshPort: Int)
        async throws
    {
        let json = String(decoding: try JSONEncoder().encode(nodes.map(NodeRow.init)), as: UTF8.self)
        try await self.call(
            """
            SELECT cluster_mark_ready(\(fence.jobID), \(fence.leaseToken), \(clusterID), \(json)::jsonb, \(sshUser),
                                      \(sshPort)::int)
            """, as: Date.self)
    }

    private struct NodeRow: Encodable {
        var instanceID: String, role: String, privateIP: String, publicIP: String?, hostKey: String?,
            instanceType: String?

        enum CodingKeys: String, CodingKey {
            case instanceID = "instance_id"
            case role
            case privateIP = "private_ip"
            case publicIP = "public_ip"
            case hostKey = "host_key"
            case instanceType = "instance_type"
        }

        init(_ node: NodeRecord) {
            (self.instanceID, self.role, self.privateIP, self.publicIP, self.hostKey, self.instanceType) =
                (node.instanceID, node.role, node.privateIP, node.publicIP, node.hostKey, node.instanceType)
        }
    }

    /// Stores install logs (fenced).
    public func saveLogs(clusterID: String, fence: JobFence, logs: [String: String]) async throws {
        let sorted = logs.sorted { $0.key < $1.key }
        try await self.call(
            """
            SELECT cluster_save_logs(\(fence.jobID), \(fence.leaseToken), \(clusterID), \(sorted.map(\.key))::text[],
                                     \(sorted.map(\.value))::text[])::text
            """, as: String.self)
    }

    /// What a teardown job found when it took its cluster.
    public enum TeardownStart: String, Sendable {
        /// Go on tearing down.
        case tearingDown = "tearing_down"
        /// A provision job still runs for the cluster: try again later without an attempt.
        case wait
        /// Nothing left to do.
        case destroyed
    }

    /// The teardown job takes its cluster (failed or teardown_failed become tearing_down).
    public func beginTeardownJob(clusterID: String, fence: JobFence) async throws -> TeardownStart {
        let state = try await self.call(
            """
            SELECT cluster_begin_teardown_job(\(fence.jobID), \(fence.leaseToken), \(clusterID))
            """, as: String.self)
        return state.flatMap(TeardownStart.init(rawValue:)) ?? .tearingDown
    }

    /// Records teardown progress (fenced; only while tearing down).
    public func teardownProgress(clusterID: String, fence: JobFence, phase: String) async throws {
        try await self.call(
            """
            SELECT cluster_teardown_progress(\(fence.jobID), \(fence.leaseToken), \(clusterID), \(phase))::text
            """, as: String.self)
    }

    /// tearing_down → destroyed; the private key and the lease token are erased with it.
    public func markDestroyed(clusterID: String, fence: JobFence) async throws {
        try await self.call(
            "SELECT cluster_mark_destroyed(\(fence.jobID), \(fence.leaseToken), \(clusterID))::text", as: String.self)
    }

    // MARK: The janitor's passes

    /// The lifetime pass: ready clusters whose lifetime ended, and requests nobody collected
    /// by their deadline, start their teardown. Returns the clusters and why.
    public func startDueTeardowns() async throws -> [(clusterID: String, reason: String)] {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                "SELECT cluster_id, reason FROM clusters_start_due_teardowns()", logger: self.logger)
            return try await rows.decode((String, String).self).collect().map { (clusterID: $0.0, reason: $0.1) }
        }
    }

    /// The reconcile pass: every unsettled cluster that no job is moving gets its teardown
    /// queued (a teardown_failed one after `retryAfter`). Returns the clusters and what was done.
    public func reconcile(retryAfter: Duration) async throws -> [(clusterID: String, action: String)] {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                """
                SELECT cluster_id, action FROM clusters_reconcile(make_interval(secs => \(retryAfter.seconds)))
                """, logger: self.logger)
            return try await rows.decode((String, String).self).collect().map { (clusterID: $0.0, action: $0.1) }
        }
    }

    /// When the lifetime pass is next due: the next expiry or abandonment deadline, if any.
    public func nextExpiry() async throws -> Date? {
        try await self.call(
            """
            SELECT clusters_next_deadline()
            """, as: Date.self)
    }

    /// This database's deployment id (the default `deployment` tag of its fleet).
    public func deploymentID() async throws -> String {
        guard let id = try await self.call("SELECT id FROM deployment", as: String.self) else {
            throw QueueError(.schemaBehind, "the database has no deployment id: run `worker migrate`")
        }
        return id
    }

    // MARK: Key pair deletions

    /// Records what the sweep of `region` found (replacing the region's previous report),
    /// for operators and `/metrics`.
    public func recordSweep(
        region: String, instances: [String], securityGroups: [String], keyPairs: [String], dryRun: Bool
    ) async throws {
        try await self.client.query(
            """
            INSERT INTO sweep_reports (region, swept_at, instances, security_groups, key_pairs, dry_run)
            VALUES (\(region), now(), \(instances)::text[], \(securityGroups)::text[], \(keyPairs)::text[], \(dryRun))
            ON CONFLICT (region) DO UPDATE SET swept_at = now(), instances = EXCLUDED.instances,
                security_groups = EXCLUDED.security_groups, key_pairs = EXCLUDED.key_pairs, dry_run = EXCLUDED.dry_run
            """, logger: self.logger)
    }

    /// Records that a key pair must be deleted; the row stays until AWS confirms.
    public func scheduleKeyPairDeletion(region: String, keyPairName: String, clusterID: String?) async throws {
        try await self.client.query(
            """
            INSERT INTO key_pair_deletions (region, key_pair_name, cluster_id)
            VALUES (\(region), \(keyPairName), \(clusterID))
            ON CONFLICT (region, key_pair_name) DO NOTHING
            """, logger: self.logger)
    }

    public struct KeyPairDeletion: Sendable, Hashable {
        public var region: String
        public var keyPairName: String
        public var clusterID: String?
        public var attempts: Int
    }

    /// Ready clusters whose expiry moved since their resources' `expires` tags were written
    /// (they became ready, or were extended): id, region and the expiry to write.
    public func clustersDueExpiryTags(limit: Int = 50) async throws -> [(id: String, region: String, expiresAt: Date)] {
        let rows = try await self.client.query(
            """
            SELECT id, region, expires_at FROM clusters
            WHERE state = 'ready' AND region IS NOT NULL AND expires_at IS NOT NULL
              AND expires_at IS DISTINCT FROM expiry_tagged_at
              AND coalesce(expiry_tag_failed_at, '-infinity') < now() - interval '5 minutes'
            ORDER BY expires_at LIMIT \(limit)
            """, logger: self.logger)
        var result: [(id: String, region: String, expiresAt: Date)] = []
        for try await (id, region, expires) in rows.decode((String, String, Date).self) {
            result.append((id, region, expires))
        }
        return result
    }

    /// Records that the cluster's tags now say `expiresAt` (unless it moved again meanwhile:
    /// then it stays due).
    /// Records a failed attempt: the cluster waits five minutes before the next, and does
    /// not hold up the others.
    public func expiryTagFailed(clusterID: String) async throws {
        try await self.client.query(
            "UPDATE clusters SET expiry_tag_failed_at = now() WHERE id = \(clusterID)", logger: self.logger)
    }

    public func expiryTagged(clusterID: String, expiresAt: Date) async throws {
        try await self.client.query(
            """
            UPDATE clusters SET expiry_tagged_at = \(expiresAt) WHERE id = \(clusterID) AND expires_at = \(expiresAt)
            """, logger: self.logger)
    }

    /// Deletes up to `batch` destroyed clusters older than `olderThan` (at least a day) with
    /// their jobs, events, logs and nodes, after adding their cost to `cost_history`.
    public func pruneHistory(olderThan: Duration, batch: Int) async throws -> (clusters: Int, jobs: Int) {
        let rows = try await self.client.query(
            "SELECT clusters, jobs FROM prune_history(make_interval(secs => \(olderThan.seconds)), \(batch)::int)",
            logger: self.logger)
        for try await (clusters, jobs) in rows.decode((Int, Int).self) { return (clusters, jobs) }
        return (0, 0)
    }

    /// Registers that this fleet builds in `region` with `image`, live for `liveFor` from now
    /// (`worker run` at start, then ``RegionBeat``): pools may be pinned to the region, and
    /// its clusters are not failed for want of a worker.
    public func registerBuildRegion(_ region: String, image: String, liveFor: Duration) async throws {
        try await self.client.query(
            "SELECT worker_beat(\(region), \(image), make_interval(secs => \(liveFor.seconds)))", logger: self.logger)
    }

    /// Records that `zone` of `region` had no capacity for `instanceType`, until `lifetime`
    /// from now (a later failure extends it).
    public func rememberCapacityFailure(
        region: String, zone: String, instanceType: String, code: String, lifetime: Duration
    ) async throws {
        let seconds = Double(lifetime.components.seconds)
        try await self.client.query(
            """
            INSERT INTO capacity_failures (region, zone, instance_type, code, until)
            VALUES (\(region), \(zone), \(instanceType), \(code), now() + make_interval(secs => \(seconds)))
            ON CONFLICT (region, zone, instance_type)
            DO UPDATE SET code = EXCLUDED.code, until = greatest(capacity_failures.until, EXCLUDED.until),
                          recorded_at = now()
            """, logger: self.logger)
    }

    /// The capacity failures of `region` not yet expired, keyed `"zone type"`; expired rows are pruned.
    public func capacityFailures(region: String) async throws -> [String: String] {
        try await self.client.query(
            "DELETE FROM capacity_failures WHERE until < now() - interval '1 hour'", logger: self.logger)
        let rows = try await self.client.query(
            """
            SELECT zone, instance_type, code FROM capacity_failures WHERE region = \(region) AND until > now()
            """, logger: self.logger)
        var result: [String: String] = [:]
        for try await (zone, type, code) in rows.decode((String, String, String).self) {
            result["\(zone) \(type)"] = code
        }
        return result
    }

    /// Deletions whose next attempt is due.
    public func dueKeyPairDeletions(limit: Int = 50) async throws -> [KeyPairDeletion] {
        let rows = try await self.client.query(
            """
            SELECT region, key_pair_name, cluster_id, attempts FROM key_pair_deletions
            WHERE deleted_at IS NULL AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT \(limit)
            """, logger: self.logger)
        var result: [KeyPairDeletion] = []
        for try await (region, name, cluster, attempts) in rows.decode((String, String, String?, Int).self) {
            result.append(KeyPairDeletion(region: region, keyPairName: name, clusterID: cluster, attempts: attempts))
        }
        return result
    }

    public func keyPairDeleted(region: String, keyPairName: String) async throws {
        try await self.client.query(
            """
            UPDATE key_pair_deletions SET deleted_at = now(), attempts = attempts + 1, last_error = NULL
            WHERE region = \(region) AND key_pair_name = \(keyPairName)
            """, logger: self.logger)
    }

    /// Keeps a failed delete pending, visible, and retried after `retryAfter`.
    public func keyPairDeletionFailed(region: String, keyPairName: String, error: String, retryAfter: Duration)
        async throws
    {
        try await self.client.query(
            """
            UPDATE key_pair_deletions SET attempts = attempts + 1, last_error = \(String(error.prefix(2000))),
                   next_attempt_at = now() + make_interval(secs => \(retryAfter.seconds))
            WHERE region = \(region) AND key_pair_name = \(keyPairName)
            """, logger: self.logger)
    }

    /// `home`, every region a cluster was recorded in, every region a worker built in, and
    /// every region swept before, for the sweep (a region whose clusters were all pruned by
    /// the retention is still swept).
    public func knownRegions(including home: String) async throws -> [String] {
        let rows = try await self.client.query(
            """
            SELECT region FROM clusters WHERE region IS NOT NULL
            UNION SELECT region FROM build_regions WHERE live_until IS NOT NULL
            UNION SELECT region FROM sweep_reports
            """, logger: self.logger)
        var regions: Set<String> = [home]
        for try await region in rows.decode(String.self) { regions.insert(region) }
        return regions.sorted()
    }

    /// Clusters by id, for the sweep: `nil` state for an id the database does not know.
    public func states(of ids: [String]) async throws -> [String: ClusterState] {
        guard !ids.isEmpty else { return [:] }
        let rows = try await self.client.query(
            "SELECT id, state FROM clusters WHERE id = ANY(\(ids)::text[])", logger: self.logger)
        var result: [String: ClusterState] = [:]
        for try await (id, state) in rows.decode((String, String).self) { result[id] = ClusterState(rawValue: state) }
        return result
    }
}
