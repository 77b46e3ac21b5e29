import Foundation
import Synchronization
import Timing

/// Where capacity recently ran out: (zone, instance type) → the error code, per region. A
/// placement that failed is skipped by the other clusters that share the record until it
/// expires. ``CapacityMemory`` keeps it in the process; the fleet keeps it in PostgreSQL, so
/// every worker's clusters skip it.
public protocol CapacityRecord: Sendable {
    /// How long a failure is remembered.
    var lifetime: Duration { get }
    func remember(region: String, zone: String, instanceType: String, code: String) async
    /// The failures of `region` not yet expired, keyed `"zone type"`.
    func failures(region: String) async -> [String: String]
}

/// A ``CapacityRecord`` in this process's memory.
public final class CapacityMemory: CapacityRecord {
    /// The process's memory, shared by all its provisioners.
    public static let shared = CapacityMemory()

    public let lifetime: Duration
    private let entries = Mutex<[String: (until: ContinuousClock.Instant, code: String)]>([:])

    public init(lifetime: Duration = .seconds(300)) {
        self.lifetime = lifetime
    }

    public func remember(region: String, zone: String, instanceType: String, code: String) async {
        let until = ContinuousClock.now.advanced(by: self.lifetime)
        self.entries.withLock { $0["\(region) \(zone) \(instanceType)"] = (until, code) }
    }

    public func failures(region: String) async -> [String: String] {
        let now = ContinuousClock.now
        return self.entries.withLock { entries in
            entries = entries.filter { $0.value.until > now }
            var result: [String: String] = [:]
            for (key, entry) in entries where key.hasPrefix(region + " ") {
                result[String(key.dropFirst(region.count + 1))] = entry.code
            }
            return result
        }
    }
}

/// A launch that failed for lack of capacity where it was placed (an error answer, or an
/// instance that went from pending to terminated): the cluster moves to its next placement.
struct PlacementFailure: Error, CustomStringConvertible {
    var code: String
    var message: String
    /// The instance type that found no capacity (the bootstrap's or the nodes').
    var instanceType: String

    var description: String { "\(self.code): \(self.message)" }

    /// Error codes that say "not here, not now" about a zone and type. `Unsupported` counts
    /// only when it names the zone (the type is not offered there); for anything else it is a
    /// request EC2 will never accept.
    static func isPlacementFailure(_ error: EC2Error) -> Bool {
        EC2Error.capacityCodes.contains(error.code)
            || (error.code == "Unsupported" && error.message.contains("Availability Zone"))
    }
    /// The state reasons of instances that never started for a reason of the zone's.
    static let stateReasons: Set<String> = ["Server.InsufficientInstanceCapacity", "Server.InternalError"]
    /// Failures worth remembering for other clusters (an internal error is not about capacity).
    var isCapacity: Bool { self.code != "Server.InternalError" }
}

extension ClusterProvisioner {
    /// How long a resource just created may stay invisible to other calls (EC2 is
    /// eventually consistent) before that counts as a failure.
    static let visibilityTimeout = Duration.seconds(120)

