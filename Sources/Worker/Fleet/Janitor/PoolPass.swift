import Foundation
import Logging
import Queue
import Telemetry

/// Keeps every warm pool at its target and checks its clusters before anyone takes them.
///
/// Each round, in one transaction (`pools_refill`): clusters built for a pool's earlier spec
/// are torn down, the target follows recent demand between the pool's min and max, and new
/// pool clusters are queued up to it (provisioned by `worker run` like any request). Then
/// every ready unclaimed pool cluster whose health verdict is missing or half spent is
/// checked (SSH on every node, the nodes' post-start checks), a few at a time: a passed check
/// makes it eligible for hand-out for `healthValidFor`; a failed one tears it down.
struct PoolPass: JanitorPass {
    let store: ClusterStore
    let jobs: ClusterJobs
    let wake: WakeSignal
    let interval: Duration
    let healthTimeout: Duration
    let healthValidFor: Duration
    let logger: Logger
    var name: String { "pool" }
    var wakeSignal: WakeSignal? { self.wake }

    func pass() async throws -> Duration {
        for (pool, action, cluster) in try await self.store.refillPools() {
            var metadata: Logger.Metadata = ["pool": "\(pool)", "action": "\(action)"]
            if let cluster { metadata[MetadataKey.clusterID] = "\(cluster)" }
            self.logger.info("pool", metadata: metadata)
        }
        let due = try await self.store.poolClustersToCheck(ahead: self.healthValidFor / 2)
        guard !due.isEmpty else { return self.interval }
        await withTaskGroup(of: Void.self) { group in
            for (index, id) in due.enumerated() {
                if index >= 4 { await group.next() }
                group.addTask { await self.check(id) }
            }
        }
        return self.interval
    }

    private func check(_ id: String) async {
        var logger = self.logger
        logger[metadataKey: MetadataKey.clusterID] = "\(id)"
        do {
            let started = ContinuousClock.now
            let problems = try await self.jobs.healthCheck(clusterID: id, timeout: self.healthTimeout, logger: logger)
            if problems.isEmpty {
                if try await self.store.poolClusterHealthy(id, validFor: self.healthValidFor) {
                    logger.info(
                        "pool cluster healthy",
                        metadata: ["seconds": "\(String(format: "%.2f", (ContinuousClock.now - started).seconds))"])
                }
            } else if try await self.store.poolClusterUnhealthy(id, problem: problems.joined(separator: "; ")) {
                logger.warning(
                    "pool cluster failed its health check; tearing it down",
                    metadata: ["problems": "\(problems.joined(separator: "; "))"])
            }
        } catch {
            logger.warning(
                "pool health check could not run", metadata: ["error": "\(DatabaseErrorDescription.describe(error))"])
        }
    }
}
