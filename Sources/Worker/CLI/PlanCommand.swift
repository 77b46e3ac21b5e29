import AWSProvisioner
import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Logging

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what a cluster request would create in AWS, without creating anything.",
        discussion: """
            Uses this worker's AWS settings (AWS_*, FLOTILLA_AMI, FLOTILLA_SUBNET_ID,
            FLOTILLA_INSTANCE_TYPES, …) and only read-only calls: checks the image, chooses the
            subnet and zone (and lists the fallbacks), and prints the security group rules,
            every RunInstances with its parameters and the scripts the nodes run.
            --dry-run-aws also sends each mutating call with DryRun=true, so AWS says which it
            would refuse (permissions, limits); still nothing is created.

              worker plan --nodes 3
              worker plan --nodes 10 --instance-type m5.xlarge --dry-run-aws

            \(ClusterShapeOptions.splitHelp)
            """)

    @OptionGroup var shape: ClusterShapeOptions
    @Flag(
        name: .customLong("dry-run-aws"),
        help: "Send each mutating call with DryRun=true and report which AWS would refuse.")
    var dryRunAWS = false
    @Flag(help: "Leave out the node scripts.") var noScripts = false
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let logger = self.common.makeLogger()
        let request = try self.shape.request(lifetimeSeconds: 7200)
        let aws: AWSContext
        do { aws = try AWSContext.fromEnvironment(logger: logger) } catch { fail("cannot set up AWS: \(error)") }
        func stop(_ message: String, code: Int32) async -> Never {
            await aws.shutdown()
            fail(message, code: code)
        }
        do {
            try aws.settings.requireImage()
            let id = "plan-" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(10))
            let spec = aws.settings.spec(id: id, request: request, owner: "plan")
            let provisioner = aws.provisioner(region: spec.region, logger: logger)
            let plan: ClusterPlan
            do {
                plan = try await provisioner.plan(spec)
            } catch let error as ProvisionError {
                await stop("plan refused: \(error.message)", code: error.code == .invalidSpec ? 64 : 1)
            }
            print(Self.render(plan, spec: spec, scripts: !self.noScripts))
            if self.dryRunAWS {
                print("\nDry run (DryRun=true; nothing is created):")
                let outcomes = await provisioner.dryRun(plan, spec: spec)
                for outcome in outcomes { print("  \(outcome)") }
                let refused = outcomes.filter { !$0.allowed }
                print(
                    refused.isEmpty
                        ? "  every call would be allowed"
                        : "  \(refused.count) of \(outcomes.count) calls would be refused")
                await aws.shutdown()
                if !refused.isEmpty { throw ExitCode(2) }
                return
            }
        } catch let error as SettingsError {
            await stop(error.description, code: 64)
        } catch let error as ExitCode {
            throw error
        } catch {
            await stop("plan failed: \(error)", code: 1)
        }
        await aws.shutdown()
    }

    static func render(_ plan: ClusterPlan, spec: ClusterSpec, scripts: Bool) -> String {
        let placement = plan.state.placement!
        var lines: [String] = []
        lines.append(
            "Plan for \(spec.masters) master(s), \(spec.privateAgents) private agent(s), "
                + "\(spec.publicAgents) public agent(s) and a bootstrap node in \(spec.region)")
        lines.append(
            "  image:           \(placement.imageID), root device \(placement.rootDeviceName), "
                + "root volume \(spec.rootVolumeGiB) GiB")
        let tokens = placement.metadataTokens ?? "required"
        let why =
            spec.metadataTokens == .required
            ? "FLOTILLA_METADATA_TOKENS=required: an image whose cloud-init predates 19.4 gets no SSH key"
            : tokens == "required"
                ? "the image declares ImdsSupport v2.0"
                : "the image does not declare ImdsSupport v2.0: a cloud-init before 19.4 reads the SSH key "
                    + "only without a token; FLOTILLA_METADATA_TOKENS=required forces tokens"
        lines.append("  metadata:        HttpTokens \(tokens) (\(why))")
        lines.append(
            "  network:         VPC \(placement.vpcID) (\(placement.vpcCIDR ?? "-")), "
                + "subnet \(placement.subnetID) in \(placement.availabilityZone)")
        lines.append("  instance types:  nodes \(placement.instanceType), bootstrap \(placement.bootstrapInstanceType)")
        let others = (plan.state.placementOptions ?? []).dropFirst().map {
            "\($0.availabilityZone) \($0.subnetID) \($0.instanceType)"
        }
        lines.append("  capacity fallbacks, in order: \(others.isEmpty ? "none" : others.joined(separator: ", "))")
        for skipped in plan.state.skippedSubnets ?? [] { lines.append("  not used:        \(skipped)") }
        lines.append("")
        lines.append("CreateSecurityGroup \(plan.securityGroupName) in \(placement.vpcID), ingress rules:")
        for rule in plan.securityGroupRules {
            let ports =
                rule.fromPort.map { from in rule.toPort.map { $0 == from ? "\(from)" : "\(from)-\($0)" } ?? "\(from)" }
                ?? "all"
            let source = (rule.cidrRanges + rule.sourceGroupIDs).joined(separator: ", ")
            let proto = rule.ipProtocol == "-1" ? "all" : rule.ipProtocol
            lines.append("  \(proto) \(rule.ipProtocol == "-1" || ports == "-1" ? "" : ports + " ")from \(source)")
        }
        for (role, request) in plan.launches {
            lines.append("")
            lines.append("RunInstances (\(role.rawValue)):")
            for (name, value) in request.queryParameters where !name.hasPrefix("TagSpecification.") {
                lines.append("  \(name)=\(value)")
            }
            // The same tags go on every kind: one line for them, not one per tag and kind.
            let byTags = Dictionary(grouping: request.tagSpecifications, by: \.tags)
            for (tags, specifications) in byTags.sorted(by: { $0.value[0].resourceType < $1.value[0].resourceType }) {
                lines.append(
                    "  TagSpecification (\(specifications.map(\.resourceType).joined(separator: ", "))): "
                        + tags.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
            }
        }
        if scripts {
            for (name, text) in plan.nodeScripts {
                lines.append("")
                lines.append("--- \(name) (genconf/\(name)) ---")
                lines.append(text.trimmingCharacters(in: .newlines))
            }
        }
        return lines.joined(separator: "\n")
    }
}