    /// Runs `operation` again while it fails with one of `codes`: a resource just created
    /// that another call cannot see yet. Waits 0.25 s, doubling to 4 s, for up to
    /// ``visibilityTimeout``; other errors, and the last one, are thrown.
    func untilVisible<T: Sendable>(
        _ what: String, codes: Set<String>, observer: any ProvisionObserver,
        _ operation: () async throws -> T
    ) async throws -> T {
        let deadline = ContinuousClock.now.advanced(by: Self.visibilityTimeout)
        var delay = Duration.milliseconds(250)
        while true {
            do {
                return try await operation()
            } catch let error as EC2Error where codes.contains(error.code) && ContinuousClock.now < deadline {
                await observer.progress("\(what): \(error.code), waiting for EC2 to catch up")
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(4))
            }
        }
    }

    // MARK: Planning

    /// A Marketplace image launches only for an account that accepted its terms; EC2 says so
    /// (`OptInRequired`) only at launch. A dry-run launch asks first, so nothing is spent on a
    /// cluster that could never start. Images without product codes cost no call; a probe
    /// refused for another reason decides nothing.
    func requireSubscription(to image: EC2Image, launching type: String) async throws {
        guard let product = image.productCodes.first(where: { $0.type == "marketplace" }) else { return }
        var probe = EC2RunInstancesRequest(
            imageID: image.imageID, instanceType: type, count: 1, clientToken: "flotilla-plan-\(UUID().uuidString)")
        probe.dryRun = true
        do {
            _ = try await self.ec2.runInstances(probe)
        } catch let error as EC2Error where error.code == "OptInRequired" {
            throw ProvisionError(
                .invalidSpec,
                "image \(image.imageID) is AWS Marketplace product \(product.id), and this account has not "
                    + "accepted its terms (OptInRequired): subscribe at "
                    + "https://aws.amazon.com/marketplace/pp?sku=\(product.id), or use another image")
        } catch is EC2Error {
            // DryRunOperation: subscribed. Any other refusal (a policy that grants launches only
            // with the cluster's tags, subnet and group, which a probe has not) cannot tell; the
            // launch itself will.
            return
        }
    }

    /// Checks the image and chooses the network before anything is created: the image
    /// exists, is available, runs on the instance types' CPUs, has an EBS root no larger
    /// than the requested size; the subnets (given, or the default VPC's) are in one VPC;
    /// and the placements are every (node type, zone) whose zone offers both the node and
    /// the bootstrap type, type-major. Refusals are ``ProvisionError/Code/invalidSpec``.
    func plan(_ spec: ClusterSpec, _ state: inout ProvisionState, _ observer: any ProvisionObserver) async throws {
        func refuse(_ message: String) -> ProvisionError { ProvisionError(.invalidSpec, message) }
        let imageID = spec.resolvedAMI!
        do {
            let image: EC2Image
            do {
                guard let found = try await self.ec2.describeImages(imageIDs: [imageID]).first else {
                    throw refuse("image \(imageID) does not exist in \(spec.region) (FLOTILLA_AMI)")
                }
                image = found
            } catch let error as EC2Error where error.code.hasPrefix("InvalidAMIID.") {
                throw refuse("image \(imageID) does not exist in \(spec.region) (FLOTILLA_AMI): \(error.code)")
            }
            guard image.state == "available" else {
                throw refuse("image \(imageID) is \(image.state), not available")
            }
            guard image.rootDeviceType == nil || image.rootDeviceType == "ebs" else {
                throw refuse(
                    "image \(imageID) has an \(image.rootDeviceType ?? "unknown") root device, "
                        + "which cannot be resized: use an EBS-backed image")
            }
            guard let root = image.rootDeviceName else {
                throw refuse(
                    "image \(imageID) does not name its root device: use an image that does "
                        + "(every current EBS-backed image does)")
            }
            if let snapshot = image.rootVolumeSizeGiB, spec.rootVolumeGiB < snapshot {
                throw refuse(
                    "the root volume of \(spec.rootVolumeGiB) GiB is smaller than image \(imageID)'s \(snapshot) GiB "
                        + "snapshot: ask for at least \(snapshot) GiB")
            }
            let types =
                [spec.bootstrapInstanceType] + spec.nodeInstanceTypes.filter { $0 != spec.bootstrapInstanceType }
            if image.enaSupport == false, let type = types.first(where: Self.requiresENA) {
                throw refuse(
                    "instance type \(type) needs the ENA driver (a Nitro type), and image \(imageID) does not declare "
                        + "ENA support: EC2 would refuse the launch (InvalidParameterCombination); use an ENA image "
                        + "or an older type")
            }
            try await self.requireSubscription(to: image, launching: spec.bootstrapInstanceType)
            let tokens = Self.metadataTokens(spec, image)
            let architectures: [String: [String]]
            do {
                architectures = try await self.ec2.supportedArchitectures(of: types)
            } catch let error as EC2Error where error.code == "InvalidInstanceType" {
                throw refuse("an instance type is not offered in \(spec.region): \(error.message)")
            }
            for type in types {
                guard let supported = architectures[type] else {
                    throw refuse("instance type \(type) is not offered in \(spec.region)")
                }
                if let architecture = image.architecture, !supported.contains(architecture) {
                    throw refuse(
                        "image \(imageID) is built for \(architecture) but \(type) runs "
                            + "\(supported.joined(separator: "/")): pick an image and types of one architecture")
                }
            }

            // The network: the given subnets, else the default VPC's default subnets.
            var subnets: [EC2Subnet]
            if !spec.subnetIDs.isEmpty {
                do {
                    let found = try await self.ec2.describeSubnets(subnetIDs: spec.subnetIDs)
                    subnets = spec.subnetIDs.compactMap { id in found.first { $0.subnetID == id } }
                } catch let error as EC2Error where error.code == "InvalidSubnetID.NotFound" {
                    throw refuse("a subnet of FLOTILLA_SUBNET_ID does not exist in \(spec.region): \(error.message)")
                }
                guard subnets.count == spec.subnetIDs.count else {
                    let missing = spec.subnetIDs.filter { id in !subnets.contains { $0.subnetID == id } }
                    throw refuse(
                        "subnets \(missing.joined(separator: ", ")) do not exist in \(spec.region) (FLOTILLA_SUBNET_ID)"
                    )
                }
                guard Set(subnets.map(\.vpcID)).count == 1 else {
                    throw refuse(
                        "the subnets of FLOTILLA_SUBNET_ID are in \(Set(subnets.map(\.vpcID)).count) VPCs: a cluster's "
                            + "security group lives in one, so give subnets of one VPC")
                }
            } else {
                guard
                    let vpc = try await self.ec2.describeVpcs(filters: [EC2Filter(name: "is-default", values: ["true"])]
                    ).first
                else {
                    throw refuse(
                        "\(spec.region) has no default VPC: set FLOTILLA_SUBNET_ID to the subnets clusters may use")
                }
                subnets = try await self.ec2.describeSubnets(filters: [
                    EC2Filter(name: "vpc-id", values: [vpc.vpcID]),
                    EC2Filter(name: "default-for-az", values: ["true"]),
                ])
                .sorted { ($0.availabilityZone ?? "") < ($1.availabilityZone ?? "") }
                guard !subnets.isEmpty else {
                    throw refuse("the default VPC of \(spec.region) has no default subnets: set FLOTILLA_SUBNET_ID")
                }
            }
            // A group created by an earlier attempt lives in its VPC: stay there.
            if let existing = state.vpcID, state.securityGroupID != nil {
                subnets = subnets.filter { $0.vpcID == existing }
                guard !subnets.isEmpty else {
                    throw refuse(
                        "the cluster's security group is in \(existing), but none of the subnets now configured is: "
                            + "restore FLOTILLA_SUBNET_ID or request a new cluster")
                }
            }
            let vpcID = subnets[0].vpcID
            let vpcCIDR = try await self.ec2.describeVpcs(vpcIDs: [vpcID]).first?.cidrBlock

            // Placements: node type first, then zone, where the zone offers both types.
            let zones = subnets.compactMap(\.availabilityZone)
            let offerings = try await self.ec2.instanceTypeOfferings(
                instanceTypes: types, zones: Array(Set(zones)).sorted())
            let offered = Set(offerings.map { "\($0.location) \($0.instanceType)" })
            var options: [ProvisionState.Placement] = []
            state.skippedSubnets = subnets.compactMap { subnet in
                let zone = subnet.availabilityZone ?? "no zone"
                let missing = types.filter { !offered.contains("\(zone) \($0)") }
                return missing.count == types.count || !offered.contains("\(zone) \(spec.bootstrapInstanceType)")
                    ? "\(subnet.subnetID) (\(zone)): does not offer \(missing.joined(separator: ", "))" : nil
            }
            for type in spec.nodeInstanceTypes {
                for subnet in subnets {
                    guard let zone = subnet.availabilityZone,
                        offered.contains("\(zone) \(type)"), offered.contains("\(zone) \(spec.bootstrapInstanceType)")
                    else { continue }
                    options.append(
                        ProvisionState.Placement(
                            imageID: imageID, rootDeviceName: root, vpcID: vpcID, vpcCIDR: vpcCIDR,
                            subnetID: subnet.subnetID,
                            availabilityZone: zone, instanceType: type,
                            bootstrapInstanceType: spec.bootstrapInstanceType, metadataTokens: tokens))
                }
            }
            guard !options.isEmpty else {
                throw refuse(
                    """
                    no zone of the subnets (\(zones.joined(separator: ", "))) offers both \
                    \(spec.nodeInstanceTypes.joined(separator: " or ")) and \(spec.bootstrapInstanceType): \
                    choose other types or subnets
                    """)
            }
            state.placementOptions = options
            state.vpcID = vpcID
            state.vpcCIDR = vpcCIDR
            state.placement = try self.nextPlacement(
                spec, state, after: nil, remembered: await self.capacity.failures(region: spec.region))
            state.placementAttempts = state.placement!.attempt + 1
        } catch let error as EC2Error {
            throw ProvisionError(.aws, "cannot check the image and network: \(error)", underlying: error)
        }
        if state.createdTag == nil { state.createdTag = ISO8601DateFormatter().string(from: Date()) }
        await observer.progress(
            "placement: \(state.placement!) (image \(imageID), root \(state.placement!.rootDeviceName), "
                + "HttpTokens \(state.placement!.metadataTokens ?? "required"))")
        try await observer.checkpoint(state, moment: .after, step: "plan")
    }

    /// `HttpTokens` for a cluster's instances: `required` when the operator asks for it or the
    /// image declares `ImdsSupport: v2.0`; otherwise `optional`. An image whose cloud-init
    /// predates 19.4 (CentOS 7.6 to 7.8 ship 18.2 and 18.5) asks the metadata service for the
    /// SSH key without a token: with tokens required it gets 401s, gives up after 120 s and
    /// boots without a key, so SSH never opens.
    static func metadataTokens(_ spec: ClusterSpec, _ image: EC2Image) -> String {
        spec.metadataTokens == .required || image.imdsSupport == "v2.0" ? "required" : "optional"
    }

    /// Instance types built on the Nitro system, which launch only from an image with the
    /// ENA driver: the 5th generation of general purpose, compute and memory types and later,
    /// t3/t4g, and the Nitro families of other lines.
    public static func requiresENA(_ type: String) -> Bool {
        let family = type.split(separator: ".").first.map(String.init) ?? type
        let nitro = /(m|c|r)[5-9][a-z]*|t3a?|t4g|x2[a-z]*|z1d|i3en|i4[a-z]*|g[4-6][a-z]*|p3dn|p[45][a-z]*/
        let others = /inf[12]|trn1|a1|d3[a-z]*/
        return family.wholeMatch(of: nitro) != nil || family.wholeMatch(of: others) != nil
    }

    /// The first placement after `current` (in ``ProvisionState/placementOptions`` order)
    /// that neither this cluster's fallbacks nor the process's capacity memory rule out.
    func nextPlacement(
        _ spec: ClusterSpec, _ state: ProvisionState, after current: ProvisionState.Placement?,
        remembered: [String: String]
    ) throws -> ProvisionState.Placement {
        let options = state.placementOptions ?? []
        let start =
            current.flatMap { placement in
                options.firstIndex { $0.subnetID == placement.subnetID && $0.instanceType == placement.instanceType }
                    .map { $0 + 1 }
            } ?? 0
        let failed = Set(state.fallbacks ?? [])
        var skipped: [String] = []
        for option in options.dropFirst(start) {
            let ruledOut = [option.instanceType, option.bootstrapInstanceType].compactMap { type -> String? in
                if failed.contains(where: { $0.hasPrefix("\(option.availabilityZone) \(type):") }) {
                    return "\(type) failed here"
                }
                return remembered["\(option.availabilityZone) \(type)"]
                    .map { "\(type) \($0) in the last \(Int(self.capacity.lifetime.seconds)) s" }
            }
            if let reason = ruledOut.first {
                skipped.append("\(option.availabilityZone): \(reason)")
                continue
            }
            var next = option
            next.attempt = state.placementAttempts ?? 0
            return next
        }
        let tried = (state.fallbacks ?? []) + skipped
        throw ProvisionError(
            .aws, "no capacity left for cluster \(spec.clusterID) in \(spec.region): \(tried.joined(separator: "; "))")
    }

    /// Leaves a placement that found no capacity: records the decision (the failure, the
    /// instances to terminate, the next placement) in a checkpoint first, then terminates what
    /// the cluster launched there and remembers the zone and type for other clusters. When no
    /// placement is left, the cluster plans afresh on its next job attempt (with new tokens)
    /// and this one fails retryably.
    func fallBack(
        _ spec: ClusterSpec, _ state: inout ProvisionState, _ failure: PlacementFailure,
        _ observer: any ProvisionObserver
    ) async throws {
        guard let placement = state.placement else {
            throw ProvisionError(
                .aws,
                "launch of \(spec.clusterID) found no capacity (\(failure)) and has no placement recorded to move from")
        }
        if failure.isCapacity {
            await self.capacity.remember(
                region: spec.region, zone: placement.availabilityZone, instanceType: failure.instanceType,
                code: failure.code)
        }
        let partial: [String]
        do {
            let tagged = try await self.ec2.describeInstances(filters: [
                .tag("cluster", spec.clusterID), EC2Filter(name: "subnet-id", values: [placement.subnetID]),
                EC2Filter(name: "instance-state-name", values: ["pending", "running", "stopping", "stopped"]),
            ]).map(\.instanceID)
            partial = Set(tagged).union(state.instanceIDs).sorted()
        } catch let error as EC2Error {
            throw ProvisionError(
                .aws, "cannot find the launch to clean up in \(placement.availabilityZone): \(error)", underlying: error
            )
        }
        let entry = "\(placement.availabilityZone) \(failure.instanceType): \(failure.code)"
        state.fallbacks = (state.fallbacks ?? []) + [entry]
        state.abandonedInstanceIDs = Array(Set(state.abandonedInstanceIDs ?? []).union(partial)).sorted()
        state.launches = []
        state.nodes = []
        state.step = min(state.step, .securityGroupReady)
        let next: ProvisionState.Placement
        do {
            next = try self.nextPlacement(
                spec, state, after: placement, remembered: await self.capacity.failures(region: spec.region))
        } catch {
            // Nothing left: plan again next time, with new tokens, once the memory has expired.
            state.placement = nil
            state.fallbacks = nil
            try await observer.checkpoint(state, moment: .before, step: "fallback: \(entry); no placement left")
            try await self.terminateAbandoned(spec, &state, observer)
            throw error
        }
        state.placement = next
        state.placementAttempts = next.attempt + 1
        let message = "fallback: \(entry); now \(next.availabilityZone) \(next.instanceType)"
        await observer.progress(message)
        try await observer.checkpoint(state, moment: .before, step: message)
        try await self.terminateAbandoned(spec, &state, observer)
    }

    /// Terminates the instances of abandoned placements (recorded before, so a crash here
    /// is finished by the next run).
    func terminateAbandoned(_ spec: ClusterSpec, _ state: inout ProvisionState, _ observer: any ProvisionObserver)
        async throws
    {
        guard let ids = state.abandonedInstanceIDs, !ids.isEmpty else { return }
        do {
            try await observer.beforeMutation("terminate \(ids.count) instances of an abandoned placement")
            _ = try await self.untilVisible(
                "terminating the abandoned launch", codes: ["InvalidInstanceID.NotFound"], observer: observer
            ) {
                try await self.ec2.terminateInstances(instanceIDs: ids)
            }
        } catch let error as EC2Error {
            throw ProvisionError(
                .aws, "cannot terminate the abandoned launch of \(spec.clusterID): \(error)", underlying: error)
        }
        state.abandonedInstanceIDs = nil
    }
}
