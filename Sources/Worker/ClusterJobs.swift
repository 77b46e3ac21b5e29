import AWSProvisioner
import Foundation
import Logging
import Queue

/// The payload of provision and teardown jobs.
struct ClusterJobPayload: Codable {
    var clusterID: String
    enum CodingKeys: String, CodingKey { case clusterID = "cluster_id" }
}

/// Turns provision and teardown jobs into provisioner calls and writes the results back:
/// every checkpoint is stored (fenced on the job's lease) before provisioning moves on,
/// and every AWS or SSH mutation is preceded by a lease check.
struct ClusterJobs: Sendable {
    let store: ClusterStore
    let provisioner: ClusterProvisioner
    let settings: ClusterSettings

    /// Stores checkpoints and guards mutations for one job.
    struct StoreObserver: ProvisionObserver {
        let store: ClusterStore
        let context: JobContext
        let clusterID: String

        func checkpoint(_ state: ProvisionState, moment: CheckpointMoment, step: String) async throws {
            var withoutKey = state
            withoutKey.privateKeyPEM = nil
            let json = String(decoding: try JSONEncoder().encode(withoutKey), as: UTF8.self)
            try await self.store.saveCheckpoint(clusterID: self.clusterID, fence: JobFence(self.context.job), checkpoint: json,
                                                phase: moment == .before ? step : "\(step) done",
                                                privateKey: state.privateKeyPEM, publicKey: state.publicKeyLine,
                                                keyPairName: state.keyPairName)
        }

        func beforeMutation(_ description: String) async throws {
            try await self.context.ensureLease()
        }

        func progress(_ message: String) async {
            self.context.logger.info("\(message)")
        }
    }

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

    func provision(_ job: ClaimedJob, _ context: JobContext) async throws {
        let payload = try job.decodePayload(ClusterJobPayload.self)
        var logger = context.logger
        logger[metadataKey: MetadataKey.clusterID] = "\(payload.clusterID)"
        guard let cluster = try await self.store.cluster(id: payload.clusterID) else {
            throw PermanentJobFailure("cluster \(payload.clusterID) does not exist")
        }
        guard cluster.state == .requested || cluster.state == .provisioning, cluster.releaseRequestedAt == nil else {
            logger.info("cluster is \(cluster.state); nothing to provision")
            return
        }
        let fence = JobFence(job)
        let spec: ClusterSpec
        do {
            spec = try self.settings.spec(for: cluster)
            try spec.validate()
        } catch {
            try await self.store.markFailed(clusterID: cluster.id, fence: fence, error: "\(error)")
            throw PermanentJobFailure("cluster \(cluster.id) cannot be built: \(error)")
        }
        try await self.store.startProvisioning(clusterID: cluster.id, fence: fence)
        let observer = StoreObserver(store: self.store, context: context, clusterID: cluster.id)
        do {
            let state = try await self.provisioner.provision(spec, from: try await self.resumeState(cluster), observer: observer)
            let nodes = state.nodes.map {
                NodeRecord(role: $0.role.rawValue, instanceID: $0.instanceID, privateIP: $0.privateIP, publicIP: $0.publicIP, hostKey: $0.hostKey)
            }
            try await self.store.markReady(clusterID: cluster.id, fence: fence, nodes: nodes, sshUser: spec.sshUser, sshPort: spec.sshPort)
            logger.info("cluster ready", metadata: ["nodes": "\(nodes.count)"])
        } catch let error as ProvisionError {
            if !error.logs.isEmpty { try await self.store.saveLogs(clusterID: cluster.id, fence: fence, logs: error.logs) }
            if !error.isRetryable || job.attempt >= job.maxAttempts {
                try await self.store.markFailed(clusterID: cluster.id, fence: fence, error: error.message)
                throw PermanentJobFailure(error.message)
            }
            throw error
        }
    }

    func teardown(_ job: ClaimedJob, _ context: JobContext) async throws {
        let payload = try job.decodePayload(ClusterJobPayload.self)
        guard let cluster = try await self.store.cluster(id: payload.clusterID) else {
            throw PermanentJobFailure("cluster \(payload.clusterID) does not exist")
        }
        if cluster.state == .destroyed { return }
        let fence = JobFence(job)
        let spec = try self.settings.spec(for: cluster)
        let state = try await self.resumeState(cluster)
        let observer = StoreObserver(store: self.store, context: context, clusterID: cluster.id)
        try await self.store.markTearingDown(clusterID: cluster.id, fence: fence, phase: "terminating instances")
        _ = try await self.provisioner.terminateInstances(spec, state: state, observer: observer)
        try await self.store.markTearingDown(clusterID: cluster.id, fence: fence, phase: "deleting security group")
        _ = try await self.provisioner.deleteSecurityGroup(spec, state: state, observer: observer)

        // Renew, then delete: the row stays until AWS confirms, and the janitor retries it.
        let keyName = state?.keyPairName ?? spec.resourceName
        try await self.store.scheduleKeyPairDeletion(region: spec.region, keyPairName: keyName, clusterID: cluster.id)
        try await self.store.markTearingDown(clusterID: cluster.id, fence: fence, phase: "deleting key pair")
        do {
            _ = try await self.provisioner.deleteKeyPair(named: keyName, margin: .seconds(600), observer: observer)
            try await self.store.keyPairDeleted(region: spec.region, keyPairName: keyName)
        } catch let error as QueueError where error.code == .leaseLost {
            throw error
        } catch {
            try await self.store.keyPairDeletionFailed(region: spec.region, keyPairName: keyName, error: "\(error)", retryAfter: .seconds(30))
            context.logger.warning("key pair delete failed; the janitor will retry it", metadata: ["error": "\(error)"])
        }
        let leftovers = try await self.provisioner.leftovers(spec, state: state).filter { !$0.hasPrefix("key pair ") }
        guard leftovers.isEmpty else {
            throw ProvisionError(.leftovers, "teardown of \(cluster.id) left: \(leftovers.joined(separator: ", "))")
        }
        try await self.store.markDestroyed(clusterID: cluster.id, fence: fence)
        context.logger.info("cluster destroyed", metadata: [MetadataKey.clusterID: "\(cluster.id)"])
    }
}
