import Foundation
import Timing

extension ClusterProvisioner {
    /// What a teardown did, and anything tagged with the cluster that is still there.
    public struct TeardownReport: Sendable, Hashable {
        public var terminatedInstances: [String] = []
        public var deletedSecurityGroup: String?
        public var deletedKeyPair: String?
        /// Resources tagged with (or named for) the cluster that remain; empty on success.
        public var leftovers: [String] = []
    }

    /// Settings for teardown waits.
    public struct TeardownSettings: Sendable {
        /// How long credentials must stay valid when the key pair is deleted.
        public var credentialMargin: Duration = .seconds(600)
        public var terminateTimeout: Duration = .seconds(900)
        /// How long `DependencyViolation` on the security group is retried.
        public var dependencyTimeout: Duration = .seconds(600)
        public var pollInterval: Duration = .seconds(2)

        public init(
            credentialMargin: Duration = .seconds(600), terminateTimeout: Duration = .seconds(900),
            dependencyTimeout: Duration = .seconds(600), pollInterval: Duration = .seconds(2)
        ) {
            self.credentialMargin = credentialMargin
            self.terminateTimeout = terminateTimeout
            self.dependencyTimeout = dependencyTimeout
            self.pollInterval = pollInterval
        }
    }

    /// Deletes everything the cluster has, in the order AWS needs: terminate instances →
    /// wait until terminated → delete the security group (retrying `DependencyViolation`)
    /// → renew credentials so they outlive the call → delete the key pair → check that
    /// nothing tagged with the cluster remains. Works from a partial checkpoint: what the
    /// checkpoint lacks is found by the cluster's tag and names.
    ///
    /// The fleet passes `bookkeeping`, which records each phase, and the key pair's deletion
    /// before it is attempted: a deletion that fails then stays pending for the janitor to
    /// retry (renew, then delete) instead of failing the teardown. Without it a failed
    /// deletion throws.
    ///
    /// Throws ``ProvisionError`` with code `leftovers` when something else remains.
    @discardableResult
    public func teardown(
        _ spec: ClusterSpec, state: ProvisionState?, settings: TeardownSettings = TeardownSettings(),
        observer: any ProvisionObserver, bookkeeping: (any TeardownBookkeeping)? = nil
    ) async throws -> TeardownReport {
        var report = TeardownReport()
        try await bookkeeping?.phase("terminating instances")
        report.terminatedInstances = try await self.terminateInstances(
            spec, state: state, settings: settings, observer: observer)
        try await bookkeeping?.phase("deleting security group")
        report.deletedSecurityGroup = try await self.deleteSecurityGroup(
            spec, state: state, settings: settings, observer: observer)
        let keyName = state?.keyPairName ?? spec.resourceName
        var keyPairPending = false
        if let bookkeeping {
            try await bookkeeping.keyPairDeletionScheduled(keyName)
            try await bookkeeping.phase("deleting key pair")
            do {
                report.deletedKeyPair = try await self.deleteKeyPair(
                    named: keyName, margin: settings.credentialMargin, observer: observer)
                try await bookkeeping.keyPairDeleted(keyName)
            } catch {
                // The deletion stays pending; the bookkeeping rethrows what must end the
                // teardown here instead (the fleet: a lost lease).
                try await bookkeeping.keyPairDeletionFailed(keyName, error: error)
                keyPairPending = true
            }
        } else {
            report.deletedKeyPair = try await self.deleteKeyPair(
                named: keyName, margin: settings.credentialMargin, observer: observer)
        }
        report.leftovers = try await self.leftovers(spec, state: state).filter {
            !(keyPairPending && $0.hasPrefix("key pair "))
        }
        guard report.leftovers.isEmpty else {
            throw ProvisionError(
                .leftovers,
                "teardown of \(spec.clusterID) finished but these remain: \(report.leftovers.joined(separator: ", "))")
        }
        return report
    }

    /// Terminates the recorded instances and any other live instance tagged with the
    /// cluster, and waits until all are `terminated`.
    public func terminateInstances(
        _ spec: ClusterSpec, state: ProvisionState?, settings: TeardownSettings = TeardownSettings(),
        observer: any ProvisionObserver
    ) async throws -> [String] {
        do {
            let tagged = try await self.ec2.describeInstances(filters: [
                .tag("cluster", spec.clusterID),
                EC2Filter(
                    name: "instance-state-name",
                    values: ["pending", "running", "stopping", "stopped", "shutting-down"]),
            ]).map(\.instanceID)
            let recorded = state?.instanceIDs ?? []
            let live = Set(tagged).union(try await self.liveInstances(recorded))
            let ids = live.sorted()
            guard !ids.isEmpty else { return [] }
            try await observer.beforeMutation("terminate \(ids.count) instances")
            await observer.progress("terminating \(ids.count) instances")
            _ = try await self.ec2.terminateInstances(instanceIDs: ids)
            let ec2 = self.ec2
            try await poll(
                "\(ids.count) instances to be terminated", timeout: settings.terminateTimeout,
                interval: settings.pollInterval
            ) { () -> (Bool?, String) in
                let states = try await ec2.describeInstances(instanceIDs: ids)
                let remaining = states.filter { $0.state != .terminated }
                return (remaining.isEmpty ? true : nil, "\(remaining.count) not terminated yet")
            }
            return ids
        } catch let error as EC2Error {
            throw ProvisionError(
                .aws, "cannot terminate the instances of \(spec.clusterID): \(error)", underlying: error)
        }
    }

    /// Those of `ids` that exist and are not terminated (an id AWS no longer knows is gone).
    private func liveInstances(_ ids: [String]) async throws -> [String] {
        guard !ids.isEmpty else { return [] }
        do {
            return try await self.ec2.describeInstances(instanceIDs: ids).filter { $0.state != .terminated }.map(
                \.instanceID)
        } catch let error as EC2Error where error.code == "InvalidInstanceID.NotFound" {
            return []
        }
    }

