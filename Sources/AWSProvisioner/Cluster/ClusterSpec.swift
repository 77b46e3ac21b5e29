import Foundation

/// Everything a cluster is built from. `validate()` refuses what AWS or the installer would
/// refuse later, with a message that says what is accepted, before anything is created.
public struct ClusterSpec: Codable, Sendable, Hashable {
    /// Names every resource of the cluster (`flotilla-<id>`) and its `cluster` tag.
    public var clusterID: String
    public var masters: Int = 1
    public var privateAgents: Int = 1
    public var publicAgents: Int = 1
    public var instanceType: String = "m4.large"
    public var bootstrapInstanceType: String = "m4.xlarge"
    public var region: String = "us-west-2"
    /// The image for every node; `nil` picks the known default for the region.
    public var ami: String?
    /// The same root volume size for every instance family.
    public var rootVolumeGiB: Int = 150
    /// Who may reach the cluster's public ports (SSH, HTTP(S), Exhibitor, …).
    public var adminLocation: String = "0.0.0.0/0"
    /// Where the bootstrap node downloads `dcos_generate_config.sh`.
    public var installerURL: String
    /// YAML merged over the generated `config.yaml`: each top-level key given here
    /// replaces the generated one.
    public var dcosConfigOverrides: String?
    /// Extra files written into the installer's `genconf/` folder.
    public var genconfFiles: [GenconfFile] = []
    /// Files put on every master (absolute paths, root's, mode 0600) before the install.
    public var masterFiles: [GenconfFile] = []
    /// A script run as root on every cluster node after the prerequisites, before the install.
    public var nodeSetupScript: String?
    /// Stop after the prerequisites and the node setup: bare nodes, DC/OS installed later.
    public var provisionOnly = false
    public var sshUser: String = "centos"
    /// Which address the worker uses to reach nodes over SSH.
    public var sshAddress: SSHAddressMode = .publicIP
    public var sshPort: Int = 22
    /// The subnets a cluster may launch into, in order of preference (one VPC; ideally one
    /// subnet per availability zone). Exactly one is chosen per cluster: the first whose zone
    /// offers the instance types and has capacity. Empty: the default VPC's default subnets.
    public var subnetIDs: [String] = []
    /// Instance types for the cluster's nodes tried in order after `instanceType` when every
    /// zone runs out of capacity for it (FLOTILLA_INSTANCE_TYPES).
    public var fallbackInstanceTypes: [String] = []
    /// The worker fleet's address range, given SSH (port 22) by a rule of its own whatever
    /// `adminLocation` says. `nil`: the VPC's range when SSH goes to private addresses.
    public var workerCIDR: String?
    /// Tag values carried by every resource.
    public var owner: String = "flotilla"
    /// The requester's tags, on every resource after Flotilla's own.
    public var customTags: [EC2Tag] = []
    /// Tags for one role's instances, volumes and network interfaces, after `customTags`.
    public var roleTags: [ClusterRole: [EC2Tag]] = [:]
    /// The fleet the cluster belongs to (`deployment` tag); a sweep touches only its own.
    public var deployment: String?
    public var expiresAt: Date?
    /// How the installer is driven.
    public var install: InstallSettings = InstallSettings()

    public init(clusterID: String, installerURL: String) {
        self.clusterID = clusterID
        self.installerURL = installerURL
    }

    /// A file for the installer's `genconf/` folder.
    public struct GenconfFile: Codable, Sendable, Hashable {
        /// Relative to `genconf/`, e.g. `ca/dcos-ca-certificate.crt`.
        public var path: String
        public var contents: Data

        public init(path: String, contents: Data) {
            self.path = path
            self.contents = contents
        }
    }

    /// Whether instances must use IMDSv2 tokens (`HttpTokens`): `nil` follows the image
    /// (`required` when it declares `ImdsSupport: v2.0`, else `optional`, because an image whose
    /// cloud-init predates 19.4 reads the SSH key only without a token and would get none);
    /// `.required` always requires them (FLOTILLA_METADATA_TOKENS=required).
    public var metadataTokens: MetadataTokens?

