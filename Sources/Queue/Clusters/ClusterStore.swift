import Foundation
import Logging
import PostgresNIO

/// The cluster rows: requests, checkpoints, nodes, keys, logs, lifetimes and teardown.
///
/// Writes a worker makes while it holds a job are fenced on that job's lease, in the same
/// statement: a worker that lost its lease cannot overwrite what its successor records.
public struct ClusterStore: Sendable {
    public let client: PostgresClient
    public let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// The channel every cluster change is announced on (payload: the cluster id).
    public static let notificationChannel = "flotilla_clusters"

    private var queue: JobQueue { JobQueue(client: self.client, logger: self.logger) }

    /// Runs `body`, turning PostgreSQL's refusals (the state machine's among them) into ``QueueError``s.
    func mapClusterErrors<T>(_ body: () async throws -> T) async throws -> T {
        try await self.queue.mapErrors(body)
    }

    // MARK: Requests (client)

    /// Creates the cluster, its secrets and its provision job in one transaction. A request
    /// id that was used before returns the cluster it created (`created == false`) when the
    /// owner matches; another owner is refused.
    public func request(_ new: NewCluster) async throws -> (id: String, leaseToken: String, created: Bool) {
        if let requestID = new.requestID, let existing = try await self.reuse(requestID, new) { return existing }
        let payload = "{\"cluster_id\": \"\(new.id)\"}"
        do {
            try await self.client.withTransaction(logger: self.logger) { connection in
                try await connection.query("""
                    INSERT INTO clusters (id, request_id, owner, masters, agents, public_agents, instance_type, request, lifetime, abandon_at)
                    VALUES (\(new.id), \(new.requestID), \(new.owner), \(new.masters), \(new.agents), \(new.publicAgents),
                            \(new.instanceType), \(new.request)::jsonb, make_interval(secs => \(new.lifetime.seconds)),
                            now() + make_interval(secs => \(new.abandonAfter.seconds)))
                    """, logger: self.logger)
                try await connection.query("""
                    INSERT INTO cluster_secrets (cluster_id, lease_token) VALUES (\(new.id), \(new.leaseToken))
                    """, logger: self.logger)
                try await connection.query("""
                    INSERT INTO jobs (kind, payload, max_attempts, idempotency_key)
                    VALUES ('provision', \(payload)::jsonb, 5, \("provision:" + new.id))
                    """, logger: self.logger)
                try await connection.query("""
                    INSERT INTO cluster_events (cluster_id, kind, detail)
                    VALUES (\(new.id), 'requested', jsonb_build_object('owner', \(new.owner)::text))
                    """, logger: self.logger)
            }
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError as? PSQLError, inner.sqlState == SQLState.uniqueViolation,
               let requestID = new.requestID, let existing = try await self.reuse(requestID, new) {
                return existing
            }
            throw QueueError(.database, "could not record the request: \(Migrator.describe(error))", underlying: error)
        }
        return (new.id, new.leaseToken, true)
    }

    /// The cluster an earlier request with the same id made, for a retry by the same owner:
    /// its deadline is moved on (the retry waits for it now). A cluster that is being torn
    /// down or is gone cannot be handed out again.
    private func reuse(_ requestID: String, _ new: NewCluster) async throws -> (id: String, leaseToken: String, created: Bool)? {
        let rows = try await self.client.query("""
            SELECT c.id, c.owner, c.state, s.lease_token FROM clusters c JOIN cluster_secrets s ON s.cluster_id = c.id
            WHERE c.request_id = \(requestID)
            """, logger: self.logger)
        var found: (id: String, owner: String, state: String, token: String?)?
        for try await row in rows.decode((String, String, String, String?).self) { found = row }
        guard let found else { return nil }
        guard found.owner == new.owner else {
            throw QueueError(.invalidInput, "request id \(requestID) belongs to another owner")
        }
        guard let token = found.token, !["tearing_down", "teardown_failed", "destroyed", "failed"].contains(found.state) else {
            throw QueueError(.conflict, "request id \(requestID) was used for cluster \(found.id), which is \(found.state): use a new request id")
        }
        try await self.client.query("""
            UPDATE clusters SET abandon_at = greatest(abandon_at, now() + make_interval(secs => \(new.abandonAfter.seconds)))
            WHERE id = \(found.id) AND collected_at IS NULL
            """, logger: self.logger)
        return (found.id, token, false)
    }

