import Foundation

/// Everything provisioning has decided and created so far: the checkpoint the caller
/// stores after every step and hands back to resume. Intent is recorded before each
/// side effect (the key pair name, the security group name, each `RunInstances`
/// `ClientToken`), so a provisioner started again from any checkpoint finds what exists
/// and never creates a second one.
///
/// It holds the cluster's private key; `description` leaves it out.
public struct ProvisionState: Codable, Sendable, Hashable, CustomStringConvertible {
    public var clusterID: String
    public var step: ProvisionStep = .started
    public var keyPairName: String?
    public var publicKeyLine: String?
    public var privateKeyPEM: String?
    public var securityGroupName: String?
    public var securityGroupID: String?
    public var vpcID: String?
    public var vpcCIDR: String?
    /// Where the instances go (image, subnet, zone, types): chosen before anything is
    /// created, changed only by a capacity fallback.
    public var placement: Placement?
    /// Every placement this cluster may use, in the order they are tried (node type first,
    /// then zone); a fallback takes the next one that nothing rules out.
    public var placementOptions: [Placement]?
    /// The fallbacks taken, for people: `us-west-2a m4.large: InsufficientInstanceCapacity`.
    public var fallbacks: [String]?
    /// Placements used so far: the next one's ``Placement/attempt``, so a `ClientToken` is
    /// never used for two different launches, also across job attempts.
    public var placementAttempts: Int?
    /// Instances of an abandoned placement, recorded before they are terminated: a resumed
    /// run terminates them first.
    public var abandonedInstanceIDs: [String]?
    /// Subnets left out of the placements, with why (their zone does not offer a type).
    public var skippedSubnets: [String]?
    /// The `created` tag of every resource, fixed on the first attempt so that a replayed
    /// `RunInstances` carries exactly the same tags (its `ClientToken` would mismatch otherwise).
    public var createdTag: String?
    public var launches: [Launch] = []
    public var nodes: [Node] = []
    /// How many times the install (prerequisites onward) was started for this cluster. The
    /// steps a run starts on the nodes carry its number (``RemoteStep``), so a resumed run
    /// can say whose step it waits for or collects.
    public var installRuns: Int?

    public init(clusterID: String) { self.clusterID = clusterID }

    /// One `RunInstances` call: its role, idempotency token, count and resulting instances.
    public struct Launch: Codable, Sendable, Hashable {
        public var role: ClusterRole
        public var clientToken: String
        public var count: Int
        public var instanceIDs: [String] = []
        /// The instance type, subnet and tags sent, recorded with the intent: a replay sends
        /// exactly these (`nil` in checkpoints from before they were recorded).
        public var instanceType: String?
        public var subnetID: String?
        public var tags: [EC2Tag]?
    }

    /// One choice of where a cluster's instances go.
    public struct Placement: Codable, Sendable, Hashable, CustomStringConvertible {
        public var imageID: String
        /// The image's own root device: the root volume mapping names it.
        public var rootDeviceName: String
        public var vpcID: String
        public var vpcCIDR: String?
        public var subnetID: String
        public var availabilityZone: String
        /// The type of the cluster's nodes (the bootstrap node has its own).
        public var instanceType: String
        public var bootstrapInstanceType: String
        /// `HttpTokens` for its instances, decided by the plan (``ClusterSpec/metadataTokens``):
        /// `required` or `optional`; `nil` in checkpoints from before it was recorded, which
        /// launched with `required` (so a replay sends the same).
        public var metadataTokens: String?
        /// 0 for the first placement, one more with each fallback: part of every
        /// `ClientToken`, so a launch elsewhere is never mistaken for a replay.
        public var attempt: Int = 0

        public var description: String { "\(self.availabilityZone) \(self.subnetID) \(self.instanceType)" }

        /// The type a role's instances launch as.
        public func instanceType(for role: ClusterRole) -> String {
            role == .bootstrap ? self.bootstrapInstanceType : self.instanceType
        }
    }