    public enum MetadataTokens: String, Codable, Sendable, Hashable {
        case required
    }

    public enum SSHAddressMode: String, Codable, Sendable, Hashable {
        case publicIP = "public"
        case privateIP = "private"
    }

    /// Images with the DC/OS prerequisites (CentOS 7) for the regions the old tools knew.
    /// Anywhere else FLOTILLA_AMI is required (``validate()`` and `worker run` refuse without it).
    public static let defaultAMIs: [String: String] = [
        "us-east-1": "ami-006219aba10688d0b",
        "us-west-2": "ami-03daaf0b90fc7c71b",
    ]

    public static let allowedMasterCounts: Set<Int> = [1, 3, 5, 7, 9]
    public static let maximumNodes = 100

    /// The image to launch.
    public var resolvedAMI: String? { self.ami ?? Self.defaultAMIs[self.region] }

    /// The node instance types in the order they are tried: `instanceType`, then the fallbacks.
    public var nodeInstanceTypes: [String] {
        var seen: Set<String> = []
        return ([self.instanceType] + self.fallbackInstanceTypes).filter { seen.insert($0).inserted }
    }

    /// The number of instances per role, bootstrap included.
    public var counts: [(role: ClusterRole, count: Int)] {
        [
            (.bootstrap, 1), (.master, self.masters), (.privateAgent, self.privateAgents),
            (.publicAgent, self.publicAgents),
        ]
    }

