import AWSProvisioner
import Foundation
import Logging
import Queue
import Synchronization
import Telemetry

/// The payload of provision and teardown jobs.
struct ClusterJobPayload: Codable {
    var clusterID: String
    enum CodingKeys: String, CodingKey { case clusterID = "cluster_id" }
}

/// Turns provision and teardown jobs into provisioner calls and writes the results back:
/// every checkpoint is stored (fenced on the job's lease, and only while the cluster is
/// provisioning) before provisioning moves on, and every AWS or SSH mutation is preceded by
/// a lease check.
///
/// How a provision job ends decides nothing about the cluster's fate here: the database
/// does. A job that ends failed or cancelled, for any reason, marks the cluster failed and
/// queues its teardown in the same transaction (migration 0003), so a handler that throws
/// anything, a worker that dies, and an operator's cancel all converge.
package struct ClusterJobs: Sendable {
    let store: ClusterStore
    let aws: AWSContext
    /// Called after each checkpoint is stored, before provisioning goes on (tests use it to
    /// interrupt a cluster at a chosen step).
    let afterCheckpoint:
        @Sendable (_ clusterID: String, _ step: String, _ moment: CheckpointMoment) async throws -> Void

    package init(
        store: ClusterStore, aws: AWSContext,
        afterCheckpoint: @escaping @Sendable (String, String, CheckpointMoment) async throws -> Void = { _, _, _ in }
    ) {
        self.store = store
        self.aws = aws
        self.afterCheckpoint = afterCheckpoint
    }

    var settings: ClusterSettings { self.aws.settings }

    /// Stores checkpoints and guards mutations for one job.
    struct StoreObserver: ProvisionObserver {
        let jobs: ClusterJobs
        let context: JobContext
        let clusterID: String
        let subnetID: String?
        let phases = PhaseClock()

        func checkpoint(_ state: ProvisionState, moment: CheckpointMoment, step: String) async throws {
            self.phases.mark(step, moment)
            var withoutKey = state
            withoutKey.privateKeyPEM = nil
            let json = String(decoding: try JSONEncoder().encode(withoutKey), as: UTF8.self)
            try await self.jobs.store.saveCheckpoint(
                clusterID: self.clusterID, fence: JobFence(self.context.job), checkpoint: json,
                phase: moment == .before ? step : "\(step) done",
                subnetID: state.placement?.subnetID ?? self.subnetID,
                privateKey: state.privateKeyPEM, publicKey: state.publicKeyLine,
                keyPairName: state.keyPairName)
            try await self.jobs.afterCheckpoint(self.clusterID, step, moment)
        }

        func beforeMutation(_ description: String) async throws {
            try await self.context.ensureLease()
        }

        func progress(_ message: String) async {
            self.context.logger.info("\(message)")
        }

        func keep(logs: [String: String]) async throws {
            try await self.jobs.store.saveLogs(clusterID: self.clusterID, fence: JobFence(self.context.job), logs: logs)
        }
    }

    /// The provisioner's state from the cluster's checkpoint, with the key from the secrets.
    func resumeState(_ cluster: ClusterRecord) async throws -> ProvisionState? {
        guard let json = cluster.checkpoint else { return nil }
        var state = try JSONDecoder().decode(ProvisionState.self, from: Data(json.utf8))
        let keys = try await self.store.keyMaterial(clusterID: cluster.id)
        state.privateKeyPEM = keys.privateKey
        if state.privateKeyPEM == nil {
            // No key stored: the import step must run again with a new key.
            state.keyPairName = nil
            state.publicKeyLine = nil
            if state.step >= .keyImported { state.step = .started }
        }
        return state
    }

    package func provision(_ job: ClaimedJob, _ context: JobContext) async throws {
        let payload = try job.decodePayload(ClusterJobPayload.self)
        do {
            try await LogContext.with([MetadataKey.clusterID: "\(payload.clusterID)"]) {
                try await self.provision(payload, job, context)
            }
        } catch {
            // Counted by how the cluster ends: a failure that will be retried is not the end.
            let final = error is PermanentJobFailure || job.attempt >= job.maxAttempts
            if !(error is JobSnooze), !(error is CancellationError), !Task.isCancelled, !context.isStopping {
                FlotillaMetric.increment(
                    FlotillaMetric.clusterOutcomes,
                    [("outcome", final ? "failed" : "retrying"), ("reason", Self.reason(error))])
            }
            throw error
        }
    }

    /// The failure's kind, for the outcome counter: the provisioner's error code (aws,
    /// ssh, install, timeout, …), or what else stopped it.
    static func reason(_ error: any Error) -> String {
        if let error = error as? ProvisionError { return error.code.label }
        if let error = error as? PermanentJobFailure, let code = error.reason { return code }
        if error is QueueError { return "database" }
        return "other"
    }

    static func otherRegion(_ id: String, _ region: String, _ mine: String) -> JobSnooze {
        JobSnooze(for: .seconds(30), "cluster \(id) lives in \(region); this worker builds in \(mine)")
    }

    private func provision(_ payload: ClusterJobPayload, _ job: ClaimedJob, _ context: JobContext) async throws {
        var logger = context.logger
        logger[metadataKey: MetadataKey.clusterID] = "\(payload.clusterID)"
        guard var cluster = try await self.store.cluster(id: payload.clusterID) else {
            throw PermanentJobFailure("cluster \(payload.clusterID) does not exist")
        }
        guard cluster.state == .requested || cluster.state == .provisioning else {
            logger.info("cluster is \(cluster.state); nothing to provision")
            return
        }
        // Images and subnets belong to a region: only a worker of the cluster's own region
        // can build it (one of that region's workers will take the job). Asked before the
        // cluster is marked provisioning, so a worker that will not build it never does that.
        // The snoozes end with the cluster: at its provisioning deadline, or when its region
        // has had no live worker for the workers' grace (migration 0017).
        if let region = cluster.region, region != self.aws.region {
            throw Self.otherRegion(cluster.id, region, self.aws.region)
        }
        let fence = JobFence(job)
        let deployment = try await self.deployment()
        let recorded = try await self.store.startProvisioning(
            clusterID: cluster.id, fence: fence, region: self.aws.region,
            deployment: deployment, account: await self.aws.accountID())
        (cluster.region, cluster.deployment) = (recorded.region, recorded.deployment)
        // Another region's worker recorded it first.
        guard recorded.region == self.aws.region else {
            throw Self.otherRegion(cluster.id, recorded.region, self.aws.region)
        }
        let spec: ClusterSpec
        do {
            spec = try await self.spec(for: cluster)
            try spec.validate()
        } catch {
            throw PermanentJobFailure("cluster \(cluster.id) cannot be built: \(error)")
        }
        let provisioner = self.aws.provisioner(
            region: spec.region, logger: logger,
            capacity: FleetCapacityRecord(store: self.store, logger: logger))
        let observer = StoreObserver(jobs: self, context: context, clusterID: cluster.id, subnetID: nil)
        do {
            let state = try await provisioner.provision(
                spec, from: try await self.resumeState(cluster), observer: observer)
            let nodes = state.nodes.map {
                NodeRecord(
                    role: $0.role.rawValue, instanceID: $0.instanceID, privateIP: $0.privateIP, publicIP: $0.publicIP,
                    hostKey: $0.hostKey,
                    instanceType: $0.instanceType ?? state.placement?.instanceType(for: $0.role)
                        ?? ($0.role == .bootstrap ? spec.bootstrapInstanceType : spec.instanceType))
            }
            try await self.store.markReady(
                clusterID: cluster.id, fence: fence, nodes: nodes, sshUser: spec.sshUser, sshPort: spec.sshPort)
            FlotillaMetric.increment(FlotillaMetric.clusterOutcomes, [("outcome", "ready"), ("reason", "none")])
            logger.info("cluster ready", metadata: ["nodes": "\(nodes.count)"])
        } catch {
            // A job that was cancelled or lost its lease is not an install failure: the
            // processor records it as what it is.
            if Task.isCancelled || context.isStopping { throw CancellationError() }
            if let error = error as? ProvisionError {
                if !error.logs.isEmpty {
                    try await self.store.saveLogs(clusterID: cluster.id, fence: fence, logs: error.logs)
                }
                if !error.isRetryable { throw PermanentJobFailure(error.message, reason: error.code.label) }
            }
            if let refusal = error as? EC2Error, !refusal.canHeal {
                // Retrying cannot change it: fail the attempt at once, naming the call and the code.
                throw PermanentJobFailure("AWS refused \(refusal)", reason: "aws")
            }
            throw error
        }
    }

    package func teardown(_ job: ClaimedJob, _ context: JobContext) async throws {
        let payload = try job.decodePayload(ClusterJobPayload.self)
        do {
            try await LogContext.with([MetadataKey.clusterID: "\(payload.clusterID)"]) {
                try await self.teardown(payload, job, context)
            }
        } catch {
            if !(error is JobSnooze), !(error is CancellationError), !Task.isCancelled, !context.isStopping {
                FlotillaMetric.increment(
                    FlotillaMetric.clusterOutcomes, [("outcome", "teardown_failed"), ("reason", Self.reason(error))])
            }
            throw error
        }
    }

    private func teardown(_ payload: ClusterJobPayload, _ job: ClaimedJob, _ context: JobContext) async throws {
        let fence = JobFence(job)
        var logger = context.logger
        logger[metadataKey: MetadataKey.clusterID] = "\(payload.clusterID)"
        switch try await self.store.beginTeardownJob(clusterID: payload.clusterID, fence: fence) {
        case .destroyed:
            return
        case .wait:
            // Its provision job was cancelled and stops at its next heartbeat (or its lease
            // runs out): tearing down beside it would race it.
            throw JobSnooze(for: .seconds(1), "a provision job still holds cluster \(payload.clusterID)")
        case .tearingDown:
            break
        }
        guard let cluster = try await self.store.cluster(id: payload.clusterID) else {
            throw PermanentJobFailure("cluster \(payload.clusterID) does not exist")
        }
        var spec = try self.settings.spec(for: cluster)
        if cluster.region == nil { spec.region = self.aws.region }
        // A checkpoint that cannot be read does not stop a teardown: the resources are
        // found by their tags instead.
        let state: ProvisionState?
        do {
            state = try await self.resumeState(cluster)
        } catch {
            logger.warning("checkpoint unreadable; tearing down by tags", metadata: ["error": "\(error)"])
            state = nil
        }
        let provisioner = self.aws.provisioner(region: spec.region, logger: logger)
        let observer = StoreObserver(jobs: self, context: context, clusterID: cluster.id, subnetID: nil)
        let bookkeeping = TeardownRecord(
            store: self.store, fence: fence, clusterID: cluster.id, region: spec.region, logger: logger)
        try await provisioner.teardown(spec, state: state, observer: observer, bookkeeping: bookkeeping)
        try await self.store.markDestroyed(clusterID: cluster.id, fence: fence)
        FlotillaMetric.increment(FlotillaMetric.clusterOutcomes, [("outcome", "destroyed"), ("reason", "none")])
        logger.info("cluster destroyed")
    }

    /// The pool's health check of a ready cluster: SSH on every node and the nodes' own
    /// post-start checks, bounded by `timeout`. Returns the problems, empty when healthy.
    package func healthCheck(clusterID: String, timeout: Duration, logger: Logger) async throws -> [String] {
        guard let cluster = try await self.store.cluster(id: clusterID) else {
            return ["cluster \(clusterID) does not exist"]
        }
        guard let state = try await self.resumeState(cluster), state.privateKeyPEM != nil else {
            return ["cluster \(clusterID) has no checkpoint or key to reach its nodes with"]
        }
        // SSH only, no AWS call: the leader checks clusters of every region.
        let spec = try await self.spec(for: cluster)
        return await self.aws.provisioner(region: spec.region, logger: logger).healthCheck(
            spec, state: state, timeout: timeout)
    }

    /// The spec a stored cluster is built and reached with: the settings', with the request's
    /// image (the operators' allow-list, table `images`) giving the AMI of the cluster's
    /// region, the SSH user and the Docker version.
    func spec(for cluster: ClusterRecord) async throws -> ClusterSpec {
        var spec = try self.settings.spec(for: cluster)
        let request = try JSONDecoder().decode(ClusterRequest.self, from: Data(cluster.request.utf8))
        guard let name = request.image else { return spec }
        guard let image = try await self.store.image(named: name) else {
            throw PermanentJobFailure("image \(name) is no longer in the operators' allow-list (table images)")
        }
        guard let ami = image.amis[spec.region] else {
            throw PermanentJobFailure(
                "image \(name) has no AMI in \(spec.region) "
                    + "(it has: \(image.amis.keys.sorted().joined(separator: ", ")))"
            )
        }
        spec.ami = ami
        spec.sshUser = image.sshUser
        spec.install.dockerVersion = image.dockerVersion
        return spec
    }

    /// The deployment tag: the setting, else the database's own id.
    func deployment() async throws -> String {
        if let deployment = self.settings.deployment { return deployment }
        return try await self.store.deploymentID()
    }
}

