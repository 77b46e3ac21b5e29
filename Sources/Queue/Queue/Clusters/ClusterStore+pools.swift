import Foundation
import Logging
import PostgresNIO

/// Warm pools (migration 0005), for `worker pool` and the janitor's pool pass.
extension ClusterStore {
    public struct Pool: Sendable {
        public var name: String
        public var paused: Bool
        public var minReady: Int
        public var maxReady: Int
        public var target: Int
        public var ready: Int
        public var building: Int
        public var handedOut: Int
        public var region: String?
        public var instanceType: String
        public var nodeCount: Int
        public var maxWarmAgeSeconds: Double
        public var cooldownSeconds: Double
        public var specHash: String
    }

    /// Creates or changes a pool; returns its spec's hash. Clusters built for an earlier
    /// spec are replaced by the next pool pass.
    @discardableResult
    public func setPool(
        name: String, spec: String, region: String?, min: Int, max: Int,
        maxWarmAge: Duration?, cooldown: Duration?
    ) async throws -> String {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                """
                SELECT pool_set(\(name), \(spec)::jsonb, \(region), \(min)::int, \(max)::int,
                                make_interval(secs => \(maxWarmAge?.seconds)::float8),
                                make_interval(secs => \(cooldown?.seconds)::float8))
                """, logger: self.logger)
            for try await hash in rows.decode(String.self) { return hash }
            throw QueueError(.database, "the pool was not recorded")
        }
    }

    /// Pauses (no refills; hand-outs go on) or resumes a pool. Returns whether it exists.
    @discardableResult
    public func pausePool(name: String, paused: Bool) async throws -> Bool {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                """
                UPDATE pools SET paused = \(paused), updated_at = now() WHERE name = \(name) RETURNING name
                """, logger: self.logger)
            for try await _ in rows.decode(String.self) { return true }
            return false
        }
    }

    /// Deletes a pool and starts the teardown of its unclaimed clusters; returns how many.
    public func deletePool(name: String) async throws -> Int {
        try await self.mapClusterErrors {
            let rows = try await self.client.query("SELECT pool_delete(\(name))", logger: self.logger)
            for try await count in rows.decode(Int.self) { return count }
            return 0
        }
    }

    public func pools() async throws -> [Pool] {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                """
                SELECT name, paused, min_ready, max_ready, target, ready, building, handed_out, region, instance_type,
                       node_count, extract(epoch FROM max_warm_age)::float8, extract(epoch FROM cooldown)::float8,
                       spec_hash
                FROM operator_pools ORDER BY name
                """, logger: self.logger)
            var result: [Pool] = []
            for try await row in rows {
                let c = row.makeRandomAccess()
                result.append(
                    Pool(
                        name: try c[0].decode(String.self), paused: try c[1].decode(Bool.self),
                        minReady: try c[2].decode(Int.self),
                        maxReady: try c[3].decode(Int.self), target: try c[4].decode(Int.self),
                        ready: try c[5].decode(Int.self),
                        building: try c[6].decode(Int.self), handedOut: try c[7].decode(Int.self),
                        region: try c[8].decode(String?.self), instanceType: try c[9].decode(String.self),
                        nodeCount: try c[10].decode(Int.self), maxWarmAgeSeconds: try c[11].decode(Double.self),
                        cooldownSeconds: try c[12].decode(Double.self), specHash: try c[13].decode(String.self)))
            }
            return result
        }
    }

    /// The pool pass: replaces clusters of a changed spec, refills to the demand-driven target,
    /// retires spare clusters above it after the cooldown. One row per action.
    public func refillPools() async throws -> [(pool: String, action: String, clusterID: String?)] {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                "SELECT pool, action, cluster_id FROM pools_refill()", logger: self.logger)
            return try await rows.decode((String, String, String?).self).collect().map {
                (pool: $0.0, action: $0.1, clusterID: $0.2)
            }
        }
    }

    /// Ready unclaimed pool clusters whose health verdict is missing or ends within `ahead`.
    public func poolClustersToCheck(ahead: Duration) async throws -> [String] {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                """
                SELECT cluster_id FROM pool_clusters_to_check(make_interval(secs => \(ahead.seconds)::float8))
                """, logger: self.logger)
            return try await rows.decode(String.self).collect()
        }
    }

    /// Records a passed health check, valid for `validFor`; false when the cluster was taken
    /// or retired meanwhile.
    @discardableResult
    public func poolClusterHealthy(_ clusterID: String, validFor: Duration) async throws -> Bool {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                """
                SELECT pool_cluster_healthy(\(clusterID), make_interval(secs => \(validFor.seconds)::float8))
                """, logger: self.logger)
            for try await ok in rows.decode(Bool.self) { return ok }
            return false
        }
    }

    /// Records a failed health check and starts the cluster's teardown (unless it was taken
    /// meanwhile: then its holder has it). Returns whether the teardown started.
    @discardableResult
    public func poolClusterUnhealthy(_ clusterID: String, problem: String) async throws -> Bool {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                "SELECT pool_cluster_unhealthy(\(clusterID), \(problem))", logger: self.logger)
            for try await ok in rows.decode(Bool.self) { return ok }
            return false
        }
    }

    /// Records the expiry warnings now due (30 and 10 minutes before expiry) as events.
    public func expiryWarnings() async throws -> [(clusterID: String, minutes: Int)] {
        try await self.mapClusterErrors {
            let rows = try await self.client.query(
                "SELECT cluster_id, minutes FROM clusters_expiry_warnings()", logger: self.logger)
            return try await rows.decode((String, Int).self).collect().map { (clusterID: $0.0, minutes: $0.1) }
        }
    }
}