    public func validate() throws {
        func refuse(_ message: String) -> ProvisionError { ProvisionError(.invalidSpec, message) }
        guard self.clusterID.wholeMatch(of: /[a-z][a-z0-9-]{2,39}/) != nil, !self.clusterID.hasSuffix("-") else {
            throw refuse(
                "cluster id '\(self.clusterID.prefix(60))' is not accepted: use 3 to 40 lower-case letters, digits "
                    + "and '-', starting with a letter")
        }
        guard Self.allowedMasterCounts.contains(self.masters) else {
            throw refuse("\(self.masters) masters is not a DC/OS cluster shape: use 1, 3, 5, 7 or 9 masters")
        }
        guard self.privateAgents >= 0, self.publicAgents >= 0 else {
            throw refuse("agent counts cannot be negative")
        }
        let nodes = self.masters + self.privateAgents + self.publicAgents
        guard nodes <= Self.maximumNodes else {
            throw refuse("\(nodes) nodes is more than one cluster may have: use at most \(Self.maximumNodes)")
        }
        for (name, type) in [
            ("instance type", self.instanceType), ("bootstrap instance type", self.bootstrapInstanceType),
        ]
            + self.fallbackInstanceTypes.map({ ("fallback instance type (FLOTILLA_INSTANCE_TYPES)", $0) })
        {
            guard type.wholeMatch(of: /[a-z][a-z0-9-]*\.[a-z0-9]+/) != nil else {
                throw refuse("\(name) '\(type.prefix(40))' is not an EC2 instance type like m4.large")
            }
        }
        guard self.region.wholeMatch(of: /[a-z]{2}(-[a-z]+)+-[0-9]/) != nil else {
            throw refuse("region '\(self.region.prefix(40))' is not an AWS region like us-west-2")
        }
        guard let ami = self.resolvedAMI else {
            throw refuse(
                "no default image is known for \(self.region) "
                    + "(known: \(Self.defaultAMIs.keys.sorted().joined(separator: ", "))): give an AMI id")
        }
        guard ami.wholeMatch(of: /ami-[0-9a-f]{8,17}/) != nil else {
            throw refuse("'\(ami.prefix(40))' is not an AMI id like ami-0123456789abcdef0")
        }
        guard (8...16384).contains(self.rootVolumeGiB) else {
            throw refuse("root volume size \(self.rootVolumeGiB) GiB is out of range: use 8 to 16384")
        }
        guard CIDR(self.adminLocation) != nil else {
            throw refuse(
                "admin location '\(self.adminLocation.prefix(40))' is not an IPv4 CIDR block like 203.0.113.0/24 "
                    + "(0.0.0.0/0 allows everyone)")
        }
        if let workerCIDR = self.workerCIDR, CIDR(workerCIDR) == nil {
            throw refuse(
                "worker CIDR '\(workerCIDR.prefix(40))' (FLOTILLA_WORKER_CIDR) is not an IPv4 CIDR block "
                    + "like 198.51.100.0/24")
        }
        guard Self.isAcceptedInstallerURL(self.installerURL) else {
            throw refuse("installer URL must be an http:// or https:// URL of dcos_generate_config.sh")
        }
        for file in self.genconfFiles {
            let parts = file.path.split(separator: "/", omittingEmptySubsequences: false)
            guard !file.path.isEmpty, !file.path.hasPrefix("/"), !parts.contains(".."), !parts.contains(""),
                file.path.wholeMatch(of: /[A-Za-z0-9._\/-]+/) != nil
            else {
                throw refuse(
                    "genconf file path '\(file.path.prefix(80))' must be relative to genconf/, without '..', "
                        + "using letters, digits, '.', '_', '-', '/'")
            }
        }
        for file in self.masterFiles {
            guard file.path.hasPrefix("/"), !file.path.split(separator: "/").contains(".."),
                file.path.wholeMatch(of: /[A-Za-z0-9._\/-]+/) != nil
            else {
                throw refuse(
                    "master file path '\(file.path.prefix(80))' must be absolute, without '..', "
                        + "using letters, digits, '.', '_', '-', '/'")
            }
        }
        guard self.sshUser.wholeMatch(of: /[a-z_][a-z0-9_-]{0,31}/) != nil else {
            throw refuse("SSH user '\(self.sshUser.prefix(40))' is not a valid login name")
        }
        guard (1...65535).contains(self.sshPort) else { throw refuse("SSH port must be from 1 to 65535") }
        for subnet in self.subnetIDs where subnet.wholeMatch(of: /subnet-[0-9a-f]{8,17}/) == nil {
            throw refuse("'\(subnet.prefix(40))' (FLOTILLA_SUBNET_ID) is not a subnet id like subnet-0123456789abcdef0")
        }
        guard self.subnetIDs.count <= 16, self.fallbackInstanceTypes.count <= 8 else {
            throw refuse("at most 16 subnets and 8 fallback instance types may be given")
        }
        let reserved: Set<String> = [
            "Name", "cluster", "owner", "managed-by", "created", "deployment", "expires", "role",
        ]
        for tags in [self.customTags] + Array(self.roleTags.values) {
            for tag in tags {
                guard (1...128).contains(tag.key.count), !tag.key.lowercased().hasPrefix("aws:"),
                    !reserved.contains(tag.key), tag.value.count <= 256
                else {
                    throw refuse(
                        "tag '\(tag.key.prefix(40))': a key of 1 to 128 characters, not aws:… nor one of Flotilla's "
                            + "own, and a value of at most 256")
                }
            }
        }
        let most = self.customTags.count + (self.roleTags.values.map(\.count).max() ?? 0)
        guard most <= 42 else {
            throw refuse("at most 42 custom tags per resource (EC2 allows 50; Flotilla's own use 8)")
        }
        try self.install.validate()
    }

