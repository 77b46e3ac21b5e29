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

extension ClusterStore {
    /// The secrets a worker needs to resume: the private key and the key pair name.
    public func keyMaterial(clusterID: String) async throws -> (privateKey: String?, publicKey: String?, keyPairName: String?) {
        let rows = try await self.client.query("""
            SELECT private_key, public_key, key_pair_name FROM cluster_secrets WHERE cluster_id = \(clusterID)
            """, logger: self.logger)
        for try await (privateKey, publicKey, name) in rows.decode((String?, String?, String?).self) { return (privateKey, publicKey, name) }
        return (nil, nil, nil)
    }

    /// Runs a write only while `fence`'s job lease holds; `nil` rows mean it was lost.
    private func fenced(_ fence: JobFence, _ what: String, _ body: (PostgresConnection) async throws -> Bool) async throws {
        let held: Bool = try await self.client.withTransaction(logger: self.logger) { connection in
            let rows = try await connection.query("""
                SELECT 1 FROM jobs WHERE id = \(fence.jobID) AND lease_token = \(fence.leaseToken)
                  AND state = 'running' AND lease_expires_at > now()
                FOR UPDATE
                """, logger: self.logger)
            var held = false
            for try await _ in rows { held = true }
            guard held else { return false }
            return try await body(connection)
        }
        if !held {
            throw QueueError(.leaseLost, "cannot \(what): this worker no longer holds the job's lease; nothing was changed")
        }
    }

    /// Marks the cluster provisioning (from requested or a retried provisioning).
    public func startProvisioning(clusterID: String, fence: JobFence) async throws {
        try await self.fenced(fence, "start provisioning") { connection in
            try await connection.query("""
                UPDATE clusters SET state = 'provisioning', phase = coalesce(phase, 'started'), updated_at = now()
                WHERE id = \(clusterID) AND state IN ('requested', 'provisioning')
                """, logger: self.logger)
            return true
        }
    }

    /// Stores a provisioning checkpoint (and the key, the first time it is seen).
    public func saveCheckpoint(clusterID: String, fence: JobFence, checkpoint: String, phase: String,
                               privateKey: String?, publicKey: String?, keyPairName: String?) async throws {
        try await self.fenced(fence, "save a checkpoint") { connection in
            try await connection.query("""
                UPDATE clusters SET checkpoint = \(checkpoint)::jsonb, phase = \(phase), updated_at = now()
                WHERE id = \(clusterID)
                """, logger: self.logger)
            // The history of phases, for people and for the orchestration benchmark.
            try await connection.query("""
                INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (\(clusterID), 'phase', jsonb_build_object('phase', \(phase)::text))
                """, logger: self.logger)
            if let privateKey {
                try await connection.query("""
                    UPDATE cluster_secrets SET private_key = \(privateKey), public_key = \(publicKey), key_pair_name = \(keyPairName)
                    WHERE cluster_id = \(clusterID) AND private_key IS DISTINCT FROM \(privateKey)
                    """, logger: self.logger)
            }
            return true
        }
    }

    /// Publishes the nodes and starts the lifetime.
    public func markReady(clusterID: String, fence: JobFence, nodes: [NodeRecord], sshUser: String, sshPort: Int) async throws {
        try await self.fenced(fence, "mark the cluster ready") { connection in
            try await connection.query("DELETE FROM nodes WHERE cluster_id = \(clusterID)", logger: self.logger)
            for node in nodes {
                try await connection.query("""
                    INSERT INTO nodes (cluster_id, instance_id, role, private_ip, public_ip, host_key)
                    VALUES (\(clusterID), \(node.instanceID), \(node.role), \(node.privateIP), \(node.publicIP), \(node.hostKey))
                    """, logger: self.logger)
            }
            try await connection.query("""
                UPDATE clusters SET state = 'ready', phase = 'ready', ready_at = now(), expires_at = now() + lifetime,
                                    ssh_user = \(sshUser), ssh_port = \(sshPort), last_error = NULL, updated_at = now()
                WHERE id = \(clusterID)
                """, logger: self.logger)
            try await connection.query("INSERT INTO cluster_events (cluster_id, kind) VALUES (\(clusterID), 'ready')", logger: self.logger)
            return true
        }
    }

    /// Stores install logs (fenced).
    public func saveLogs(clusterID: String, fence: JobFence, logs: [String: String]) async throws {
        try await self.fenced(fence, "save logs") { connection in
            for (name, contents) in logs {
                try await connection.query("""
                    INSERT INTO cluster_logs (cluster_id, name, contents) VALUES (\(clusterID), \(name), \(contents))
                    ON CONFLICT (cluster_id, name) DO UPDATE SET contents = EXCLUDED.contents, created_at = now()
                    """, logger: self.logger)
            }
            return true
        }
    }

    /// Records a failed provisioning and queues its teardown, in one transaction.
    public func markFailed(clusterID: String, fence: JobFence, error: String) async throws {
        try await self.fenced(fence, "mark the cluster failed") { connection in
            try await connection.query("""
                UPDATE clusters SET state = 'failed', last_error = \(String(error.prefix(4000))), updated_at = now()
                WHERE id = \(clusterID) AND state IN ('requested', 'provisioning')
                """, logger: self.logger)
            try await connection.query("""
                INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (\(clusterID), 'failed', jsonb_build_object('error', \(String(error.prefix(4000)))::text))
                """, logger: self.logger)
            try await Self.enqueueTeardown(clusterID, on: connection, logger: self.logger)
            return true
        }
    }

