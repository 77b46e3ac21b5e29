/// A node's role, named as the DC/OS installer names it. Fixed at launch, recorded in the
/// instance's `role` tag, and passed as-is to `dcos_install.sh`.
public struct ClusterRole: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String

    public init?(rawValue: String) {
        guard Self.all.map(\.rawValue).contains(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    private init(_ rawValue: String) { self.rawValue = rawValue }

    public static let bootstrap = ClusterRole("bootstrap")
    public static let master = ClusterRole("master")
    public static let privateAgent = ClusterRole("slave")
    public static let publicAgent = ClusterRole("slave_public")

    public static let all: [ClusterRole] = [.bootstrap, .master, .privateAgent, .publicAgent]

    /// The roles that run DC/OS (every role but the bootstrap node).
    public var isClusterNode: Bool { self != .bootstrap }

    public var description: String { self.rawValue }

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(String.self)
        guard let role = ClusterRole(rawValue: value) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "unknown role \(value)"))
        }
        self = role
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.rawValue)
    }

    public static func < (lhs: ClusterRole, rhs: ClusterRole) -> Bool {
        (Self.all.firstIndex(of: lhs) ?? 0) < (Self.all.firstIndex(of: rhs) ?? 0)
    }
}