    // MARK: Reading

    static let columns = """
        id, request_id, owner, state, phase, masters, agents, public_agents, instance_type, request::text, checkpoint::text,
        extract(epoch FROM lifetime)::float8, ssh_user, ssh_port, ready_at, expires_at, release_requested_at, last_error,
        created_at, destroyed_at, region, deployment, teardown_reason
        """

    static func decode(_ row: PostgresRow) throws -> ClusterRecord {
        let (id, requestID, owner, state, phase, masters, agents, publicAgents, instanceType, request) =
            try row.decode((String, String?, String, String, String?, Int, Int, Int, String, String).self)
        var random = row.makeRandomAccess()
        func column<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T { try random[index].decode(T.self) }
        return ClusterRecord(
            id: id, requestID: requestID, owner: owner, state: ClusterState(rawValue: state) ?? .failed, phase: phase,
            masters: masters, agents: agents, publicAgents: publicAgents, instanceType: instanceType, request: request,
            checkpoint: try column(10, String?.self), lifetime: .milliseconds(Int64(try column(11, Double.self) * 1000)),
            sshUser: try column(12, String?.self), sshPort: try column(13, Int?.self), readyAt: try column(14, Date?.self),
            expiresAt: try column(15, Date?.self), releaseRequestedAt: try column(16, Date?.self),
            lastError: try column(17, String?.self), createdAt: try column(18, Date.self), destroyedAt: try column(19, Date?.self),
            region: try column(20, String?.self), deployment: try column(21, String?.self), teardownReason: try column(22, String?.self))
    }

    public func cluster(id: String) async throws -> ClusterRecord? {
        let rows = try await self.queue.mapErrors {
            try await self.client.query("SELECT \(unescaped: Self.columns) FROM clusters WHERE id = \(id)", logger: self.logger)
        }
        for try await row in rows { return try Self.decode(row) }
        return nil
    }

    /// Clusters, newest first, optionally of one owner and/or state.
    public func clusters(owner: String? = nil, state: ClusterState? = nil, limit: Int = 200) async throws -> [ClusterRecord] {
        let rows = try await self.client.query("""
            SELECT \(unescaped: Self.columns) FROM clusters
            WHERE (\(owner)::text IS NULL OR owner = \(owner)) AND (\(state?.rawValue)::text IS NULL OR state = \(state?.rawValue))
            ORDER BY created_at DESC LIMIT \(limit)
            """, logger: self.logger)
        var result: [ClusterRecord] = []
        for try await row in rows { result.append(try Self.decode(row)) }
        return result
    }

    public func nodes(clusterID: String) async throws -> [NodeRecord] {
        let rows = try await self.client.query("""
            SELECT role, instance_id, private_ip, public_ip, host_key FROM nodes WHERE cluster_id = \(clusterID)
            ORDER BY array_position(ARRAY['bootstrap', 'master', 'slave', 'slave_public'], role), private_ip
            """, logger: self.logger)
        var result: [NodeRecord] = []
        for try await (role, instance, privateIP, publicIP, hostKey) in rows.decode((String, String, String, String?, String?).self) {
            result.append(NodeRecord(role: role, instanceID: instance, privateIP: privateIP, publicIP: publicIP, hostKey: hostKey))
        }
        return result
    }

    /// Install logs by name.
    public func logs(clusterID: String) async throws -> [(name: String, contents: String)] {
        let rows = try await self.client.query("SELECT name, contents FROM cluster_logs WHERE cluster_id = \(clusterID) ORDER BY name", logger: self.logger)
        var result: [(String, String)] = []
        for try await (name, contents) in rows.decode((String, String).self) { result.append((name, contents)) }
        return result
    }

    // MARK: The lease holder's operations

