import AWSProvisioner
import Fleet
import Foundation
import PostgresNIO
import Queue
import Synchronization
import TestSupport
import Testing

/// The provision and teardown handlers with a real job processor, PostgreSQL, the emulator
/// and the SSH nodes.
@Suite("Cluster jobs end to end in the fleet library", .timeLimit(.minutes(10)))
struct ClusterJobsTests {
    /// Every step the provisioner checkpoints, in order.
    static let steps = [
        "key pair", "security group", "security group rules", "instances", "instances running", "ssh",
        "bootstrap", "preflight", "deploy", "postflight",
    ]

    /// Which cluster is released at which step, and whether it was.
    final class Releases: Sendable {
        struct Plan {
            var step: String
            var token: String
            var done = false
        }
        let plans = Mutex<[String: Plan]>([:])
        func plan(_ id: String, at step: String, token: String) {
            self.plans.withLock { $0[id] = Plan(step: step, token: token) }
        }
        /// The token to release with, once, when `step` is the planned one.
        func due(_ id: String, _ step: String) -> String? {
            self.plans.withLock { plans in
                guard var plan = plans[id], !plan.done, plan.step == step else { return nil }
                plan.done = true
                plans[id] = plan
                return plan.token
            }
        }
        var released: [String: String] { self.plans.withLock { $0.filter(\.value.done).mapValues(\.step) } }
    }

