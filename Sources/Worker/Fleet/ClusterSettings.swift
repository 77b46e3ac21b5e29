import AWSProvisioner
import Foundation
import Queue

/// How this worker deployment reaches AWS and the nodes, from the environment:
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `AWS_REGION` (or the AWS profile) | the region clusters are built in | us-west-2 |
/// | `FLOTILLA_AMI` | the image for every node | the known CentOS 7 image of the region |
/// | `FLOTILLA_SUBNET_ID` | the subnets a cluster may launch into (see below) | the default VPC's default subnets |
/// | `FLOTILLA_INSTANCE_TYPES` | comma-separated fallback node types, tried in order when capacity runs out | none |
/// | `FLOTILLA_WORKER_CIDR` | the fleet's range, given SSH whatever `admin_location` says | the VPC with private SSH |
/// | `FLOTILLA_SSH_USER` | login user on the nodes | centos |
/// | `FLOTILLA_SSH_PORT` | SSH port on the nodes | 22 |
/// | `FLOTILLA_SSH_ADDRESS` | `public` or `private`: the address used for SSH | public |
/// | `FLOTILLA_METADATA_TOKENS` | `image` (tokens if the image has ImdsSupport v2.0) or `required` | image |
/// | `FLOTILLA_INSTALL_SETTINGS` | a JSON file overriding install settings (serve command, ports, timeouts) | none |
/// | `FLOTILLA_SSH_DIR` | where per-cluster SSH folders go (short path) | /tmp/flotilla-ssh |
/// | `FLOTILLA_DEPLOYMENT` | `deployment` tag of every resource; the sweep touches only its own | the database's id |
///
/// `FLOTILLA_SUBNET_ID` is comma-separated, all in one VPC, in order of preference; one subnet is chosen per cluster,
/// in a zone offering the types. The fallback types of `FLOTILLA_INSTANCE_TYPES` are tried after the requested one.
package struct ClusterSettings: Sendable {
    package var region: String
    package var ami: String?
    package var subnetIDs: [String] = []
    package var fallbackInstanceTypes: [String] = []
    /// The fleet's address range, given SSH by a rule of its own (FLOTILLA_WORKER_CIDR).
    package var workerCIDR: String?
    package var sshUser = "centos"
    package var sshPort = 22
    package var sshAddress = ClusterSpec.SSHAddressMode.publicIP
    package var metadataTokens: ClusterSpec.MetadataTokens?
    package var install = InstallSettings()
    package var sshDirectory = URL(fileURLWithPath: "/tmp/flotilla-ssh")
    /// `nil`: the database's own deployment id (table `deployment`).
    package var deployment: String?

    package init(region: String) {
        self.region = region
    }

    package static func fromEnvironment(
        region: String, _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ClusterSettings {
        var settings = ClusterSettings(region: region)
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        settings.ami = value("FLOTILLA_AMI")
        func list(_ name: String) -> [String] {
            (value(name) ?? "").split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        }
        settings.subnetIDs = list("FLOTILLA_SUBNET_ID")
        for subnet in settings.subnetIDs where subnet.wholeMatch(of: /subnet-[0-9a-f]{8,17}/) == nil {
            throw SettingsError(
                "FLOTILLA_SUBNET_ID: '\(subnet.prefix(40))' is not a subnet id like subnet-0123456789abcdef0")
        }
        guard settings.subnetIDs.count <= 16 else {
            throw SettingsError(
                "FLOTILLA_SUBNET_ID names \(settings.subnetIDs.count) subnets: give at most 16 (one per zone is enough)"
            )
        }
        settings.fallbackInstanceTypes = list("FLOTILLA_INSTANCE_TYPES")
        guard settings.fallbackInstanceTypes.count <= 8 else {
            throw SettingsError(
                "FLOTILLA_INSTANCE_TYPES names \(settings.fallbackInstanceTypes.count) types: give at most 8")
        }
        for type in settings.fallbackInstanceTypes where type.wholeMatch(of: /[a-z][a-z0-9-]*\.[a-z0-9]+/) == nil {
            throw SettingsError(
                "FLOTILLA_INSTANCE_TYPES: '\(type.prefix(40))' is not an EC2 instance type like m5.xlarge")
        }
        if let range = value("FLOTILLA_WORKER_CIDR") {
            guard CIDR(range) != nil else {
                throw SettingsError("FLOTILLA_WORKER_CIDR must be an IPv4 CIDR block like 198.51.100.0/24")
            }
            settings.workerCIDR = range
        }
        if let user = value("FLOTILLA_SSH_USER") { settings.sshUser = user }
        if let port = value("FLOTILLA_SSH_PORT") {
            guard let number = Int(port), (1...65535).contains(number) else {
                throw SettingsError("FLOTILLA_SSH_PORT must be a port number from 1 to 65535")
            }
            settings.sshPort = number
        }
        if let mode = value("FLOTILLA_SSH_ADDRESS") {
            guard let parsed = ClusterSpec.SSHAddressMode(rawValue: mode) else {
                throw SettingsError("FLOTILLA_SSH_ADDRESS must be public or private")
            }
            settings.sshAddress = parsed
        }
        if let tokens = value("FLOTILLA_METADATA_TOKENS") {
            switch tokens {
            case "image": settings.metadataTokens = nil
            case "required": settings.metadataTokens = .required
            default: throw SettingsError("FLOTILLA_METADATA_TOKENS must be image or required")
            }
        }
        if let path = value("FLOTILLA_INSTALL_SETTINGS") {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SettingsError("cannot read FLOTILLA_INSTALL_SETTINGS file \(path)")
            }
            do {
                settings.install = try JSONDecoder().decode(InstallSettings.self, from: data)
            } catch {
                throw SettingsError(
                    "FLOTILLA_INSTALL_SETTINGS file \(path) is not valid install settings JSON: \(error)")
            }
        }
        if let directory = value("FLOTILLA_SSH_DIR") { settings.sshDirectory = URL(fileURLWithPath: directory) }
        if let deployment = value("FLOTILLA_DEPLOYMENT") {
            guard deployment.wholeMatch(of: /[A-Za-z0-9._-]{1,64}/) != nil else {
                throw SettingsError("FLOTILLA_DEPLOYMENT must be 1 to 64 letters, digits, dots, dashes or underscores")
            }
            settings.deployment = deployment
        }
        return settings
    }

    /// Refuses a region where no image is known and none is configured: clusters there
    /// would fail only when a worker got to them.
    package func requireImage() throws {
        guard self.ami != nil || ClusterSpec.defaultAMIs[self.region] != nil else {
            throw SettingsError(
                """
                no default image is known for \(self.region) \
                (known: \(ClusterSpec.defaultAMIs.keys.sorted().joined(separator: ", "))): \
                set FLOTILLA_AMI to an image of that region
                """)
        }
    }

    /// The provisioner spec for a stored cluster request, in the cluster's recorded region
    /// (this worker's for a cluster not provisioned yet).
    package func spec(for cluster: ClusterRecord) throws -> ClusterSpec {
        let request = try JSONDecoder().decode(ClusterRequest.self, from: Data(cluster.request.utf8))
        var spec = self.spec(id: cluster.id, request: request, owner: cluster.owner)
        spec.region = cluster.region ?? self.region
        spec.deployment = cluster.deployment ?? self.deployment
        // Before it is ready a cluster has no expiry yet: its resources are tagged with an upper
        // bound (its lifetime from now, plus an hour to provision); the janitor writes the real
        // one once it is ready (ExpiryTagPass).
        let lifetime = Double(cluster.lifetime.components.seconds)
        spec.expiresAt = cluster.expiresAt ?? (lifetime > 0 ? Date().addingTimeInterval(lifetime + 3600) : nil)
        return spec
    }

    /// The provisioner spec for a request, in this worker's region.
    package func spec(id: String, request: ClusterRequest, owner: String) -> ClusterSpec {
        var spec = ClusterSpec(clusterID: id, installerURL: request.installerURL)
        spec.masters = request.masters
        spec.privateAgents = request.agents
        spec.publicAgents = request.publicAgents
        spec.instanceType = request.instanceType
        spec.adminLocation = request.adminLocation
        spec.dcosConfigOverrides = request.dcosConfig
        spec.genconfFiles = request.genconfFiles.map {
            .init(path: $0.path, contents: Data(base64Encoded: $0.contentsBase64) ?? Data())
        }
        spec.masterFiles = (request.masterFiles ?? []).map {
            .init(path: $0.path, contents: Data(base64Encoded: $0.contentsBase64) ?? Data())
        }
        spec.nodeSetupScript = request.nodeSetup
        spec.provisionOnly = request.provisionOnly ?? false
        spec.region = self.region
        spec.deployment = self.deployment
        spec.ami = self.ami
        spec.subnetIDs = self.subnetIDs
        spec.fallbackInstanceTypes = self.fallbackInstanceTypes
        spec.workerCIDR = self.workerCIDR
        spec.sshUser = self.sshUser
        spec.sshPort = self.sshPort
        spec.sshAddress = self.sshAddress
        spec.metadataTokens = self.metadataTokens
        spec.owner = owner
        spec.customTags = (request.tags ?? [:]).sorted { $0.key < $1.key }.map { EC2Tag(key: $0.key, value: $0.value) }
        for (name, role) in [("master", ClusterRole.master), ("agent", .privateAgent), ("publicAgent", .publicAgent)] {
            if let tags = request.roleTags?[name], !tags.isEmpty {
                spec.roleTags[role] = tags.sorted { $0.key < $1.key }.map { EC2Tag(key: $0.key, value: $0.value) }
            }
        }
        spec.install = self.install
        return spec
    }
}

package struct SettingsError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
