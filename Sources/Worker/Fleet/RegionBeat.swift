import Logging
import Queue
import ServiceLifecycle

/// Says, as a `Service`, that a worker builds in `region`: it writes `build_regions`
/// (`worker_beat`) at start and then every quarter of `grace`, so the region stays live for
/// `grace` after the last beat. When every worker of a region is gone for longer, the
/// janitor fails that region's requested and provisioning clusters ("no live worker in
/// region …") and any worker tears them down (migration 0017).
public struct RegionBeat: Service {
    public let store: ClusterStore
    public let region: String
    public let image: String
    public let grace: Duration
    let logger: Logger

    public init(store: ClusterStore, region: String, image: String, grace: Duration, logger: Logger) {
        (self.store, self.region, self.image, self.grace, self.logger) = (store, region, image, grace, logger)
    }

    /// One beat; throws when the database cannot be written.
    public func beat() async throws {
        try await self.store.registerBuildRegion(self.region, image: self.image, liveFor: self.grace)
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                // Stopping ends the wait, and no beat follows: the region's grace runs from the last.
                do { try await Task.sleep(for: self.grace / 4) } catch { return }
                do {
                    try await self.beat()
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.warning(
                        "could not record that this worker builds in \(self.region); trying again",
                        metadata: ["error": "\(String(reflecting: error))"])
                }
            }
        }
    }
}