    @Test(
        "capacity failures are shared via PostgreSQL: what one worker found full, another's clusters skip until expiry"
    )
    func fleetCapacityRecord() async throws {
        let stack = try await FleetStack.make(sshDirectory: "/tmp/fl-" + UUID().uuidString.prefix(8).lowercased())
        try await stack.database.withClient(maximumConnections: 2, logger: FleetStack.logger) { client in
            let store = ClusterStore(client: client, logger: FleetStack.logger)
            // Two workers: each its own process memory, one database.
            let first = FleetCapacityRecord(
                store: store, local: CapacityMemory(lifetime: .seconds(300)), logger: FleetStack.logger)
            let second = FleetCapacityRecord(
                store: store, local: CapacityMemory(lifetime: .seconds(300)), logger: FleetStack.logger)
            #expect(await second.failures(region: "us-west-2").isEmpty)
            await first.remember(
                region: "us-west-2", zone: "us-west-2b", instanceType: "m4.large", code: "InsufficientInstanceCapacity")
            #expect(
                await second.failures(region: "us-west-2") == ["us-west-2b m4.large": "InsufficientInstanceCapacity"])
            #expect(await second.failures(region: "eu-west-1").isEmpty, "per region")
            // Expired: no longer skipped.
            try await client.query(
                "UPDATE capacity_failures SET until = now() - interval '1 second'", logger: FleetStack.logger)
            #expect(await second.failures(region: "us-west-2").isEmpty)
        }
    }

    @Test(
        "a release in any provisioning step ends destroyed, never ready, nothing left in EC2 or on the worker's disk"
    )
    func releaseDuringEveryStep() async throws {
        let sshDirectory = "/tmp/fl-" + UUID().uuidString.prefix(8).lowercased()
        let stack = try await FleetStack.make(sshDirectory: sshDirectory)
        let aws = try AWSContext.fromEnvironment(stack.environment, logger: FleetStack.logger)
        let releases = Releases()
        try await stack.database.withClient(maximumConnections: 20, logger: FleetStack.logger) { client in
            let store = ClusterStore(client: client, logger: FleetStack.logger)
            let queue = JobQueue(
                client: client, configuration: .init(leaseDuration: .seconds(15)), logger: FleetStack.logger)
            let api = ClusterAPI(client: client, logger: FleetStack.logger)
            let jobs = ClusterJobs(store: store, aws: aws) { id, step, _ in
                if let token = releases.due(id, step) {
                    try await api.release(clusterID: id, leaseToken: token)
                }
            }
            let handlers = JobHandlers(byKind: [
                .provision: { try await jobs.provision($0, $1) },
                .teardown: { try await jobs.teardown($0, $1) },
            ])
            let processor = JobProcessor(
                queue: queue, settings: stack.database,
                configuration: .init(
                    workerID: "fleet-tests", kinds: handlers.kinds, concurrency: 12,
                    pollInterval: .milliseconds(200), heartbeatInterval: .seconds(1)),
                logger: FleetStack.logger, handler: handlers.handle)
            // The rescuer too, as in `worker run`: a job whose lease runs out on this busy
            // machine is queued again, not left running.
            let maintenance = QueueMaintenance(
                queue: queue, configuration: .init(rescueInterval: .seconds(1)), logger: FleetStack.logger)
            // Every cluster and its plan are recorded before the processor starts claiming.
            var ids: [String: String] = [:]
            for step in Self.steps {
                let made = try await api.request(
                    try FleetStack.newCluster(installerURL: stack.environment["FLOTILLA_INSTALLER_URL"]!))
                releases.plan(made.id, at: step, token: made.leaseToken)
                ids[made.id] = step
            }
            let running = Task { try await processor.run() }
            let rescuing = Task { try await maintenance.run() }
            // Both are stopped and awaited while the client still runs, also when the test
            // fails half-way: a processor cancelled without waiting could still be writing
            // when the client shuts down, and that wait has no end.
            do {
                try await self.checkReleases(
                    ids, releases: releases, client: client, store: store, aws: aws,
                    processor: processor, stack: stack, sshDirectory: sshDirectory)
            } catch {
                for task in [running, rescuing] { task.cancel() }
                for task in [running, rescuing] { _ = await task.result }
                throw error
            }
            for task in [running, rescuing] { task.cancel() }
            for task in [running, rescuing] { _ = await task.result }
        }
        await aws.shutdown()
    }

    private func checkReleases(
        _ ids: [String: String], releases: Releases, client: PostgresClient, store: ClusterStore,
        aws: AWSContext, processor: JobProcessor, stack: FleetStack, sshDirectory: String
    ) async throws {
        do {
            for (id, step) in ids.sorted(by: { $0.value < $1.value }) {
                // The first wait covers every cluster getting to its step on a machine
                // that runs the other suites too (load 15–20 on two cores): generous.
                try await eventually("\(id) (released at \(step)) destroyed", timeout: .seconds(300)) {
                    try await store.cluster(id: id)?.state == .destroyed
                }
            }
            #expect(releases.released.count == Self.steps.count, "every cluster reached its step: \(releases.released)")
            for (id, step) in ids {
                let readyEvents = try await client.query(
                    """
                    SELECT count(*)::int FROM cluster_events WHERE cluster_id = \(id) AND kind = 'ready'
                    """, logger: FleetStack.logger)
                for try await count in readyEvents.decode(Int.self) {
                    #expect(count == 0, "\(id) released at \(step) was ready once")
                }
                let cluster = try #require(try await store.cluster(id: id))
                #expect(cluster.region == stack.environment["AWS_REGION"])
                #expect(cluster.teardownReason == "released")
                let ec2 = aws.ec2
                let instances = try await ec2.describeInstances(filters: [.tag("cluster", id)]).filter {
                    $0.state != .terminated
                }
                let groups = try await ec2.describeSecurityGroups(filters: [.tag("cluster", id)])
                let keys = try await ec2.describeKeyPairs(filters: [.tag("cluster", id)])
                #expect(
                    instances.isEmpty && groups.isEmpty && keys.isEmpty,
                    """
                    released at \(step): \(instances.count) instances, \(groups.count) groups, \
                    \(keys.count) key pairs left
                    """)
                let secrets = try await store.keyMaterial(clusterID: id)
                #expect(secrets.privateKey == nil && secrets.publicKey == nil)
            }
            try await eventually("no job running", timeout: .seconds(120)) { processor.inFlight == 0 }
            let left = (try? FileManager.default.contentsOfDirectory(atPath: sshDirectory)) ?? []
            #expect(left.isEmpty, "the worker's SSH folder still holds \(left)")
        }
    }
}
