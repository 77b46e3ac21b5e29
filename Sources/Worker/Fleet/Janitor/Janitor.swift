import AWSProvisioner
import Foundation
import Logging
import PostgresNIO
import Queue
import ServiceLifecycle

/// Keeps the pool honest, as a `Service`. Several may run; one leads, through a session
/// advisory lock held on its own connection, and the others wait to take over.
///
/// The leader runs its passes as services of a nested `ServiceGroup`, for as long as it
/// holds the lock:
/// - ``LifetimePass``: expired clusters and requests nobody collected start their teardown,
///   woken by cluster NOTIFYs and by a timer set to the next deadline;
/// - ``KeyPairDeletionPass``: pending key pairs are deleted after renewing credentials,
///   backing off on failure, in each key pair's own region;
/// - ``ExpiryTagPass``: the `expires` tag of a ready cluster's resources follows its expiry;
/// - ``ReconcilePass``: every unsettled cluster that no job moves gets its teardown queued;
/// - ``SweepPass``: EC2 resources of this deployment whose cluster is destroyed or unknown;
/// - ``PoolPass``: warm pools refilled to their target, their clusters health-checked.
/// - ``RetentionPass``: destroyed clusters past the retention pruned, their cost kept.
/// Lease rescue and the pruning of finished jobs run in `QueueMaintenance` beside it.
package struct Janitor: Service {
    package struct Configuration: Sendable {
        package var interval: Duration = .seconds(5)
        package var sweepInterval: Duration = .seconds(300)
        package var sweepGrace: Duration = .seconds(3600)
        package var dryRun = false
        package var credentialMargin: Duration = .seconds(600)
        /// How long a teardown_failed cluster waits before its teardown is queued again.
        package var teardownRetryAfter: Duration = .seconds(600)
        /// A pool cluster's health check: its bound per node, and how long a pass counts.
        package var poolHealthTimeout: Duration = .seconds(20)
        package var poolHealthValidFor: Duration = .seconds(300)
        /// How long destroyed clusters (with their events, logs and jobs) are kept.
        package var retention: Duration = .seconds(30 * 86400)

        package init(
            interval: Duration = .seconds(5), sweepInterval: Duration = .seconds(300),
            sweepGrace: Duration = .seconds(3600),
            dryRun: Bool = false, credentialMargin: Duration = .seconds(600),
            teardownRetryAfter: Duration = .seconds(600),
            poolHealthTimeout: Duration = .seconds(20), poolHealthValidFor: Duration = .seconds(300),
            retention: Duration = .seconds(30 * 86400)
        ) {
            self.retention = retention
            self.poolHealthTimeout = poolHealthTimeout
            self.poolHealthValidFor = poolHealthValidFor
            self.interval = interval
            self.sweepInterval = sweepInterval
            self.sweepGrace = sweepGrace
            self.dryRun = dryRun
            self.credentialMargin = credentialMargin
            self.teardownRetryAfter = teardownRetryAfter
        }
    }

    static let leaderLockKey: Int64 = 0x466C_6F74_4A61_6E69 // "FlotJani"

    let settings: DatabaseSettings
    let store: ClusterStore
    let aws: AWSContext
    let configuration: Configuration
    let logger: Logger

    package init(
        settings: DatabaseSettings, store: ClusterStore, aws: AWSContext, configuration: Configuration, logger: Logger
    ) {
        self.settings = settings
        self.store = store
        self.aws = aws
        self.configuration = configuration
        self.logger = logger
    }

    package func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.leadWhenPossible()
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.warning(
                        "janitor connection lost; retrying",
                        metadata: ["error": "\(DatabaseErrorDescription.describe(error))"])
                }
                try? await Task.sleep(for: self.configuration.interval)
            }
        }
    }

    /// The passes the leader runs.
    func passes(wake: WakeSignal, poolWake: WakeSignal) async throws -> [any Service] {
        var deployment = self.aws.settings.deployment
        if deployment == nil { deployment = try await self.store.deploymentID() }
        return [
            LifetimePass(store: self.store, wake: wake, interval: self.configuration.interval, logger: self.logger),
            KeyPairDeletionPass(
                store: self.store, aws: self.aws, interval: self.configuration.interval,
                credentialMargin: self.configuration.credentialMargin, logger: self.logger),
            ExpiryTagPass(store: self.store, aws: self.aws, interval: self.configuration.interval, logger: self.logger),
            ReconcilePass(
                store: self.store, interval: self.configuration.interval,
                retryAfter: self.configuration.teardownRetryAfter, logger: self.logger),
            SweepPass(
                store: self.store, aws: self.aws, deployment: deployment!, interval: self.configuration.sweepInterval,
                grace: self.configuration.sweepGrace, dryRun: self.configuration.dryRun, logger: self.logger),
            RetentionPass(store: self.store, retention: self.configuration.retention, logger: self.logger),
            PoolPass(
                store: self.store, jobs: ClusterJobs(store: self.store, aws: self.aws), wake: poolWake,
                interval: self.configuration.interval, healthTimeout: self.configuration.poolHealthTimeout,
                healthValidFor: self.configuration.poolHealthValidFor, logger: self.logger),
        ]
    }

    private func leadWhenPossible() async throws {
        let connection = try await PostgresConnection.connect(
            configuration: try self.settings.connectionConfiguration(), id: 1, logger: self.logger)
        do {
            try await self.lead(on: connection)
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    private func lead(on connection: PostgresConnection) async throws {
        var announced = false
        while !Task.isCancelled {
            let rows = try await connection.query(
                "SELECT pg_try_advisory_lock(\(Self.leaderLockKey))", logger: self.logger)
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
        let wake = WakeSignal()
        let poolWake = WakeSignal()
        let passes = ServiceGroup(
            configuration: .init(
                services: try await self.passes(wake: wake, poolWake: poolWake).map {
                    ServiceGroupConfiguration.ServiceConfiguration(service: $0)
                }, logger: self.logger))
        // The lock lives as long as this connection: when the LISTEN on it ends, leadership
        // may be gone, and the passes stop with it.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await connection.listen(on: ClusterStore.notificationChannel) { notifications in
                    for try await _ in notifications {
                        wake.wake()
                        poolWake.wake()
                    }
                }
            }
            group.addTask { try await passes.run() }
            try await group.next()
            group.cancelAll()
        }
    }
}
