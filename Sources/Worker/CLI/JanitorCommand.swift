import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import PostgresNIO
import Queue
import ServiceLifecycle
import Web

struct JanitorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "janitor",
        abstract: "Enforce cluster lifetimes, delete key pairs, rescue jobs, sweep leaks (until SIGTERM/SIGINT).",
        discussion: """
            Two janitors may run; one leads (an advisory lock) and the other takes over if it
            stops. The leader starts teardown within seconds of a cluster's expiry or of the
            deadline of a request nobody collected, deletes key pairs after renewing credentials
            (a failed delete stays pending and visible in operator_key_pair_deletions), queues a
            teardown for every cluster that no job is moving (reconcile), rescues jobs whose
            lease expired, prunes old jobs and sweeps EC2 for resources tagged
            managed-by=flotilla and deployment=<FLOTILLA_DEPLOYMENT> whose cluster is destroyed
            or unknown. Another deployment's resources are never touched. It keeps each warm
            pool (`worker pool`) at its target and health-checks pool clusters before they can
            be handed out, records expiry warnings 30 and 10 minutes before a held cluster
            expires, and releases a cluster whose `client run` stopped beating.

              worker janitor
              worker janitor --dry-run --sweep-grace-seconds 600
            """
    )

    @Flag(help: "Report leaked resources found by the sweep; delete nothing.")
    var dryRun = false

    @Option(help: "Leave resources younger than this alone in the sweep. Env: FLOTILLA_SWEEP_GRACE_SECONDS.")
    var sweepGraceSeconds: Double = environmentValue("FLOTILLA_SWEEP_GRACE_SECONDS", default: 3600)

    @Option(help: "Seconds between sweeps of EC2.")
    var sweepIntervalSeconds: Double = 300

    @Option(
        help: """
            Seconds a failed teardown (state teardown_failed) waits before it is queued again. \
            Env: FLOTILLA_TEARDOWN_RETRY_SECONDS.
            """
    )
    var teardownRetrySeconds: Double = environmentValue("FLOTILLA_TEARDOWN_RETRY_SECONDS", default: 600)

    @Option(help: "Longest sleep between passes. Env: FLOTILLA_JANITOR_INTERVAL_SECONDS.")
    var intervalSeconds: Double = environmentValue("FLOTILLA_JANITOR_INTERVAL_SECONDS", default: 5)

    @Option(
        help: """
            Days finished jobs, and destroyed clusters with their events and logs, are kept (at least 1; \
            the cost of pruned clusters stays in cost_history). Env: FLOTILLA_RETENTION_DAYS.
            """)
    var retentionDays: Double = environmentValue("FLOTILLA_RETENTION_DAYS", default: 30)

    @Option(help: "Seconds a pool cluster's health check may take per node. Env: FLOTILLA_POOL_HEALTH_TIMEOUT_SECONDS.")
    var poolHealthTimeoutSeconds: Double = environmentValue("FLOTILLA_POOL_HEALTH_TIMEOUT_SECONDS", default: 20)

    @Option(
        help: """
            Seconds a passed health check lets a pool cluster be handed out; it is checked again half-way. \
            Env: FLOTILLA_POOL_HEALTH_VALID_SECONDS.
            """
    )
    var poolHealthValidSeconds: Double = environmentValue("FLOTILLA_POOL_HEALTH_VALID_SECONDS", default: 300)

    @Option(
        help: """
            Serve Prometheus metrics on HOST:PORT at /metrics (port 0 picks a free port; none turns it off). \
            Env: FLOTILLA_JANITOR_METRICS_ADDRESS.
            """
    )
    var metricsAddress: String =
        ProcessInfo.processInfo.environment["FLOTILLA_JANITOR_METRICS_ADDRESS"] ?? "127.0.0.1:9465"

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard self.sweepGraceSeconds >= 0, self.sweepIntervalSeconds > 0, self.intervalSeconds > 0,
            self.retentionDays >= 1,
            self.teardownRetrySeconds > 0, self.poolHealthTimeoutSeconds > 0, self.poolHealthValidSeconds >= 10
        else {
            throw ValidationError(
                "grace must not be negative; intervals and the health timeout must be positive; "
                    + "retention at least 1 day; a health check must count for 10 s or more")
        }
    }

    func run() async throws {
        let logger = self.common.makeLogger(label: "flotilla.janitor")
        let settings: DatabaseSettings
        do { settings = try DatabaseSettings.fromEnvironment() } catch let error as QueueError { fail(error.message) }
        let aws: AWSContext
        do { aws = try AWSContext.fromEnvironment(logger: logger) } catch { fail("cannot set up AWS: \(error)") }
        let client = PostgresClient(
            configuration: try settings.fleetClientConfiguration(maximumConnections: 4), backgroundLogger: logger)
        let queue = JobQueue(client: client, logger: logger)
        let janitor = Janitor(
            settings: settings, store: ClusterStore(client: client, logger: logger), aws: aws,
            configuration: .init(
                interval: .seconds(self.intervalSeconds), sweepInterval: .seconds(self.sweepIntervalSeconds),
                sweepGrace: .seconds(self.sweepGraceSeconds), dryRun: self.dryRun,
                teardownRetryAfter: .seconds(self.teardownRetrySeconds),
                poolHealthTimeout: .seconds(self.poolHealthTimeoutSeconds),
                poolHealthValidFor: .seconds(self.poolHealthValidSeconds),
                retention: .seconds(self.retentionDays * 86400)),
            logger: logger)
        let maintenance = QueueMaintenance(
            queue: queue,
            configuration: .init(rescueInterval: .seconds(1), retention: .seconds(self.retentionDays * 86400)),
            logger: logger)
        let metrics: (any Service)?
        do {
            metrics = try MetricsServer.fromOption(
                self.metricsAddress, environment: "FLOTILLA_JANITOR_METRICS_ADDRESS", client: client,
                fleetGauges: true, logger: logger)
        } catch let error as QueueError { fail(error.message) }
        let services = SchemaCheckedServices(
            client: client, settings: settings, services: (metrics.map { [$0] } ?? []) + [janitor, maintenance],
            logger: logger)
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: client),
                .init(
                    service: services, successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A pass in flight gets 5 s; a janitor still waiting on an unreachable database after
        // 8 s exits anyway (within `docker stop`'s 10 s).
        configuration.maximumGracefulShutdownDuration = .seconds(5)
        ShutdownDeadline(deadline: .seconds(8), logger: logger).watch()
        let group = ServiceGroup(configuration: configuration)
        do {
            try await group.run()
        } catch let error as QueueError {
            await aws.shutdown()
            fail(error.message)
        }
        await aws.shutdown()
    }
}
