import AWSProvisioner
import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Logging
import PostgresNIO
import Queue
import ServiceLifecycle
import Telemetry
import Web

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Claim and run jobs until SIGTERM or SIGINT.",
        discussion: """
            On SIGTERM/SIGINT the worker stops claiming at once, lets running jobs finish within
            the grace period, and hands the rest back to the queue without using up an attempt.
            It refuses to start when the database schema is behind (run `worker migrate`).

            Every option can also be set through the environment variable named in its help.
            """
    )

    @Option(help: "Jobs run at once. Env: FLOTILLA_CONCURRENCY.")
    var concurrency: Int = environmentValue("FLOTILLA_CONCURRENCY", default: 4)

    @Option(
        help: """
            Seconds a claim holds without a heartbeat; a dead worker's job is rescued after about this long. \
            Env: FLOTILLA_LEASE_SECONDS.
            """
    )
    var leaseSeconds: Double = environmentValue("FLOTILLA_LEASE_SECONDS", default: 45)

    @Option(help: "Seconds between heartbeats of a running job. Env: FLOTILLA_HEARTBEAT_SECONDS.")
    var heartbeatSeconds: Double = environmentValue("FLOTILLA_HEARTBEAT_SECONDS", default: 10)

    @Option(help: "Seconds between polls when no notification arrives. Env: FLOTILLA_POLL_SECONDS.")
    var pollSeconds: Double = environmentValue("FLOTILLA_POLL_SECONDS", default: 1)

    @Flag(help: "Do not LISTEN; poll only (for transaction-mode connection poolers). Env: FLOTILLA_POLL_ONLY=1.")
    var pollOnly: Bool = ProcessInfo.processInfo.environment["FLOTILLA_POLL_ONLY"] == "1"

    @Option(
        help: """
            How claims and heartbeats commit: async (synchronous_commit = off: a database crash can lose a claim, \
            which only costs a re-claim, as every later change is fenced on the claim's lease token) or durable \
            (use it behind a pooler that refuses startup parameters, such as PgBouncer without \
            ignore_startup_parameters). Completions and failures are always durable. Env: FLOTILLA_CLAIM_COMMIT.
            """
    )
    var claimCommit: ClaimCommit =
        ClaimCommit(rawValue: ProcessInfo.processInfo.environment["FLOTILLA_CLAIM_COMMIT"] ?? "async") ?? .async

    enum ClaimCommit: String, ExpressibleByArgument { case async, durable }

    @Option(
        help: """
            Seconds running jobs get to finish at shutdown before they are handed back. Their \
            remote steps go on on the nodes, and the worker that takes the job next adopts them, \
            so a short grace loses nothing. Env: FLOTILLA_SHUTDOWN_GRACE_SECONDS.
            """
    )
    var shutdownGraceSeconds: Double = environmentValue("FLOTILLA_SHUTDOWN_GRACE_SECONDS", default: 5)

    @Option(help: "Days finished jobs are kept. Env: FLOTILLA_RETENTION_DAYS.")
    var retentionDays: Double = environmentValue("FLOTILLA_RETENTION_DAYS", default: 30)

    @Option(
        help: """
            A worker that builds says so every quarter of this; when every worker of its region \
            is gone this long, the janitor fails the region's unfinished clusters and they are \
            torn down. Env: FLOTILLA_REGION_GRACE_SECONDS.
            """
    )
    var regionGraceSeconds: Double = environmentValue("FLOTILLA_REGION_GRACE_SECONDS", default: 300)

    /// Host and pid alone repeat across containers that share the host's network (its host
    /// name) and start the worker as the same pid, so a random part tells replicas apart.
    @Option(help: "This worker's name in the jobs table. Default: host-pid-random. Env: FLOTILLA_WORKER_ID.")
    var workerID: String =
        ProcessInfo.processInfo.environment["FLOTILLA_WORKER_ID"]
        ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-"
        + String(UUID().uuidString.prefix(4)).lowercased()

    @Option(help: "Job kinds to run, comma-separated. Env: FLOTILLA_KINDS.")
    var kinds: String = ProcessInfo.processInfo.environment["FLOTILLA_KINDS"] ?? "provision,teardown,noop"

    @Option(
        help: """
            Serve Prometheus metrics on HOST:PORT at /metrics (port 0 picks a free port; none turns it off). \
            Env: FLOTILLA_METRICS_ADDRESS.
            """
    )
    var metricsAddress: String = ProcessInfo.processInfo.environment["FLOTILLA_METRICS_ADDRESS"] ?? "127.0.0.1:9464"

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard (1...256).contains(self.concurrency) else { throw ValidationError("--concurrency must be from 1 to 256") }
        guard self.heartbeatSeconds > 0, self.leaseSeconds >= 2 * self.heartbeatSeconds else {
            throw ValidationError(
                "--lease-seconds must be at least twice --heartbeat-seconds (a lease must survive one missed heartbeat)"
            )
        }
        guard self.pollSeconds > 0 else { throw ValidationError("--poll-seconds must be positive") }
        guard self.shutdownGraceSeconds >= 0 else {
            throw ValidationError("--shutdown-grace-seconds must not be negative")
        }
        guard self.retentionDays > 0 else { throw ValidationError("--retention-days must be positive") }
        guard (2...86400).contains(self.regionGraceSeconds) else {
            throw ValidationError("--region-grace-seconds must be from 2 to 86400")
        }
        if let raw = ProcessInfo.processInfo.environment["FLOTILLA_CLAIM_COMMIT"], ClaimCommit(rawValue: raw) == nil {
            throw ValidationError("FLOTILLA_CLAIM_COMMIT must be async or durable, not \(raw)")
        }
    }

    func run() async throws {
        var logger = self.common.makeLogger()
        logger[metadataKey: MetadataKey.workerID] = "\(self.workerID)"
        let settings: DatabaseSettings
        do { settings = try DatabaseSettings.fromEnvironment() } catch let error as QueueError { fail(error.message) }

        let client = PostgresClient(
            configuration: try settings.fleetClientConfiguration(maximumConnections: self.concurrency + 4),
            backgroundLogger: logger)
        // Claims and heartbeats on connections of their own, committed without waiting for the disk.
        let leaseClient =
            self.claimCommit == .async
            ? PostgresClient(
                configuration: try settings.leaseClientConfiguration(maximumConnections: 4), backgroundLogger: logger)
            : nil
        let queue = JobQueue(
            client: client, leaseClient: leaseClient,
            configuration: .init(leaseDuration: .seconds(self.leaseSeconds)),
            logger: logger)
        let wanted = Set(
            self.kinds.split(separator: ",").map { JobKind(String($0).trimmingCharacters(in: .whitespaces)) })
        var aws: AWSContext?
        if wanted.contains(.provision) || wanted.contains(.teardown) {
            do {
                aws = try AWSContext.fromEnvironment(logger: logger)
            } catch {
                fail(
                    "cannot set up AWS for provision and teardown jobs: \(error) "
                        + "(or run only other kinds with --kinds noop)")
            }
        }
        if wanted.contains(.provision) || wanted.contains(.teardown) {
            // Every node of a step is worked on at once: room for this many clusters of the most nodes.
            let needed = OpenFileLimit.needed(concurrency: self.concurrency, nodes: ClusterSpec.maximumNodes + 1)
            if let limit = OpenFileLimit.raiseToHardLimit(), limit < needed {
                logger.warning(
                    """
                    this worker may open up to \(needed) files (--concurrency \(self.concurrency), clusters of up to \
                    \(ClusterSpec.maximumNodes) nodes, every node of a step at once) but may open only \(limit): raise \
                    its open-file limit (LimitNOFILE, ulimit -Hn) or lower --concurrency
                    """)
            }
        }
        if wanted.contains(.provision), let settings = aws?.settings {
            // A region without an image would fail every cluster minutes later, in a job.
            do { try settings.requireImage() } catch { fail("\(error)") }
        }
        if let settings = aws?.settings, settings.sshAddress == .publicIP, settings.workerCIDR == nil {
            logger.warning(
                """
                FLOTILLA_WORKER_CIDR is not set: this worker reaches nodes over SSH only as far as each request's \
                admin location allows; set it to the fleet's egress range (or use FLOTILLA_SSH_ADDRESS=private)
                """)
        }
        let handlers = JobHandlers.standard(store: ClusterStore(client: client, logger: logger), aws: aws).only(wanted)
        let processor = JobProcessor(
            queue: queue, settings: settings,
            configuration: .init(
                workerID: self.workerID, kinds: handlers.kinds, concurrency: self.concurrency,
                pollInterval: .seconds(self.pollSeconds), heartbeatInterval: .seconds(self.heartbeatSeconds),
                shutdownGracePeriod: .seconds(self.shutdownGraceSeconds), pollOnly: self.pollOnly),
            logger: logger, handler: handlers.handle)
        let maintenance = QueueMaintenance(
            queue: queue, configuration: .init(retention: .seconds(self.retentionDays * 86400)),
            logger: logger)
        let metrics: (any Service)?
        do {
            metrics = try MetricsServer.fromOption(
                self.metricsAddress, environment: "FLOTILLA_METRICS_ADDRESS", client: client,
                fleetGauges: false, logger: logger)
        } catch let error as QueueError { fail(error.message) }
        // /metrics first: a group stops its services last first, so it answers through the drain.
        // A worker that builds registers its region and image: pools may then be pinned there.
        let buildRegion: (region: String, image: String)? =
            wanted.contains(.provision)
            ? aws.flatMap { aws in (aws.settings.ami ?? ClusterSpec.defaultAMIs[aws.region]).map { (aws.region, $0) } }
            : nil
        let beat = buildRegion.map {
            RegionBeat(
                store: ClusterStore(client: client, logger: logger), region: $0.region, image: $0.image,
                grace: .seconds(self.regionGraceSeconds), logger: logger)
        }
        let worker = SchemaCheckedServices(
            client: client, settings: settings,
            services: (metrics.map { [$0] } ?? []) + [processor, maintenance] + (beat.map { [$0] } ?? []),
            logger: logger
        ) { _ in
            try await beat?.beat()
        }
        var configuration = ServiceGroupConfiguration(
            services: [.init(service: client)] + (leaseClient.map { [.init(service: $0)] } ?? []) + [
                .init(
                    service: worker, successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup)
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // Jobs get the grace period, handing them back a little more; then everything is
        // cancelled, and a process still waiting on an unreachable database or node exits anyway.
        let grace = Duration.seconds(self.shutdownGraceSeconds)
        configuration.maximumGracefulShutdownDuration = grace + .seconds(1)
        ShutdownDeadline(deadline: grace + .seconds(3), logger: logger).watch()
        let group = ServiceGroup(configuration: configuration)
        logger.info("worker starting", metadata: ["concurrency": "\(self.concurrency)", "kinds": "\(handlers.kinds)"])
        do {
            try await group.run()
        } catch let error as QueueError {
            fail(error.message)
        }
        await aws?.shutdown()
        logger.info("worker stopped")
    }
}