    /// Throws unless `token` is the cluster's lease token. Compared in SQL; never logged.
    private func checkToken(_ id: String, _ token: String) async throws {
        guard let cluster = try await self.cluster(id: id) else {
            throw QueueError(.notFound, "no cluster with id \(id) (see `client list`)")
        }
        guard cluster.state != .destroyed else {
            throw QueueError(.conflict, "cluster \(id) is destroyed; its key and token were erased")
        }
        let rows = try await self.client.query("SELECT 1 FROM cluster_secrets WHERE cluster_id = \(id) AND lease_token = \(token)", logger: self.logger)
        for try await _ in rows { return }
        throw QueueError(.invalidInput, "the lease token does not match cluster \(id); nothing was changed")
    }

    /// The cluster's SSH private key, for the lease holder.
    /// Reading it collects the cluster: the server no longer gives it up as abandoned.
    public func privateKey(clusterID: String, leaseToken: String) async throws -> String {
        try await self.checkToken(clusterID, leaseToken)
        let rows = try await self.client.query("SELECT private_key FROM cluster_secrets WHERE cluster_id = \(clusterID)", logger: self.logger)
        for try await key in rows.decode(String?.self) {
            if let key {
                try await self.client.query("""
                    UPDATE clusters SET collected_at = coalesce(collected_at, now()) WHERE id = \(clusterID)
                    """, logger: self.logger)
                try await self.event(clusterID, "key-read", [:])
                return key
            }
        }
        throw QueueError(.notFound, "cluster \(clusterID) has no key yet (it is created when provisioning starts)")
    }

    /// Moves a ready cluster's expiry by `extension`, keeping its whole lifetime within
    /// `maximumLifetime`. Returns the new expiry.
    public func extend(clusterID: String, leaseToken: String, by amount: Duration, maximumLifetime: Duration) async throws -> Date {
        try await self.checkToken(clusterID, leaseToken)
        let rows = try await self.client.query("""
            UPDATE clusters SET expires_at = expires_at + make_interval(secs => \(amount.seconds)), updated_at = now(),
                                collected_at = coalesce(collected_at, now())
            WHERE id = \(clusterID) AND state = 'ready' AND release_requested_at IS NULL
              AND expires_at + make_interval(secs => \(amount.seconds)) - ready_at <= make_interval(secs => \(maximumLifetime.seconds))
            RETURNING expires_at
            """, logger: self.logger)
        for try await expires in rows.decode(Date.self) {
            try await self.event(clusterID, "extended", ["by_seconds": "\(Int(amount.seconds))"])
            return expires
        }
        guard let cluster = try await self.cluster(id: clusterID) else { throw QueueError(.notFound, "no cluster \(clusterID)") }
        guard cluster.state == .ready, cluster.releaseRequestedAt == nil else {
            throw QueueError(.invalidInput, "cluster \(clusterID) is \(cluster.state), not ready: only a ready cluster can be extended")
        }
        throw QueueError(.invalidInput, "extending by \(Int(amount.seconds / 60)) minutes would pass the maximum lifetime of \(Int(maximumLifetime.seconds / 3600)) hours")
    }

    /// Tears the cluster down now: a provision job that holds it is cancelled, and the
    /// teardown is queued, in one transaction. Returns the state it is in afterwards.
    @discardableResult
    public func release(clusterID: String, leaseToken: String) async throws -> ClusterState {
        try await self.checkToken(clusterID, leaseToken)
        return try await self.mapClusterErrors {
            let rows = try await self.client.query("SELECT cluster_begin_teardown(\(clusterID), 'released')", logger: self.logger)
            for try await state in rows.decode(String.self) { return ClusterState(rawValue: state) ?? .tearingDown }
            return .tearingDown
        }
    }

    public func event(_ clusterID: String, _ kind: String, _ detail: [String: String]) async throws {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: detail, options: [.sortedKeys]), as: UTF8.self)
        try await self.client.query("""
            INSERT INTO cluster_events (cluster_id, kind, detail) VALUES (\(clusterID), \(kind), \(json)::jsonb)
            """, logger: self.logger)
    }
}