    /// The server's rule (api_validate_request, migration 0011), which refuses a request before
    /// it is recorded; this library applies it again for callers that do not go through the
    /// server (`worker plan`). A scheme, a host name or [IPv6] literal, an optional port, then
    /// printable ASCII only: no spaces, no user:password@. Tests run one table of cases
    /// through both.
    public static func isAcceptedInstallerURL(_ text: String) -> Bool {
        text.count <= 2000
            && text.wholeMatch(of: /(?i)https?:\/\/([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?([\/?#][!-~]*)?/) != nil
    }

    /// The name of the key pair and security group.
    public var resourceName: String { "flotilla-\(self.clusterID)" }
}

/// How the installer is driven over SSH. Defaults are for real AWS; the loopback test
/// cluster overrides the serve command, the check runner path and `ip-detect`.
public struct InstallSettings: Codable, Sendable, Hashable {
    /// The port the bootstrap node serves `genconf/serve/` on: none of the ports open to
    /// `admin_location`, so only the cluster's members reach the served configuration.
    public var bootstrapPort: Int = 8081
    /// Starts serving `genconf/serve` (the working directory is the installer folder).
    /// `{port}` and `{ip}` are replaced.
    /// The nginx image is pinned, so a new `latest` never changes how clusters install. It runs
    /// under `set -e`: Docker before 20.10 (every version DC/OS 2.x was qualified on) exits 1 for
    /// `rm -f` of a container that does not exist, hence `|| true`.
    public var serveCommand: String =
        "sudo docker rm -f flotilla-bootstrap >/dev/null 2>&1 || true; sudo docker run -d --name flotilla-bootstrap "
        + "--restart=always -p {port}:80 -v \"$PWD/genconf/serve:/usr/share/nginx/html:ro\" nginx:1.27.3-alpine"
    public var checkRunnerPath: String = "/opt/mesosphere/bin/dcos-check-runner"
    /// The Docker the prerequisites install on a node that has none (`docker-ce` from Docker's
    /// own repository): 19.03, the last series DC/OS 2.x was qualified on (18.06 to 19.03). A
    /// node that already runs a Docker daemon keeps it.
    public var dockerVersion: String = "19.03.15"
    /// The time source the prerequisites give chronyd (first, preferred): the Amazon Time Sync
    /// Service, which every VPC reaches without internet access. DC/OS refuses to start on a
    /// node whose clock is not synchronised.
    public var timeServer: String = "169.254.169.123"
    /// Where the node scripts (``NodeScripts``: ip-detect, ip-detect-public,
    /// fault-domain-detect) find the instance metadata service. The scripts themselves are
    /// not a setting: tests run the production ones and change only this address.
    public var metadataEndpoint: String = NodeScripts.defaultEndpoint
    /// Nodes worked on at once in each step. The default covers the largest cluster a policy
    /// allows (100 nodes) and its bootstrap node, so every step is one round on its critical
    /// path whatever the size: at 10, a 30-node deploy ran in three waves, each as long as a
    /// node's whole deploy. Each node already keeps one multiplexed SSH connection for the
    /// install; a step adds one `ssh` client per node while it runs, over that connection.
    public var parallelism: Int = ClusterSpec.maximumNodes + 1
    /// The limit for one SSH command (seconds).
    public var commandTimeoutSeconds: Double = 1200
    /// How long the installer download is retried (object stores may 403 for a while).
    public var downloadRetrySeconds: Double = 600
    /// How long postflight checks are polled until they pass.
    public var postflightTimeoutSeconds: Double = 1200
    public var postflightIntervalSeconds: Double = 1
    /// Waits for instances to run and for SSH to answer.
    public var instanceTimeoutSeconds: Double = 900
    public var sshTimeoutSeconds: Double = 900
    public var pollIntervalSeconds: Double = 2

    public init() {}

    /// Reads settings where every key is optional: a file may override just a few.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = InstallSettings()
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try container.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        self.bootstrapPort = try value(.bootstrapPort, defaults.bootstrapPort)
        self.serveCommand = try value(.serveCommand, defaults.serveCommand)
        self.checkRunnerPath = try value(.checkRunnerPath, defaults.checkRunnerPath)
        self.dockerVersion = try value(.dockerVersion, defaults.dockerVersion)
        self.timeServer = try value(.timeServer, defaults.timeServer)
        self.metadataEndpoint = try value(.metadataEndpoint, defaults.metadataEndpoint)
        self.parallelism = try value(.parallelism, defaults.parallelism)
        self.commandTimeoutSeconds = try value(.commandTimeoutSeconds, defaults.commandTimeoutSeconds)
        self.downloadRetrySeconds = try value(.downloadRetrySeconds, defaults.downloadRetrySeconds)
        self.postflightTimeoutSeconds = try value(.postflightTimeoutSeconds, defaults.postflightTimeoutSeconds)
        self.postflightIntervalSeconds = try value(.postflightIntervalSeconds, defaults.postflightIntervalSeconds)
        self.instanceTimeoutSeconds = try value(.instanceTimeoutSeconds, defaults.instanceTimeoutSeconds)
        self.sshTimeoutSeconds = try value(.sshTimeoutSeconds, defaults.sshTimeoutSeconds)
        self.pollIntervalSeconds = try value(.pollIntervalSeconds, defaults.pollIntervalSeconds)
    }

    func validate() throws {
        guard (1...65535).contains(self.bootstrapPort) else {
            throw ProvisionError(.invalidSpec, "bootstrap port must be from 1 to 65535")
        }
        guard !ClusterProvisioner.adminPorts.contains(self.bootstrapPort) else {
            throw ProvisionError(
                .invalidSpec,
                """
                bootstrap port \(self.bootstrapPort) is open to admin_location \
                (\(ClusterProvisioner.adminPorts.map(String.init).joined(separator: ", "))): the served configuration \
                must reach the cluster's members only; pick another port
                """)
        }
        guard let endpoint = URL(string: self.metadataEndpoint), ["http", "https"].contains(endpoint.scheme ?? ""),
            self.metadataEndpoint.wholeMatch(of: /[A-Za-z0-9:\/.\[\]_-]+/) != nil
        else {
            throw ProvisionError(.invalidSpec, "the metadata endpoint must be an http URL like http://169.254.169.254")
        }
        guard self.dockerVersion.wholeMatch(of: /[0-9]{1,2}\.[0-9]{2}\.[0-9]{1,2}(\.ce)?/) != nil else {
            throw ProvisionError(
                .invalidSpec,
                "the Docker version '\(self.dockerVersion.prefix(40))' is not a docker-ce version like 19.03.15")
        }
        guard self.timeServer.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9.-]{0,252}/) != nil else {
            throw ProvisionError(
                .invalidSpec, "the time server '\(self.timeServer.prefix(40))' is not a host name or IPv4 address")
        }
        guard (1...1000).contains(self.parallelism) else {
            throw ProvisionError(.invalidSpec, "install parallelism must be from 1 to 1000")
        }
        for value in [
            self.commandTimeoutSeconds, self.downloadRetrySeconds, self.postflightTimeoutSeconds,
            self.postflightIntervalSeconds, self.instanceTimeoutSeconds, self.sshTimeoutSeconds,
            self.pollIntervalSeconds,
        ]
        where !(value > 0) {
            throw ProvisionError(.invalidSpec, "install timeouts and intervals must be positive")
        }
    }
}

/// An IPv4 CIDR block.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public var address: UInt32
    public var prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]), (0...32).contains(prefix), parts[1].allSatisfy(\.isNumber)
        else { return nil }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var address: UInt32 = 0
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy(\.isNumber), let value = UInt32(octet),
                value <= 255
            else { return nil }
            address = address << 8 | value
        }
        self.address = address
        self.prefixLength = prefix
    }

    /// The address `offset` past the network base (`10.0.0.0/16` + 2 = `10.0.0.2`).
    public func host(_ offset: UInt32) -> String {
        let mask: UInt32 = self.prefixLength == 0 ? 0 : ~UInt32(0) << (32 - UInt32(self.prefixLength))
        let value = (self.address & mask) &+ offset
        return [24, 16, 8, 0].map { String((value >> UInt32($0)) & 0xff) }.joined(separator: ".")
    }

    public var description: String { "\(self.host(0))/\(self.prefixLength)" }
}