    static func enqueueTeardown(_ clusterID: String, on connection: PostgresConnection, logger: Logger) async throws {
        let payload = "{\"cluster_id\": \"\(clusterID)\"}"
        try await connection.query("""
            INSERT INTO jobs (kind, payload, max_attempts, priority, idempotency_key)
            VALUES ('teardown', \(payload)::jsonb, 1000, 10, \("teardown:" + clusterID))
            ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            """, logger: logger)
    }

    /// The janitor's pass: every ready cluster whose lifetime ended or that was released
    /// becomes `tearing_down` and gets a teardown job. Returns their ids.
    public func startDueTeardowns() async throws -> [String] {
        try await self.client.withTransaction(logger: self.logger) { connection in
            let rows = try await connection.query("""
                UPDATE clusters SET state = 'tearing_down', phase = 'teardown queued', updated_at = now()
                WHERE id IN (SELECT id FROM clusters
                             WHERE state IN ('ready', 'requested', 'provisioning')
                               AND ((state = 'ready' AND expires_at <= now()) OR release_requested_at IS NOT NULL)
                             FOR UPDATE SKIP LOCKED)
                RETURNING id, (release_requested_at IS NOT NULL)
                """, logger: self.logger)
            var ids: [(String, Bool)] = []
            for try await row in rows.decode((String, Bool).self) { ids.append(row) }
            for (id, released) in ids {
                try await Self.enqueueTeardown(id, on: connection, logger: self.logger)
                try await connection.query("""
                    INSERT INTO cluster_events (cluster_id, kind) VALUES (\(id), \(released ? "teardown-released" : "teardown-expired"))
                    """, logger: self.logger)
            }
            return ids.map(\.0)
        }
    }

    /// When the next ready cluster expires, if any.
    public func nextExpiry() async throws -> Date? {
        let rows = try await self.client.query("SELECT min(expires_at) FROM clusters WHERE state = 'ready'", logger: self.logger)
        for try await date in rows.decode(Date?.self) { return date }
        return nil
    }

    /// Marks teardown under way (fenced).
    public func markTearingDown(clusterID: String, fence: JobFence, phase: String) async throws {
        try await self.fenced(fence, "record teardown progress") { connection in
            try await connection.query("""
                UPDATE clusters SET state = 'tearing_down', phase = \(phase), updated_at = now()
                WHERE id = \(clusterID) AND state <> 'destroyed'
                """, logger: self.logger)
            return true
        }
    }

    public func markDestroyed(clusterID: String, fence: JobFence) async throws {
        try await self.fenced(fence, "mark the cluster destroyed") { connection in
            try await connection.query("""
                UPDATE clusters SET state = 'destroyed', phase = 'destroyed', destroyed_at = now(), updated_at = now()
                WHERE id = \(clusterID)
                """, logger: self.logger)
            try await connection.query("INSERT INTO cluster_events (cluster_id, kind) VALUES (\(clusterID), 'destroyed')", logger: self.logger)
            return true
        }
    }

    // MARK: Key pair deletions

    /// Records that a key pair must be deleted; the row stays until AWS confirms.
    public func scheduleKeyPairDeletion(region: String, keyPairName: String, clusterID: String?) async throws {
        try await self.client.query("""
            INSERT INTO key_pair_deletions (region, key_pair_name, cluster_id) VALUES (\(region), \(keyPairName), \(clusterID))
            ON CONFLICT (region, key_pair_name) DO NOTHING
            """, logger: self.logger)
    }

    public struct KeyPairDeletion: Sendable, Hashable {
        public var region: String
        public var keyPairName: String
        public var clusterID: String?
        public var attempts: Int
    }

    /// Deletions whose next attempt is due.
    public func dueKeyPairDeletions(limit: Int = 50) async throws -> [KeyPairDeletion] {
        let rows = try await self.client.query("""
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
        try await self.client.query("""
            UPDATE key_pair_deletions SET deleted_at = now(), attempts = attempts + 1, last_error = NULL
            WHERE region = \(region) AND key_pair_name = \(keyPairName)
            """, logger: self.logger)
    }

    /// Keeps a failed delete pending, visible, and retried after `retryAfter`.
    public func keyPairDeletionFailed(region: String, keyPairName: String, error: String, retryAfter: Duration) async throws {
        try await self.client.query("""
            UPDATE key_pair_deletions SET attempts = attempts + 1, last_error = \(String(error.prefix(2000))),
                   next_attempt_at = now() + make_interval(secs => \(retryAfter.seconds))
            WHERE region = \(region) AND key_pair_name = \(keyPairName)
            """, logger: self.logger)
    }

    /// Clusters by id, for the sweep: `nil` state for an id the database does not know.
    public func states(of ids: [String]) async throws -> [String: ClusterState] {
        guard !ids.isEmpty else { return [:] }
        let rows = try await self.client.query("SELECT id, state FROM clusters WHERE id = ANY(\(ids)::text[])", logger: self.logger)
        var result: [String: ClusterState] = [:]
        for try await (id, state) in rows.decode((String, String).self) { result[id] = ClusterState(rawValue: state) }
        return result
    }
}
