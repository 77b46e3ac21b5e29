import AWSProvisioner
import Foundation
import Logging
import Queue

/// Deletes pending key pairs, each in its own region, after making sure the credentials
/// outlive the call (renew, then delete). A failed delete stays pending and visible, and is
/// retried with backoff; its row is closed only once AWS confirmed.
struct KeyPairDeletionPass: JanitorPass {
    let store: ClusterStore
    let aws: AWSContext
    let interval: Duration
    let credentialMargin: Duration
    let logger: Logger
    var name: String { "key pair deletions" }

    func pass() async throws -> Duration {
        for deletion in try await self.store.dueKeyPairDeletions() {
            do {
                // Renews the credentials first; temporary ones nothing can renew are said to be so.
                _ = try await self.aws.provisioner(region: deletion.region, logger: self.logger)
                    .deleteKeyPair(
                        named: deletion.keyPairName, margin: self.credentialMargin, observer: SilentObserver())
                try await self.store.keyPairDeleted(region: deletion.region, keyPairName: deletion.keyPairName)
                self.logger.info(
                    "key pair deleted",
                    metadata: ["key_pair": "\(deletion.keyPairName)", "aws.region": "\(deletion.region)"])
            } catch {
                let backoff = Duration.seconds(min(3600, 30 * (1 << min(deletion.attempts, 7))))
                try await self.store.keyPairDeletionFailed(
                    region: deletion.region, keyPairName: deletion.keyPairName,
                    error: "\(error)", retryAfter: backoff)
                self.logger.warning(
                    "key pair delete failed; will retry",
                    metadata: [
                        "key_pair": "\(deletion.keyPairName)", "retry_in_seconds": "\(Int(backoff.seconds))",
                        "error": "\(error)",
                    ])
            }
        }
        return self.interval
    }
}
