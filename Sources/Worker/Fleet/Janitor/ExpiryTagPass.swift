import AWSProvisioner
import Foundation
import Logging
import Queue

/// Keeps the `expires` tag of every ready cluster's EC2 resources equal to its expiry: once
/// when it becomes ready (the tag written at creation is only an upper bound) and again after
/// each extend, so anyone reading the tags in the console or a cost tool sees the truth.
struct ExpiryTagPass: JanitorPass {
    let store: ClusterStore
    let aws: AWSContext
    let interval: Duration
    let logger: Logger
    var name: String { "expiry tags" }

    func pass() async throws -> Duration {
        for cluster in try await self.store.clustersDueExpiryTags() {
            do {
                let tagged = try await self.aws.provisioner(region: cluster.region, logger: self.logger)
                    .tagExpiry(clusterID: cluster.id, expiresAt: cluster.expiresAt)
                try await self.store.expiryTagged(clusterID: cluster.id, expiresAt: cluster.expiresAt)
                self.logger.debug(
                    "expiry tags written", metadata: ["cluster.id": "\(cluster.id)", "resources": "\(tagged)"])
            } catch {
                try? await self.store.expiryTagFailed(clusterID: cluster.id)
                self.logger.warning(
                    "cannot write expiry tags; will retry in 5 minutes",
                    metadata: ["cluster.id": "\(cluster.id)", "error": "\(error)"])
            }
        }
        return self.interval
    }
}
