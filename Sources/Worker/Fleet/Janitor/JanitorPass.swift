import Foundation
import Logging
import Queue
import ServiceLifecycle
import Synchronization
import Telemetry

/// One of the janitor's passes: `pass()` runs, then again after the delay it returns (or
/// sooner when its ``WakeSignal`` fires), until the group shuts down. A pass that fails is
/// logged and tried again at the next round; it never stops the others.
protocol JanitorPass: Service {
    var name: String { get }
    var logger: Logger { get }
    var wakeSignal: WakeSignal? { get }
    /// Runs once; returns how long to wait before the next run.
    func pass() async throws -> Duration
}

extension JanitorPass {
    var wakeSignal: WakeSignal? { nil }

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                var delay = Duration.seconds(1)
                do {
                    delay = try await self.pass()
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.warning(
                        "janitor pass failed; will retry",
                        metadata: [
                            "pass": "\(self.name)", "error": "\(DatabaseErrorDescription.describe(error))",
                        ])
                }
                let due = ContinuousClock.now.advanced(by: delay)
                while ContinuousClock.now < due {
                    if self.wakeSignal?.take() == true { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }
}

/// A flag a notification sets and a pass takes: "something changed, look now".
final class WakeSignal: Sendable {
    private let flag = Mutex(false)
    func wake() { self.flag.withLock { $0 = true } }
    func take() -> Bool {
        self.flag.withLock { value in
            defer { value = false }
            return value
        }
    }
}

/// Expired clusters, requests nobody collected by their deadline, and clusters whose
/// holder's heartbeat stopped start their teardown; expiry warnings are recorded as events.
struct LifetimePass: JanitorPass {
    let store: ClusterStore
    let wake: WakeSignal
    let interval: Duration
    let logger: Logger
    var name: String { "lifetime" }
    var wakeSignal: WakeSignal? { self.wake }

    func pass() async throws -> Duration {
        for (id, reason) in try await self.store.startDueTeardowns() {
            self.logger.info("teardown started", metadata: [MetadataKey.clusterID: "\(id)", "reason": "\(reason)"])
        }
        for (id, minutes) in try await self.store.expiryWarnings() {
            self.logger.info("expiry warning", metadata: [MetadataKey.clusterID: "\(id)", "minutes": "\(minutes)"])
        }
        // Woken again at the next deadline (an expiry a NOTIFY announced is honoured at once).
        // A deadline already past after this pass is a cluster the pass had to skip (its row
        // held by another session): looked at again in a quarter second, not in a tight loop.
        guard let next = try await self.store.nextExpiry() else { return self.interval }
        let wait = next.timeIntervalSinceNow
        let until = wait > 0 ? Duration.milliseconds(Int64(wait * 1000) + 5) : .milliseconds(250)
        return min(until, self.interval)
    }
}

/// Every unsettled cluster that no job is moving gets its teardown queued.
struct ReconcilePass: JanitorPass {
    let store: ClusterStore
    let interval: Duration
    let retryAfter: Duration
    let logger: Logger
    var name: String { "reconcile" }

    func pass() async throws -> Duration {
        for (id, action) in try await self.store.reconcile(retryAfter: self.retryAfter) {
            self.logger.warning(
                "reconciled a cluster nobody was moving",
                metadata: [MetadataKey.clusterID: "\(id)", "action": "\(action)"])
        }
        return self.interval
    }
}

/// Destroyed clusters older than `retention` go, with their jobs, events, logs and nodes, a
/// batch at a time; their cost is kept per owner (`prune_history`, migration 0018).
struct RetentionPass: JanitorPass {
    let store: ClusterStore
    let retention: Duration
    let logger: Logger
    var name: String { "retention" }

    func pass() async throws -> Duration {
        var total = (clusters: 0, jobs: 0)
        while true {
            let pruned = try await self.store.pruneHistory(olderThan: self.retention, batch: 500)
            total = (total.clusters + pruned.clusters, total.jobs + pruned.jobs)
            if pruned.clusters < 500 { break }
        }
        if total.clusters > 0 {
            self.logger.info(
                "pruned destroyed clusters past retention",
                metadata: ["clusters": "\(total.clusters)", "jobs": "\(total.jobs)"])
        }
        return .seconds(3600)
    }
}
