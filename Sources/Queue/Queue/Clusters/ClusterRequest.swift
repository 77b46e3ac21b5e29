import Foundation

/// What a CI agent asks for, stored as `clusters.request`. The worker turns it into a
/// provisioner spec with its own environment (region, image, subnet, SSH settings).
public struct ClusterRequest: Codable, Sendable, Hashable {
    public var masters: Int
    public var agents: Int
    public var publicAgents: Int
    public var instanceType: String
    public var adminLocation: String
    public var installerURL: String
    /// YAML merged over the generated config.yaml by top-level key.
    public var dcosConfig: String?
    public var genconfFiles: [GenconfFile]
    public var lifetimeSeconds: Double
    /// Tags for every resource the cluster gets (instances, volumes, network interfaces,
    /// security group, key pair), as the owner's cost rules want them; nil when none.
    public var tags: [String: String]?
    /// Tags for one role's instances, volumes and network interfaces, over `tags`: keys
    /// `master`, `agent`, `publicAgent`; nil when none.
    public var roleTags: [String: [String: String]]?
    /// An image of the operators' allow-list (table `images`): its AMI, SSH user and Docker
    /// version; nil: the fleet's own image.
    public var image: String?
    /// The region to build in (one the fleet builds in); nil: whichever worker builds it.
    public var region: String?
    /// Files put on every master (absolute paths, as root, mode 0600) before DC/OS is
    /// installed, as the seed's custom-CA recipe needs; nil when none.
    public var masterFiles: [GenconfFile]?
    /// A script run as root on every cluster node after the prerequisites and before the
    /// install; its output is kept as `node-setup-<ip>.log`. nil when none.
    public var nodeSetup: String?
    /// Bare nodes: DC/OS is installed later (`client install`); nil or false otherwise.
    public var provisionOnly: Bool?

    public struct GenconfFile: Codable, Sendable, Hashable {
        public var path: String
        public var contentsBase64: String
        public init(path: String, contents: Data) {
            self.path = path
            self.contentsBase64 = contents.base64EncodedString()
        }
    }

    public init(
        masters: Int, agents: Int, publicAgents: Int, instanceType: String = "m4.large",
        adminLocation: String = "0.0.0.0/0", installerURL: String, dcosConfig: String? = nil,
        genconfFiles: [GenconfFile] = [], lifetimeSeconds: Double = 7200, tags: [String: String]? = nil,
        roleTags: [String: [String: String]]? = nil, image: String? = nil, region: String? = nil,
        masterFiles: [GenconfFile]? = nil, nodeSetup: String? = nil, provisionOnly: Bool? = nil
    ) {
        self.masters = masters
        self.agents = agents
        self.publicAgents = publicAgents
        self.instanceType = instanceType
        self.adminLocation = adminLocation
        self.installerURL = installerURL
        self.dcosConfig = dcosConfig
        self.genconfFiles = genconfFiles
        self.lifetimeSeconds = lifetimeSeconds
        self.tags = tags
        self.roleTags = roleTags
        self.image = image
        self.region = region
        self.masterFiles = masterFiles
        self.nodeSetup = nodeSetup
        self.provisionOnly = provisionOnly
    }

    /// The role names `roleTags` takes.
    public static let tagRoles = ["master", "agent", "publicAgent"]
    /// The tags Flotilla sets itself, which a request may not: its cleanup and sweeps go by them.
    public static let reservedTagKeys: Set<String> = [
        "Name", "cluster", "owner", "managed-by", "created", "deployment", "expires", "role",
    ]
    /// EC2 allows 50 tags per resource; Flotilla's own take at most this many of them.
    public static let maximumCustomTags = 50 - 8

    /// Why a set of tags would be refused (EC2's limits: a key of 1 to 128 characters, not
    /// starting with `aws:`, a value of at most 256, 50 tags per resource), or nil. The server
    /// applies the same rules (api_validate_request, migration 0022).
    public static func tagProblem(_ tags: [String: String], role: String? = nil) -> String? {
        let `where` = role.map { " (\($0) tags)" } ?? ""
        for (key, value) in tags.sorted(by: { $0.key < $1.key }) {
            if key.isEmpty || key.count > 128 { return "a tag key must be 1 to 128 characters\(`where`)" }
            if key.lowercased().hasPrefix("aws:") { return "tag key '\(key.prefix(40))' uses the reserved prefix aws:" }
            if Self.reservedTagKeys.contains(key) {
                return "tag key '\(key)' is Flotilla's own (\(Self.reservedTagKeys.sorted().joined(separator: ", ")))"
            }
            if value.count > 256 { return "the value of tag '\(key.prefix(40))' is longer than 256 characters" }
            if (key + value).unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                return "tag '\(key.prefix(40))' holds a control character"
            }
        }
        return nil
    }

    /// The default split of `nodes` cluster nodes: one master up to 6 nodes, three up to
    /// 20, five beyond; one public agent from 3 nodes on; the rest private agents.
    public static func split(nodes: Int) -> (masters: Int, agents: Int, publicAgents: Int) {
        let masters = nodes <= 6 ? 1 : nodes <= 20 ? 3 : 5
        let publicAgents = nodes >= 3 ? 1 : 0
        return (masters, max(0, nodes - masters - publicAgents), publicAgents)
    }

    /// Parses `90m`, `2h`, `1h30m`, `45s`, `7d` or plain seconds.
    public static func parseDuration(_ text: String) -> Duration? {
        if let seconds = Double(text) { return seconds.isFinite ? .milliseconds(Int64(seconds * 1000)) : nil }
        guard let match = text.wholeMatch(of: /(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?/), !text.isEmpty
        else { return nil }
        let days = match.1.flatMap { Int($0) } ?? 0
        let hours = match.2.flatMap { Int($0) } ?? 0
        let minutes = match.3.flatMap { Int($0) } ?? 0
        let seconds = match.4.flatMap { Int($0) } ?? 0
        guard days < 10_000, hours < 100_000, minutes < 100_000, seconds < 10_000_000 else { return nil }
        return .seconds(days * 86400 + hours * 3600 + minutes * 60 + seconds)
    }

    public static func format(seconds: Double) -> String {
        let total = Int(seconds.rounded())
        let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60)
        return [h > 0 ? "\(h)h" : "", m > 0 ? "\(m)m" : "", s > 0 || total == 0 ? "\(s)s" : ""].joined()
    }
}
