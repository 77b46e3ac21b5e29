import Foundation

/// What provisioning a spec would do, decided with read-only calls (`worker plan`): the
/// image and placement, the security group rules, every `RunInstances` with its parameters,
/// and the scripts the nodes run.
public struct ClusterPlan: Sendable {
    /// The planned state: ``ProvisionState/placement`` and its alternatives.
    public var state: ProvisionState
    public var securityGroupName: String
    public var securityGroupRules: [EC2IPPermission]
    public var launches: [(role: ClusterRole, request: EC2RunInstancesRequest)]
    /// `ip-detect`, `ip-detect-public`, `fault-domain-detect`, as the nodes get them.
    public var nodeScripts: [(name: String, text: String)]
}

/// How a mutating call answered with `DryRun=true`.
public struct DryRunOutcome: Sendable, CustomStringConvertible {
    public var call: String
    /// `DryRunOperation`: it would have been allowed.
    public var allowed: Bool
    public var code: String
    public var message: String

    public var description: String {
        "\(self.call): \(self.allowed ? "would succeed" : "would be REFUSED") "
            + "(\(self.code)\(self.allowed || self.message.isEmpty ? "" : ": \(self.message)"))"
    }
}

extension ClusterProvisioner {
    /// Plans `spec` without creating anything: checks the image, chooses the subnet and
    /// zone, and renders every call provisioning would make first.
    public func plan(_ spec: ClusterSpec) async throws -> ClusterPlan {
        try spec.validate()
        var state = ProvisionState(clusterID: spec.clusterID)
        try await self.plan(spec, &state, SilentObserver())
        let placement = state.placement!
        state.keyPairName = spec.resourceName
        let launches = Self.intendedLaunches(spec, state, placement).map { launch in
            (role: launch.role, request: Self.runRequest(spec, state, launch, placement))
        }
        let workerCIDR = spec.workerCIDR ?? (spec.sshAddress == .privateIP ? state.vpcCIDR : nil)
        let endpoint = spec.install.metadataEndpoint
        return ClusterPlan(
            state: state, securityGroupName: spec.resourceName,
            securityGroupRules: Self.ingressRules(
                adminLocation: spec.adminLocation, workerCIDR: workerCIDR, groupID: "(the cluster's own group)"),
            launches: launches,
            nodeScripts: [
                ("ip-detect", NodeScripts.ipDetect(endpoint: endpoint)),
                ("ip-detect-public", NodeScripts.ipDetectPublic(endpoint: endpoint)),
                ("fault-domain-detect", NodeScripts.faultDomainDetect(endpoint: endpoint)),
            ])
    }

    /// Sends each mutating call of `plan` with `DryRun=true`: AWS answers
    /// `DryRunOperation` where it would be allowed, `UnauthorizedOperation` (or a limit)
    /// where it would be refused. Nothing is created. The launches go without key and group
    /// (they do not exist yet).
    public func dryRun(_ plan: ClusterPlan, spec: ClusterSpec) async -> [DryRunOutcome] {
        var outcomes: [DryRunOutcome] = []
        func record(_ call: String, _ body: () async throws -> Void) async {
            do {
                try await body()
                outcomes.append(
                    DryRunOutcome(
                        call: call, allowed: false, code: "no DryRun answer",
                        message: "the call was not refused as a dry run"))
            } catch let error as EC2Error {
                outcomes.append(
                    DryRunOutcome(
                        call: call, allowed: error.code == "DryRunOperation", code: error.code, message: error.message))
            } catch {
                outcomes.append(DryRunOutcome(call: call, allowed: false, code: "error", message: "\(error)"))
            }
        }
        let key = SSHKeyPair.generate(comment: "flotilla-plan")
        await record("ImportKeyPair \(spec.resourceName)") {
            _ = try await self.ec2.importKeyPair(
                name: spec.resourceName, publicKey: key.publicKeyLine,
                tags: Self.tags(for: spec, created: plan.state.createdTag), dryRun: true)
        }
        await record("CreateSecurityGroup \(plan.securityGroupName) in \(plan.state.vpcID ?? "-")") {
            _ = try await self.ec2.createSecurityGroup(
                name: plan.securityGroupName, description: "Flotilla DC/OS cluster \(spec.clusterID)",
                vpcID: plan.state.vpcID, tags: Self.tags(for: spec, created: plan.state.createdTag),
                dryRun: true)
        }
        for (role, planned) in plan.launches {
            var request = planned
            request.dryRun = true
            request.keyName = nil
            request.securityGroupIDs = []
            await record("RunInstances \(request.count) × \(request.instanceType) (\(role.rawValue))") {
                _ = try await self.ec2.runInstances(request)
            }
        }
        return outcomes
    }
}
