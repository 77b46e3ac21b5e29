import Foundation
import PostgresNIO

/// Where a cluster is in its life.
public struct ClusterState: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init?(rawValue: String) {
        guard Self.all.map(\.rawValue).contains(rawValue) else { return nil }
        self.rawValue = rawValue
    }
    private init(_ rawValue: String) { self.rawValue = rawValue }

    public static let requested = ClusterState("requested")
    public static let provisioning = ClusterState("provisioning")
    public static let ready = ClusterState("ready")
    public static let failed = ClusterState("failed")
    public static let tearingDown = ClusterState("tearing_down")
    /// A teardown ended in failure; the janitor retries it later. Visible to operators.
    public static let teardownFailed = ClusterState("teardown_failed")
    public static let destroyed = ClusterState("destroyed")
    public static let all: [ClusterState] = [
        .requested, .provisioning, .ready, .failed, .tearingDown, .teardownFailed, .destroyed,
    ]

    /// `true` once the cluster will never become ready.
    public var isFinal: Bool {
        self == .failed || self == .tearingDown || self == .teardownFailed || self == .destroyed
    }
    public var description: String { self.rawValue }
}

/// A cluster row as clients and operators see it (no secrets).
public struct ClusterRecord: Sendable, Hashable {
    public var id: String
    public var requestID: String?
    public var owner: String
    public var state: ClusterState
    public var phase: String?
    public var masters: Int
    public var agents: Int
    public var publicAgents: Int
    public var instanceType: String
    /// The request as JSON text.
    public var request: String
    /// The provisioner's last checkpoint as JSON text (no private key).
    public var checkpoint: String?
    public var lifetime: Duration
    public var sshUser: String?
    public var sshPort: Int?
    public var readyAt: Date?
    public var expiresAt: Date?
    public var releaseRequestedAt: Date?
    public var lastError: String?
    public var createdAt: Date
    public var destroyedAt: Date?
    /// Where the cluster lives, recorded when provisioning starts.
    public var region: String? = nil
    /// The fleet whose tags its resources carry.
    public var deployment: String? = nil
    /// Why teardown started: released, expired, abandoned, failed, reconciled.
    public var teardownReason: String? = nil
    /// Free text the requester gave (`client request --label`); the owner is the login.
    public var label: String? = nil
}

/// A node as published for the lease holder.
public struct NodeRecord: Sendable, Hashable, Codable {
    public var role: String
    public var instanceID: String
    public var privateIP: String
    public var publicIP: String?
    public var hostKey: String?
    /// The EC2 instance type, as the worker launched it (for instance-hours per type).
    public var instanceType: String?

    public init(
        role: String, instanceID: String, privateIP: String, publicIP: String?, hostKey: String?,
        instanceType: String? = nil
    ) {
        self.instanceType = instanceType
        self.role = role
        self.instanceID = instanceID
        self.privateIP = privateIP
        self.publicIP = publicIP
        self.hostKey = hostKey
    }
}

/// A new cluster request. The database checks it (``ClusterAPI/request(_:)``): the same rules
/// for every caller, the policy's limits and the caller's quota; the owner is the login.
public struct NewCluster: Sendable {
    public var requestID: String?
    /// Free text for people; the owner is the database login, never a flag.
    public var label: String?
    /// The whole request as a JSON object (no secrets): a ``ClusterRequest``.
    public var request: String
    /// The server gives the request up (tears it down) when nobody collected it (read its key
    /// or extended it) this long after the request.
    public var abandonAfter: Duration
    /// Whether a warm pool whose spec matches may serve the request.
    public var poolMode: PoolMode
    /// A pool to take the cluster from whatever the request's spec (only its lifetime counts).
    public var poolName: String?

    public init(
        requestID: String? = nil, label: String? = nil, request: String, abandonAfter: Duration = .seconds(3600 + 15),
        poolMode: PoolMode = .auto, poolName: String? = nil
    ) {
        self.requestID = requestID
        self.label = label
        self.request = request
        self.abandonAfter = abandonAfter
        self.poolMode = poolMode
        self.poolName = poolName
    }
}

/// How a request uses a warm pool whose spec matches it.
public enum PoolMode: String, Sendable, CaseIterable {
    /// A ready, recently health-checked pool cluster if there is one, else a new cluster.
    case auto
    /// As `auto`, but with no ready one, a pool cluster still being built before a new one.
    case wait
    /// Always a new cluster.
    case never
}

/// What `api_request` answered.
public struct RequestReceipt: Sendable {
    public var id: String
    public var leaseToken: String
    /// false when a request id used before returned its cluster.
    public var created: Bool
    /// The warm pool the cluster came from, if it came from one.
    public var pool: String?
}

extension NewCluster {
    public init(
        requestID: String? = nil, label: String? = nil, request: ClusterRequest,
        abandonAfter: Duration = .seconds(3600 + 15), poolMode: PoolMode = .auto
    ) throws {
        self.init(
            requestID: requestID, label: label,
            request: String(decoding: try JSONEncoder().encode(request), as: UTF8.self),
            abandonAfter: abandonAfter, poolMode: poolMode)
    }
}

extension ClusterRecord {
    /// The one decoding of a cluster row: the columns `api_clusters` returns, in its order (id,
    /// request_id, owner, label, state, phase, masters, agents, public_agents, instance_type,
    /// request, lifetime in seconds, ssh_user, ssh_port, ready_at, expires_at,
    /// release_requested_at, last_error, created_at, destroyed_at, region, deployment,
    /// teardown_reason), and the checkpoint as a 24th column where the fleet reads it
    /// (``ClusterStore``); clients never see a checkpoint.
    static func decode(_ row: PostgresRow) throws -> ClusterRecord {
        let cells = row.makeRandomAccess()
        func column<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T { try cells[index].decode(T.self) }
        return ClusterRecord(
            id: try column(0, String.self), requestID: try column(1, String?.self), owner: try column(2, String.self),
            state: ClusterState(rawValue: try column(4, String.self)) ?? .failed, phase: try column(5, String?.self),
            masters: try column(6, Int.self), agents: try column(7, Int.self), publicAgents: try column(8, Int.self),
            instanceType: try column(9, String.self), request: try column(10, String.self),
            checkpoint: cells.count > 23 ? try column(23, String?.self) : nil,
            lifetime: .milliseconds(Int64(try column(11, Double.self) * 1000)), sshUser: try column(12, String?.self),
            sshPort: try column(13, Int?.self), readyAt: try column(14, Date?.self),
            expiresAt: try column(15, Date?.self), releaseRequestedAt: try column(16, Date?.self),
            lastError: try column(17, String?.self), createdAt: try column(18, Date.self),
            destroyedAt: try column(19, Date?.self), region: try column(20, String?.self),
            deployment: try column(21, String?.self), teardownReason: try column(22, String?.self),
            label: try column(3, String?.self))
    }
}
