import AWSProvisioner
import Foundation
import Queue

/// How this worker deployment reaches AWS and the nodes, from the environment:
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `AWS_REGION` (or the AWS profile) | the region clusters are built in | us-west-2 |
/// | `FLOTILLA_AMI` | the image for every node | the known CentOS 7 image of the region |
/// | `FLOTILLA_SUBNET_ID` | the subnet to launch into | the default VPC |
/// | `FLOTILLA_SSH_USER` | login user on the nodes | centos |
/// | `FLOTILLA_SSH_PORT` | SSH port on the nodes | 22 |
/// | `FLOTILLA_SSH_ADDRESS` | `public` or `private`: the address used for SSH | public |
/// | `FLOTILLA_INSTALL_SETTINGS` | a JSON file overriding install settings (serve command, ports, timeouts) | none |
/// | `FLOTILLA_SSH_DIR` | where per-cluster SSH folders go (short path) | /tmp/flotilla-ssh |
struct ClusterSettings: Sendable {
    var region: String
    var ami: String?
    var subnetID: String?
    var sshUser = "centos"
    var sshPort = 22
    var sshAddress = ClusterSpec.SSHAddressMode.publicIP
    var install = InstallSettings()
    var sshDirectory = URL(fileURLWithPath: "/tmp/flotilla-ssh")

    static func fromEnvironment(region: String, _ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ClusterSettings {
        var settings = ClusterSettings(region: region)
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        settings.ami = value("FLOTILLA_AMI")
        settings.subnetID = value("FLOTILLA_SUBNET_ID")
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
        if let path = value("FLOTILLA_INSTALL_SETTINGS") {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SettingsError("cannot read FLOTILLA_INSTALL_SETTINGS file \(path)")
            }
            do {
                settings.install = try JSONDecoder().decode(InstallSettings.self, from: data)
            } catch {
                throw SettingsError("FLOTILLA_INSTALL_SETTINGS file \(path) is not valid install settings JSON: \(error)")
            }
        }
        if let directory = value("FLOTILLA_SSH_DIR") { settings.sshDirectory = URL(fileURLWithPath: directory) }
        return settings
    }

    /// The provisioner spec for a stored cluster request.
    func spec(for cluster: ClusterRecord) throws -> ClusterSpec {
        let request = try JSONDecoder().decode(ClusterRequest.self, from: Data(cluster.request.utf8))
        var spec = ClusterSpec(clusterID: cluster.id, installerURL: request.installerURL)
        spec.masters = request.masters
        spec.privateAgents = request.agents
        spec.publicAgents = request.publicAgents
        spec.instanceType = request.instanceType
        spec.adminLocation = request.adminLocation
        spec.dcosConfigOverrides = request.dcosConfig
        spec.genconfFiles = request.genconfFiles.map { .init(path: $0.path, contents: Data(base64Encoded: $0.contentsBase64) ?? Data()) }
        spec.region = self.region
        spec.ami = self.ami
        spec.subnetID = self.subnetID
        spec.sshUser = self.sshUser
        spec.sshPort = self.sshPort
        spec.sshAddress = self.sshAddress
        spec.owner = cluster.owner
        spec.expiresAt = cluster.expiresAt
        spec.install = self.install
        return spec
    }
}

struct SettingsError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
