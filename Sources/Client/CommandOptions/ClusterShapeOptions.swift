import ArgumentParser
import Foundation
import Queue

/// What a cluster is made of, as options: `client request`, `client run` and `worker pool
/// set` take the same ones, so a request and a pool built from the same words match.
package struct ClusterShapeOptions: ParsableArguments {
    @Option(help: "Cluster nodes (masters + agents + public agents), split as described below.") package var nodes:
        Int =
            3
    @Option(help: "Masters: 1, 3, 5, 7 or 9.") package var masters: Int?
    @Option(help: "Private agents.") package var agents: Int?
    @Option(help: "Public agents.") package var publicAgents: Int?
    @Option(help: "EC2 instance type of the nodes.") package var instanceType: String = "m4.large"
    @Option(help: "CIDR block allowed to reach the cluster's public ports.") package var adminLocation: String =
        "0.0.0.0/0"
    @Option(help: "URL of dcos_generate_config.sh. Default: $FLOTILLA_INSTALLER_URL.") package var installerURL: String?
    @Option(help: "A YAML file merged over the generated config.yaml (top-level keys replace).") package var dcosConfig:
        String?
    @Option(help: "LOCAL:REMOTE — copy a local file into the installer's genconf/REMOTE. Repeatable.") package
        var copyToInstaller: [String] = []
    @Option(help: "An image of the operators' allow-list (`client images`): its AMI, SSH user and Docker version.")
    package var image: String?
    @Option(
        help: "LOCAL:REMOTE — put a local file at the absolute path REMOTE on every master before DC/OS is installed."
    ) package var copyToMaster: [String] = []
    @Option(help: "A script run as root on every cluster node after the prerequisites, before the install.")
    package var nodeSetup: String?
    @Flag(help: "Bare nodes (prerequisites and node setup, no DC/OS): install later with `client install`.")
    package var provisionOnly = false
    @Option(help: "KEY=VALUE — a tag on every EC2 resource of the cluster. Repeatable.") package var customTag:
        [String] = []
    @Option(help: "KEY=VALUE — a tag on the masters' instances, volumes and interfaces. Repeatable.") package
        var masterTag: [String] = []
    @Option(help: "KEY=VALUE — a tag on the private agents' instances, volumes and interfaces. Repeatable.")
    package var agentTag: [String] = []
    @Option(help: "KEY=VALUE — a tag on the public agents' instances, volumes and interfaces. Repeatable.")
    package var publicAgentTag: [String] = []

    package init() {}

    /// The split text every command's help repeats.
    package static let splitHelp = """
        Default split for --nodes N: 1 master up to 6 nodes, 3 masters up to 20, 5 beyond;
        1 public agent from 3 nodes on; the rest private agents (3 → 1/1/1, 10 → 3/6/1).
        --masters, --agents and --public-agents override it.
        """

    /// The request these options describe, with `lifetimeSeconds`; reads the local files.
    /// Throws a `ValidationError` (exit 64) and writes nothing when they are not usable.
    package func request(lifetimeSeconds: Double) throws -> ClusterRequest {
        // The counts go as given: the server judges them (at least 1 node, 1, 3, 5, 7 or 9
        // masters, the policy's maximum) and its message is what the user sees.
        let split = self.nodes >= 1 ? ClusterRequest.split(nodes: self.nodes) : (masters: 0, agents: 0, publicAgents: 0)
        guard let installerURL = self.installerURL ?? ProcessInfo.processInfo.environment["FLOTILLA_INSTALLER_URL"],
            !installerURL.isEmpty
        else {
            throw ValidationError("no installer URL: pass --installer-url or set FLOTILLA_INSTALLER_URL")
        }
        var dcosConfig: String?
        if let path = self.dcosConfig {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else {
                throw ValidationError("cannot read --dcos-config file \(path)")
            }
            dcosConfig = text
        }
        var files: [ClusterRequest.GenconfFile] = []
        for pair in self.copyToInstaller {
            guard let colon = pair.firstIndex(of: ":"), colon != pair.startIndex,
                pair.index(after: colon) != pair.endIndex
            else {
                throw ValidationError("--copy-to-installer takes LOCAL:REMOTE, like ./ca.crt:ca/ca.crt")
            }
            let local = String(pair[..<colon])
            guard let data = FileManager.default.contents(atPath: local) else {
                throw ValidationError("cannot read \(local) for --copy-to-installer")
            }
            files.append(.init(path: String(pair[pair.index(after: colon)...]), contents: data))
        }
        var masterFiles: [ClusterRequest.GenconfFile] = []
        for pair in self.copyToMaster {
            guard let colon = pair.firstIndex(of: ":"), colon != pair.startIndex,
                pair[pair.index(after: colon)...].hasPrefix("/")
            else {
                throw ValidationError(
                    "--copy-to-master takes LOCAL:/ABSOLUTE/REMOTE, like ./ca.key:/var/lib/dcos/ca.key")
            }
            let local = String(pair[..<colon])
            let remote = String(pair[pair.index(after: colon)...])
            guard !remote.split(separator: "/").contains(".."), remote.wholeMatch(of: /[A-Za-z0-9._\/-]+/) != nil else {
                throw ValidationError(
                    "--copy-to-master: the remote path \(remote.prefix(80)) must use letters, digits, . _ - / and no .."
                )
            }
            guard let data = FileManager.default.contents(atPath: local) else {
                throw ValidationError("cannot read \(local) for --copy-to-master")
            }
            masterFiles.append(.init(path: remote, contents: data))
        }
        var nodeSetup: String?
        if let path = self.nodeSetup {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else {
                throw ValidationError("cannot read the --node-setup script \(path)")
            }
            nodeSetup = text
        }
        let tags = try Self.tags(self.customTag, option: "--custom-tag")
        var roleTags: [String: [String: String]] = [:]
        for (role, option, given) in [
            ("master", "--master-tag", self.masterTag), ("agent", "--agent-tag", self.agentTag),
            ("publicAgent", "--public-agent-tag", self.publicAgentTag),
        ] {
            let parsed = try Self.tags(given, option: option)
            if !parsed.isEmpty { roleTags[role] = parsed }
        }
        return ClusterRequest(
            masters: self.masters ?? split.masters, agents: self.agents ?? split.agents,
            publicAgents: self.publicAgents ?? split.publicAgents, instanceType: self.instanceType,
            adminLocation: self.adminLocation, installerURL: installerURL, dcosConfig: dcosConfig, genconfFiles: files,
            lifetimeSeconds: lifetimeSeconds, tags: tags.isEmpty ? nil : tags,
            roleTags: roleTags.isEmpty ? nil : roleTags, image: self.image,
            masterFiles: masterFiles.isEmpty ? nil : masterFiles, nodeSetup: nodeSetup,
            provisionOnly: self.provisionOnly ? true : nil)
    }

    /// `KEY=VALUE` words as tags, checked as EC2 checks them.
    static func tags(_ words: [String], option: String) throws -> [String: String] {
        var tags: [String: String] = [:]
        for word in words {
            guard let equals = word.firstIndex(of: "=") else {
                throw ValidationError("\(option) takes KEY=VALUE, like cost-center=4711 (got \(word.prefix(40)))")
            }
            let key = String(word[..<equals])
            guard tags[key] == nil else { throw ValidationError("\(option) gives the tag \(key.prefix(40)) twice") }
            tags[key] = String(word[word.index(after: equals)...])
        }
        if let problem = ClusterRequest.tagProblem(tags) { throw ValidationError("\(option): \(problem)") }
        if tags.count > ClusterRequest.maximumCustomTags {
            throw ValidationError(
                "\(option): at most \(ClusterRequest.maximumCustomTags) tags "
                    + "(EC2 allows 50 per resource; Flotilla's own use 8)"
            )
        }
        return tags
    }
}
