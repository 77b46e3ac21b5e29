import AWSProvisioner
import Foundation
import Logging
import PostgresNIO
import Queue
import ServiceLifecycle
import Synchronization

/// Keeps the pool honest, as a `Service`. Several may run; one leads, through a session
/// advisory lock held on its own connection, and the others wait to take over.
///
/// The leader, woken by cluster NOTIFYs and by a timer set to the next expiry:
/// - starts teardown of clusters whose lifetime ended or that were released;
/// - deletes pending key pairs after renewing credentials, backing off on failure;
/// - sweeps EC2 for `managed-by=flotilla` resources whose cluster is destroyed or unknown,
///   past a grace period (`dryRun` only reports them).
/// Lease rescue and retention run in ``QueueMaintenance`` beside it.
struct Janitor: Service {
    struct Configuration: Sendable {
        var interval: Duration = .seconds(5)
        var sweepInterval: Duration = .seconds(300)
        var sweepGrace: Duration = .seconds(3600)
        var dryRun = false
        var credentialMargin: Duration = .seconds(600)
    }

    static let leaderLockKey: Int64 = 0x466C_6F74_4A61_6E69 // "FlotJani"

    let settings: DatabaseSettings
    let store: ClusterStore
    let aws: AWSContext
    let configuration: Configuration
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.leadWhenPossible()
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.warning("janitor connection lost; retrying", metadata: ["error": "\(String(reflecting: error))"])
                }
                try? await Task.sleep(for: self.configuration.interval)
            }
        }
    }

    private func leadWhenPossible() async throws {
        let connection = try await PostgresConnection.connect(configuration: try self.settings.connectionConfiguration(), id: 1, logger: self.logger)
        defer { Task { try? await connection.close() } }
        var announced = false
        while !Task.isCancelled {
            let rows = try await connection.query("SELECT pg_try_advisory_lock(\(Self.leaderLockKey))", logger: self.logger)
            var leader = false
            for try await value in rows.decode(Bool.self) { leader = value }
            if leader { break }
            if !announced {
                self.logger.info("another janitor leads; standing by")
                announced = true
            }
            try await Task.sleep(for: self.configuration.interval)
        }
        self.logger.info("janitor leading")
        let (wakeups, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await connection.listen(on: ClusterStore.notificationChannel) { notifications in
                    for try await _ in notifications { wake.yield() }
                }
            }
            // The next moment a pass is due without a notification: the next expiry, or the
            // interval. Re-armed after every pass, so an expiry that a NOTIFY announced (a
            // cluster became ready, was extended) is honoured at once.
            let due = DueTime()
            group.addTask {
                var nextSweep = ContinuousClock.now
                wake.yield()
                for await _ in wakeups {
                    try await self.pass(sweep: ContinuousClock.now >= nextSweep)
                    if ContinuousClock.now >= nextSweep { nextSweep = ContinuousClock.now.advanced(by: self.configuration.sweepInterval) }
                    var delay = self.configuration.interval
                    if let next = try await self.store.nextExpiry() {
                        let until = next.timeIntervalSinceNow
                        if until < delay.seconds { delay = .milliseconds(Int64(max(0, until) * 1000) + 5) }
                    }
                    due.set(ContinuousClock.now.advanced(by: delay))
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(100))
                    if ContinuousClock.now >= due.get() {
                        due.set(ContinuousClock.now.advanced(by: self.configuration.interval))
                        wake.yield()
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// One pass of the leader's work.
    func pass(sweep: Bool) async throws {
        let started = try await self.store.startDueTeardowns()
        for id in started { self.logger.info("teardown started", metadata: [MetadataKey.clusterID: "\(id)"]) }
        try await self.deletePendingKeyPairs()
        if sweep {
            do {
                try await self.sweep()
            } catch {
                self.logger.warning("sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }

    func deletePendingKeyPairs() async throws {
        for deletion in try await self.store.dueKeyPairDeletions() where deletion.region == self.aws.settings.region {
            do {
                _ = try await self.aws.credentials.credentials(validFor: self.configuration.credentialMargin)
                try await self.aws.ec2.deleteKeyPair(name: deletion.keyPairName)
                try await self.store.keyPairDeleted(region: deletion.region, keyPairName: deletion.keyPairName)
                self.logger.info("key pair deleted", metadata: ["key_pair": "\(deletion.keyPairName)"])
            } catch {
                let backoff = Duration.seconds(min(3600, 30 * (1 << min(deletion.attempts, 7))))
                try await self.store.keyPairDeletionFailed(region: deletion.region, keyPairName: deletion.keyPairName,
                                                           error: "\(error)", retryAfter: backoff)
                self.logger.warning("key pair delete failed; will retry", metadata: [
                    "key_pair": "\(deletion.keyPairName)", "retry_in_seconds": "\(Int(backoff.seconds))", "error": "\(error)",
                ])
            }
        }
    }

    /// What the sweep found (and, unless dry-run, removed).
    struct SweepReport: Sendable {
        var instances: [String] = []
        var securityGroups: [String] = []
        var keyPairs: [String] = []
    }

    @discardableResult
    func sweep() async throws -> SweepReport {
        let ec2 = self.aws.ec2
        let managed = EC2Filter.tag("managed-by", "flotilla")
        let instances = try await ec2.describeInstances(filters: [managed]).filter { $0.state != .terminated }
        let groups = try await ec2.describeSecurityGroups(filters: [managed])
        let keys = try await ec2.describeKeyPairs(filters: [managed])
        func cluster(_ tags: [EC2Tag]) -> String? { tags.first { $0.key == "cluster" }?.value }
        let ids = Set(instances.compactMap { cluster($0.tags) } + groups.compactMap { cluster($0.tags) } + keys.compactMap { cluster($0.tags) })
        let states = try await self.store.states(of: Array(ids))
        let grace = self.configuration.sweepGrace.seconds
        // A resource may be swept when its cluster's row says destroyed, or when no row
        // knows its cluster and it is older than the grace period (by its `created` tag or
        // launch time; one without either is left to a person).
        func created(_ tags: [EC2Tag]) -> Date? {
            tags.first { $0.key == "created" }.flatMap { try? Date($0.value, strategy: .iso8601) }
        }
        func sweepable(_ tags: [EC2Tag], launched: Date? = nil) -> Bool {
            guard tags.first(where: { $0.key == "managed-by" })?.value == "flotilla" else { return false }
            if let id = cluster(tags), let state = states[id] { return state == .destroyed }
            guard let made = created(tags) ?? launched else { return false }
            return Date().timeIntervalSince(made) > grace
        }
        var report = SweepReport()
        report.instances = instances.filter { sweepable($0.tags, launched: $0.launchTime) }.map(\.instanceID)
        report.securityGroups = groups.filter { sweepable($0.tags) }.map(\.groupID)
        report.keyPairs = keys.filter { sweepable($0.tags) }.map(\.keyName)
        if report.instances.isEmpty && report.securityGroups.isEmpty && report.keyPairs.isEmpty { return report }
        self.logger.warning("sweep found leaked resources", metadata: [
            "instances": "\(report.instances)", "security_groups": "\(report.securityGroups)",
            "key_pairs": "\(report.keyPairs)", "dry_run": "\(self.configuration.dryRun)",
        ])
        guard !self.configuration.dryRun else { return report }
        if !report.instances.isEmpty { _ = try await ec2.terminateInstances(instanceIDs: report.instances) }
        for group in report.securityGroups {
            do { try await ec2.deleteSecurityGroup(groupID: group) } catch { self.logger.info("security group delete deferred", metadata: ["group": "\(group)", "error": "\(error)"]) }
        }
        for key in report.keyPairs {
            try await self.store.scheduleKeyPairDeletion(region: self.aws.settings.region, keyPairName: key, clusterID: nil)
        }
        try await self.deletePendingKeyPairs()
        return report
    }
}

/// The janitor's next due time, shared by its pass loop and its timer.
final class DueTime: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    func get() -> ContinuousClock.Instant { self.instant.withLock { $0 } }
    func set(_ value: ContinuousClock.Instant) { self.instant.withLock { $0 = value } }
}
