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

    public struct GenconfFile: Codable, Sendable, Hashable {
        public var path: String
        public var contentsBase64: String
        public init(path: String, contents: Data) {
            self.path = path
            self.contentsBase64 = contents.base64EncodedString()
        }
    }

    public init(masters: Int, agents: Int, publicAgents: Int, instanceType: String = "m4.large",
                adminLocation: String = "0.0.0.0/0", installerURL: String, dcosConfig: String? = nil,
                genconfFiles: [GenconfFile] = [], lifetimeSeconds: Double = 7200) {
        self.masters = masters
        self.agents = agents
        self.publicAgents = publicAgents
        self.instanceType = instanceType
        self.adminLocation = adminLocation
        self.installerURL = installerURL
        self.dcosConfig = dcosConfig
        self.genconfFiles = genconfFiles
        self.lifetimeSeconds = lifetimeSeconds
    }

    public static let maximumNodes = 100

    /// The default split of `nodes` cluster nodes: one master up to 6 nodes, three up to
    /// 20, five beyond; one public agent from 3 nodes on; the rest private agents.
    public static func split(nodes: Int) -> (masters: Int, agents: Int, publicAgents: Int) {
        let masters = nodes <= 6 ? 1 : nodes <= 20 ? 3 : 5
        let publicAgents = nodes >= 3 ? 1 : 0
        return (masters, max(0, nodes - masters - publicAgents), publicAgents)
    }

    /// Refuses a request the provisioner would refuse, saying what is accepted.
    public func validate(maximumLifetime: Duration) throws {
        func refuse(_ message: String) -> QueueError { QueueError(.invalidInput, message) }
        let nodes = self.masters + self.agents + self.publicAgents
        guard nodes >= 1 else { throw refuse("a cluster needs at least 1 node (--nodes 1 or more)") }
        guard [1, 3, 5, 7, 9].contains(self.masters) else {
            throw refuse("\(self.masters) masters is not a DC/OS cluster shape: use 1, 3, 5, 7 or 9 masters")
        }
        guard self.agents >= 0, self.publicAgents >= 0 else { throw refuse("agent counts cannot be negative") }
        guard nodes <= Self.maximumNodes else {
            throw refuse("\(nodes) nodes is more than one cluster may have: use 1 to \(Self.maximumNodes)")
        }
        guard self.instanceType.wholeMatch(of: /[a-z][a-z0-9-]*\.[a-z0-9]+/) != nil else {
            throw refuse("instance type '\(self.instanceType.prefix(40))' is not an EC2 instance type like m4.large")
        }
        guard Self.isCIDR(self.adminLocation) else {
            throw refuse("admin location '\(self.adminLocation.prefix(40))' is not an IPv4 CIDR block like 203.0.113.0/24 (0.0.0.0/0 allows everyone)")
        }
        guard let url = URL(string: self.installerURL), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
              url.host?.isEmpty == false
        else {
            throw refuse("installer URL must be an http:// or https:// URL of dcos_generate_config.sh")
        }
        guard self.lifetimeSeconds > 0 else { throw refuse("a lifetime must be positive, like 2h or 90m") }
        guard self.lifetimeSeconds <= maximumLifetime.seconds else {
            throw refuse("a lifetime of \(Self.format(seconds: self.lifetimeSeconds)) is beyond the maximum of \(Self.format(seconds: maximumLifetime.seconds))")
        }
        for file in self.genconfFiles {
            let parts = file.path.split(separator: "/", omittingEmptySubsequences: false)
            guard !file.path.isEmpty, !file.path.hasPrefix("/"), !parts.contains(".."), !parts.contains(""),
                  file.path.wholeMatch(of: /[A-Za-z0-9._\/-]+/) != nil
            else {
                throw refuse("installer file path '\(file.path.prefix(80))' must be relative to genconf/, without '..'")
            }
        }
    }

    static func isCIDR(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].allSatisfy(\.isNumber), let prefix = Int(parts[1]), (0...32).contains(prefix) else { return false }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.allSatisfy { !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) && Int($0)! <= 255 }
    }

    /// Parses `90m`, `2h`, `1h30m`, `45s` or plain seconds.
    public static func parseDuration(_ text: String) -> Duration? {
        if let seconds = Double(text) { return seconds.isFinite ? .milliseconds(Int64(seconds * 1000)) : nil }
        guard let match = text.wholeMatch(of: /(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?/), !text.isEmpty else { return nil }
        let hours = match.1.flatMap { Int($0) } ?? 0
        let minutes = match.2.flatMap { Int($0) } ?? 0
        let seconds = match.3.flatMap { Int($0) } ?? 0
        guard hours < 100_000, minutes < 100_000, seconds < 10_000_000 else { return nil }
        return .seconds(hours * 3600 + minutes * 60 + seconds)
    }

    public static func format(seconds: Double) -> String {
        let total = Int(seconds.rounded())
        let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60)
        return [h > 0 ? "\(h)h" : "", m > 0 ? "\(m)m" : "", s > 0 || total == 0 ? "\(s)s" : ""].joined()
    }
}