/// Times provisioning phases from their checkpoints: a step's `.before` to its `.after`,
/// or, for steps reported only when done (instances running, ssh), from the previous
/// step's end. Recorded in the ``FlotillaMetric/provisionPhase`` histogram.
final class PhaseClock: Sendable {
    private let marks = Mutex<(started: [String: ContinuousClock.Instant], last: ContinuousClock.Instant)>(([:], .now))

    func mark(_ step: String, _ moment: CheckpointMoment) {
        let now = ContinuousClock.now
        let elapsed: Duration? = self.marks.withLock { marks in
            switch moment {
            case .before:
                marks.started[step] = marks.started[step] ?? now
                return nil
            case .after:
                // "instances master" and the like are parts of "instances", timed as a whole.
                let part = step.hasPrefix("instances ") && step != "instances running"
                defer { if !part { marks.last = now } }
                if part { return nil }
                let since = marks.started.removeValue(forKey: step) ?? marks.last
                return now - since
            }
        }
        if let elapsed {
            FlotillaMetric.record(
                FlotillaMetric.provisionPhase, [("phase", step)],
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
    }
}

/// A teardown's bookkeeping in the database: each phase on the cluster row (fenced by the
/// job's lease), and the key pair's deletion scheduled before it is attempted, so that one AWS
/// did not confirm stays pending for the janitor (renew, then delete).
struct TeardownRecord: TeardownBookkeeping {
    let store: ClusterStore
    let fence: JobFence
    let clusterID: String
    let region: String
    let logger: Logger

    func phase(_ name: String) async throws {
        try await self.store.teardownProgress(clusterID: self.clusterID, fence: self.fence, phase: name)
    }

    func keyPairDeletionScheduled(_ keyPairName: String) async throws {
        try await self.store.scheduleKeyPairDeletion(
            region: self.region, keyPairName: keyPairName, clusterID: self.clusterID)
    }

    func keyPairDeleted(_ keyPairName: String) async throws {
        try await self.store.keyPairDeleted(region: self.region, keyPairName: keyPairName)
    }

    func keyPairDeletionFailed(_ keyPairName: String, error: any Error) async throws {
        if let error = error as? QueueError, error.code == .leaseLost { throw error }
        try await self.store.keyPairDeletionFailed(
            region: self.region, keyPairName: keyPairName, error: "\(error)", retryAfter: .seconds(30))
        self.logger.warning("key pair delete failed; the janitor will retry it", metadata: ["error": "\(error)"])
    }
}
