import Logging
import ServiceLifecycle

/// Keeps the queue healthy, as a `Service`: rescues jobs whose lease expired (every
/// `rescueInterval`) and deletes finished jobs older than `retention` (every
/// `pruneInterval`). Every worker may run it; rescuers skip each other's rows.
public struct QueueMaintenance: Service {
    public struct Configuration: Sendable {
        public var rescueInterval: Duration = .seconds(2)
        public var pruneInterval: Duration = .seconds(600)
        /// How long finished jobs are kept.
        public var retention: Duration = .seconds(30 * 24 * 3600)

        public init(
            rescueInterval: Duration = .seconds(2), pruneInterval: Duration = .seconds(600),
            retention: Duration = .seconds(30 * 24 * 3600)
        ) {
            self.rescueInterval = rescueInterval
            self.pruneInterval = pruneInterval
            self.retention = retention
        }
    }

    public let queue: JobQueue
    public let configuration: Configuration
    let logger: Logger

    public init(queue: JobQueue, configuration: Configuration = Configuration(), logger: Logger) {
        self.queue = queue
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await self.loop() }
    }

    private func loop() async throws {
        let clock = ContinuousClock()
        var nextPrune = clock.now
        while !Task.isCancelled {
            do {
                let report = try await self.queue.rescueExpiredLeases()
                if !(report.requeued.isEmpty && report.failed.isEmpty && report.cancelled.isEmpty) {
                    self.logger.warning(
                        "rescued jobs whose lease expired",
                        metadata: [
                            "requeued": "\(report.requeued)", "failed": "\(report.failed)",
                            "cancelled": "\(report.cancelled)",
                        ])
                }
                if clock.now >= nextPrune {
                    let pruned = try await self.queue.pruneFinished(olderThan: self.configuration.retention)
                    if pruned > 0 { self.logger.info("pruned finished jobs", metadata: ["count": "\(pruned)"]) }
                    nextPrune = clock.now.advanced(by: self.configuration.pruneInterval)
                }
            } catch {
                self.logger.warning(
                    "queue maintenance failed; retrying", metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await Task.sleep(for: self.configuration.rescueInterval)
        }
    }
}