    /// Deletes the cluster's security group, retrying while instances still use it.
    public func deleteSecurityGroup(
        _ spec: ClusterSpec, state: ProvisionState?, settings: TeardownSettings = TeardownSettings(),
        observer: any ProvisionObserver
    ) async throws -> String? {
        do {
            var groupID = state?.securityGroupID
            if groupID == nil {
                groupID = try await self.ec2.describeSecurityGroups(filters: [
                    EC2Filter(name: "group-name", values: [spec.resourceName])
                ])
                .first { $0.tags.contains(EC2Tag(key: "cluster", value: spec.clusterID)) }?.groupID
            }
            guard let groupID else { return nil }
            try await observer.beforeMutation("delete security group \(groupID)")
            let ec2 = self.ec2
            try await poll(
                "security group \(groupID) to be free of dependencies", timeout: settings.dependencyTimeout,
                interval: settings.pollInterval
            ) { () -> (Bool?, String) in
                do {
                    try await ec2.deleteSecurityGroup(groupID: groupID)
                    return (true, "")
                } catch let error as EC2Error where error.code == "InvalidGroup.NotFound" {
                    return (true, "")
                } catch let error as EC2Error where error.code == "DependencyViolation" {
                    return (nil, error.message)
                }
            }
            return groupID
        } catch let error as EC2Error {
            throw ProvisionError(
                .aws, "cannot delete the security group of \(spec.clusterID): \(error)", underlying: error)
        }
    }

    /// Deletes a key pair after making sure the credentials stay valid for `margin`
    /// (temporary credentials are renewed first), so an expiring session never leaves the
    /// key behind.
    public func deleteKeyPair(named name: String, margin: Duration, observer: any ProvisionObserver) async throws
        -> String
    {
        let unrenewable = """
            the temporary credentials this worker was given (a session token in the environment or profile) have \
            expired or will within \(Int(margin.seconds)) s, and nothing can renew them: key pair \(name) stays \
            pending deletion until the worker runs with fresh credentials (a role, a profile with role_arn, or \
            instance credentials renew themselves)
            """
        do {
            _ = try await self.credentials.credentials(validFor: margin)
        } catch let error as CredentialsError where self.credentials.provider.temporaryWithoutRenewal {
            throw ProvisionError(.aws, "cannot delete key pair \(name): \(unrenewable)", underlying: error)
        }
        try await observer.beforeMutation("delete key pair \(name)")
        do {
            try await self.ec2.deleteKeyPair(name: name)
        } catch let error as EC2Error
            where self.credentials.provider.temporaryWithoutRenewal
            && ["ExpiredToken", "ExpiredTokenException"].contains(error.code)
        {
            throw ProvisionError(.aws, "cannot delete key pair \(name): \(unrenewable)", underlying: error)
        } catch let error as EC2Error {
            throw ProvisionError(.aws, "cannot delete key pair \(name): \(error)", underlying: error)
        }
        return name
    }

    /// Everything tagged with the cluster (or named for it) that is still there: each kind
    /// Flotilla tags at creation (instances, volumes, network interfaces, security groups,
    /// key pairs) listed by the `cluster` tag, and the group and key pair by name too.
    public func leftovers(_ spec: ClusterSpec, state: ProvisionState?) async throws -> [String] {
        do {
            var found: [String] = []
            let tag = EC2Filter.tag("cluster", spec.clusterID)
            let instances = try await self.ec2.describeInstances(filters: [tag])
            found += instances.filter { $0.state != .terminated }.map { "instance \($0.instanceID) (\($0.state))" }
            let volumes = try await self.ec2.describeVolumes(filters: [tag])
            found += volumes.filter { !["deleted", "deleting"].contains($0.state) }.map {
                "volume \($0.volumeID) (\($0.state))"
            }
            let interfaces = try await self.ec2.describeNetworkInterfaces(filters: [tag])
            found += interfaces.map { "network interface \($0.networkInterfaceID) (\($0.status))" }
            let byName = try await self.ec2.describeSecurityGroups(filters: [
                EC2Filter(name: "group-name", values: [spec.resourceName])
            ])
            let byTag = try await self.ec2.describeSecurityGroups(filters: [tag])
            found += Set((byName + byTag).map(\.groupID)).sorted().map { "security group \($0)" }
            let name = state?.keyPairName ?? spec.resourceName
            var keys = Set(try await self.ec2.describeKeyPairs(filters: [tag]).map(\.keyName))
            do {
                keys.formUnion(try await self.ec2.describeKeyPairs(names: [name]).map(\.keyName))
            } catch let error as EC2Error where error.code == "InvalidKeyPair.NotFound" {}
            found += keys.sorted().map { "key pair \($0)" }
            return found
        } catch let error as EC2Error {
            throw ProvisionError(.aws, "cannot check what remains of \(spec.clusterID): \(error)", underlying: error)
        }
    }
}

/// What the fleet records while ``ClusterProvisioner/teardown(_:state:settings:observer:bookkeeping:)``
/// runs: each phase, and the key pair's deletion (scheduled before the call, then done or
/// failed), so that a deletion AWS has not confirmed stays visible and is retried.
public protocol TeardownBookkeeping: Sendable {
    func phase(_ name: String) async throws
    func keyPairDeletionScheduled(_ keyPairName: String) async throws
    func keyPairDeleted(_ keyPairName: String) async throws
    /// Records the failure and returns, leaving the deletion pending, or throws to end the
    /// teardown.
    func keyPairDeletionFailed(_ keyPairName: String, error: any Error) async throws
}
