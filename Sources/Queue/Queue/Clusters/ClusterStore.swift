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

    // MARK: Reading

    /// The columns of ``ClusterRecord/decode(_:)``, in its order: what `api_clusters` returns,
    /// then the checkpoint, which only the fleet reads.
    static let columns = """
        id, request_id, owner, label, state, phase, masters, agents, public_agents, instance_type, request::text,
        extract(epoch FROM lifetime)::float8, ssh_user, ssh_port, ready_at, expires_at, release_requested_at,
        last_error, created_at, destroyed_at, region, deployment, teardown_reason, checkpoint::text
        """

    public func cluster(id: String) async throws -> ClusterRecord? {
        let rows = try await self.queue.mapErrors {
            try await self.client.query(
                "SELECT \(unescaped: Self.columns) FROM clusters WHERE id = \(id)", logger: self.logger)
        }
        for try await row in rows { return try ClusterRecord.decode(row) }
        return nil
    }

    /// An image of the operators' allow-list.
    public struct ImageRecord: Sendable, Hashable {
        public var name: String
        public var sshUser: String
        public var dockerVersion: String
        /// Region → AMI id.
        public var amis: [String: String]
    }

    public func image(named name: String) async throws -> ImageRecord? {
        try await self.queue.mapErrors {
            let rows = try await self.client.query(
                "SELECT name, ssh_user, docker_version, amis::text FROM images WHERE name = \(name)",
                logger: self.logger)
            for try await (name, user, docker, amis) in rows.decode((String, String, String, String).self) {
                let map = (try? JSONDecoder().decode([String: String].self, from: Data(amis.utf8))) ?? [:]
                return ImageRecord(name: name, sshUser: user, dockerVersion: docker, amis: map)
            }
            return nil
        }
    }

    /// Clusters, newest first, optionally of one owner and/or state.
    public func clusters(owner: String? = nil, state: ClusterState? = nil, limit: Int = 200) async throws
        -> [ClusterRecord]
    {
        let rows = try await self.client.query(
            """
            SELECT \(unescaped: Self.columns) FROM clusters
            WHERE (\(owner)::text IS NULL OR owner = \(owner))
              AND (\(state?.rawValue)::text IS NULL OR state = \(state?.rawValue))
            ORDER BY created_at DESC LIMIT \(limit)
            """, logger: self.logger)
        var result: [ClusterRecord] = []
        for try await row in rows { result.append(try ClusterRecord.decode(row)) }
        return result
    }

    public func nodes(clusterID: String) async throws -> [NodeRecord] {
        let rows = try await self.client.query(
            """
            SELECT role, instance_id, private_ip, public_ip, host_key FROM nodes WHERE cluster_id = \(clusterID)
            ORDER BY array_position(ARRAY['bootstrap', 'master', 'slave', 'slave_public'], role), private_ip
            """, logger: self.logger)
        var result: [NodeRecord] = []
        for try await (role, instance, privateIP, publicIP, hostKey) in rows.decode(
            (String, String, String, String?, String?).self)
        {
            result.append(
                NodeRecord(role: role, instanceID: instance, privateIP: privateIP, publicIP: publicIP, hostKey: hostKey)
            )
        }
        return result
    }
}