    /// A node as the caller will publish it.
    public struct Node: Codable, Sendable, Hashable {
        public var role: ClusterRole
        public var instanceID: String
        public var privateIP: String
        public var publicIP: String?
        /// `type base64`, recorded on first contact and pinned afterwards.
        public var hostKey: String?
        /// As EC2 reports it (after a fallback it may not be the requested type).
        public var instanceType: String?
    }

    /// Every instance id recorded so far.
    public var instanceIDs: [String] { self.launches.flatMap(\.instanceIDs) }

    public var bootstrapNode: Node? { self.nodes.first { $0.role == .bootstrap } }
    public var clusterNodes: [Node] { self.nodes.filter { $0.role.isClusterNode } }

    public var description: String {
        "ProvisionState(cluster: \(self.clusterID), step: \(self.step), key pair: \(self.keyPairName ?? "-"), "
            + "security group: \(self.securityGroupID ?? self.securityGroupName ?? "-"), "
            + "instances: \(self.instanceIDs), private key redacted)"
    }
}

/// How far provisioning got. Steps are ordered; each is done once its checkpoint with
/// this step has been reported.
public struct ProvisionStep: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String
    let order: Int

    private init(_ rawValue: String, _ order: Int) {
        self.rawValue = rawValue
        self.order = order
    }

    public static let started = ProvisionStep("started", 0)
    public static let keyImported = ProvisionStep("key-imported", 1)
    public static let securityGroupReady = ProvisionStep("security-group-ready", 2)
    public static let instancesLaunched = ProvisionStep("instances-launched", 3)
    public static let instancesRunning = ProvisionStep("instances-running", 4)
    public static let sshReady = ProvisionStep("ssh-ready", 5)
    /// Every node has what DC/OS needs (Docker, ipset, …): installed where it was missing.
    public static let prerequisitesReady = ProvisionStep("prerequisites-ready", 6)
    public static let bootstrapReady = ProvisionStep("bootstrap-ready", 7)
    public static let preflightPassed = ProvisionStep("preflight-passed", 8)
    public static let deployed = ProvisionStep("deployed", 9)
    public static let ready = ProvisionStep("ready", 10)

    public static let all: [ProvisionStep] = [
        .started, .keyImported, .securityGroupReady, .instancesLaunched, .instancesRunning,
        .sshReady, .prerequisitesReady, .bootstrapReady, .preflightPassed, .deployed, .ready,
    ]

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        guard let step = Self.all.first(where: { $0.rawValue == value }) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "unknown step \(value)"))
        }
        self = step
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.rawValue)
    }

    public static func < (lhs: ProvisionStep, rhs: ProvisionStep) -> Bool { lhs.order < rhs.order }

    public var description: String { self.rawValue }
}

/// Where a checkpoint was taken: just before a side effect (its intent is recorded) or
/// just after a step completed.
public enum CheckpointMoment: String, Sendable, Hashable {
    case before
    case after
}

/// Receives the provisioner's checkpoints and guards its side effects. The worker stores
/// each checkpoint (and the lease check fences every AWS and SSH mutation); tests use it to
/// interrupt provisioning at any point.
public protocol ProvisionObserver: Sendable {
    /// Called before and after each step's side effect. Throwing stops provisioning there.
    func checkpoint(_ state: ProvisionState, moment: CheckpointMoment, step: String) async throws
    /// Called before each call that changes something in AWS or on a node; throwing stops
    /// provisioning (the worker throws when it lost its lease).
    func beforeMutation(_ description: String) async throws
    /// Progress for people ("waiting for SSH on 3 of 4 nodes").
    func progress(_ message: String) async
    /// Logs to keep with the cluster by name (a node setup's output), whatever the outcome.
    func keep(logs: [String: String]) async throws
}

extension ProvisionObserver {
    public func beforeMutation(_ description: String) async throws {}
    public func progress(_ message: String) async {}
    public func keep(logs: [String: String]) async throws {}
}
