import AWSProvisioner
import Foundation
import Synchronization
import TestSupport
import Testing

/// The loopback test cluster that `./scripts/test` starts (scripts/lib/nodes.sh): an
/// OpenSSH server on every 127.0.1.x address that accepts the key of the emulator instance
/// holding that private IP, and the stub DC/OS installer over HTTP.
///
/// All clusters of a test run launch into the one subnet scripts/lib/loopback.sh made
/// (127.0.1.0/24 in a VPC 127.0.0.0/16), so their instances get distinct addresses: the
/// emulator hands out .4, .5, … in order per subnet.
struct LoopbackCluster: Sendable {
    let stack: TestStack
    let sshPort: Int
    let sshUser: String
    let installerURL: String
    let stubState: URL
    /// The install settings for loopback nodes that scripts/lib/loopback.sh writes (the same
    /// file the worker processes of the end-to-end tests read).
    let install: InstallSettings
    let subnetID: String
    /// Subnets in other zones of the loopback VPC (no SSH node answers there; zone d does not
    /// offer m4.large), and the emulator's images with root /dev/sda1 and /dev/xvda.
    let subnetB: String
    let subnetD: String
    let image: String
    let xvdaImage: String
    /// A region of the emulator without a default VPC.
    let noVPCRegion: String

    static func current() throws -> LoopbackCluster {
        let stack = try TestStack.current()
        let environment = ProcessInfo.processInfo.environment
        func value(_ name: String) throws -> String {
            guard let value = environment[name], !value.isEmpty else { throw TestStack.Missing(variable: name) }
            return value
        }
        guard let port = Int(try value("FLOTILLA_TEST_SSH_PORT")) else {
            throw TestStack.Missing(variable: "FLOTILLA_TEST_SSH_PORT")
        }
        let settingsFile = try value("FLOTILLA_TEST_INSTALL_SETTINGS")
        guard let settings = FileManager.default.contents(atPath: settingsFile) else {
            throw TestStack.Missing(variable: "FLOTILLA_TEST_INSTALL_SETTINGS (a readable file)")
        }
        return LoopbackCluster(
            stack: stack, sshPort: port, sshUser: try value("FLOTILLA_TEST_SSH_USER"),
            installerURL: try value("FLOTILLA_TEST_INSTALLER_URL"),
            stubState: URL(fileURLWithPath: try value("FLOTILLA_TEST_STUB_STATE")),
            install: try JSONDecoder().decode(InstallSettings.self, from: settings),
            subnetID: try value("FLOTILLA_TEST_SUBNET_ID"), subnetB: try value("FLOTILLA_TEST_SUBNET_B_ID"),
            subnetD: try value("FLOTILLA_TEST_SUBNET_D_ID"), image: try value("FLOTILLA_TEST_AMI"),
            xvdaImage: try value("FLOTILLA_TEST_AMI_XVDA"), noVPCRegion: try value("FLOTILLA_TEST_NO_VPC_REGION"))
    }

    /// A spec for `masters`/`agents`/`public agents` on the loopback nodes.
    func spec(masters: Int = 1, agents: Int = 1, publicAgents: Int = 1) -> ClusterSpec {
        var spec = ClusterSpec(
            clusterID: "t" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(10)),
            installerURL: self.installerURL)
        spec.masters = masters
        spec.privateAgents = agents
        spec.publicAgents = publicAgents
        spec.region = self.stack.region
        spec.ami = self.image
        spec.subnetIDs = [self.subnetID]
        spec.sshAddress = .privateIP
        spec.sshPort = self.sshPort
        spec.sshUser = self.sshUser
        spec.owner = "tests"
        spec.install = self.install
        return spec
    }

    /// A provisioner of the loopback cluster, talking to the emulator (or `endpoint`, a fault
    /// proxy in front of it) in `region` (the stack's by default).
    func provisioner(
        credentials: CredentialsCache? = nil, endpoint: URL? = nil, region: String? = nil,
        capacity: CapacityMemory = CapacityMemory()
    ) -> ClusterProvisioner {
        let cache = credentials ?? self.stack.cache()
        // A capacity memory of its own: a zone one test makes fail is not skipped by the others.
        return ClusterProvisioner(
            ec2: self.stack.ec2(region: region, endpoint: endpoint, credentials: cache), credentials: cache,
            logger: TestStack.logger, capacity: capacity,
            makeShell: ClusterProvisioner.openSSHShells(baseDirectory: URL(fileURLWithPath: "/tmp/flotilla-ssh")))
    }

    /// What terminating the bootstrap instance does on EC2: its containers (the serve
    /// command's nginx, modelled by an HTTP server) stop and its files are gone. (Every
    /// loopback node is this machine.) Call it before teardown: once the instances are
    /// terminated the emulator may give their addresses to another cluster. The servers are
    /// the ones the node model records; each is ended and awaited (never found by name).
    func reap(_ state: ProvisionState?) async {
        guard let state else { return }
        let home = FileManager.default.homeDirectoryForCurrentUser
        for node in state.nodes {
            let model = self.stubState.appendingPathComponent("nodes/\(node.privateIP)/system.json")
            guard let data = try? Data(contentsOf: model),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let docker = object["docker"] as? [String: Any],
                let containers = docker["containers"] as? [String: [String: Any]]
            else { continue }
            for pid in containers.values.compactMap({ ($0["pid"] as? NSNumber)?.int32Value }) where pid > 1 {
                guard
                    let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
                    command.contains("http.server")
                else { continue }
                kill(pid, SIGTERM)
                let deadline = ContinuousClock.now.advanced(by: .seconds(10))
                while kill(pid, 0) == 0, ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(50))
                }
                if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
            }
        }
        try? FileManager.default.removeItem(at: home.appendingPathComponent("flotilla-bootstrap-\(state.clusterID)"))
        try? FileManager.default.removeItem(at: home.appendingPathComponent("flotilla-steps/\(state.clusterID)"))
    }

    /// Lines of the stub's per-node calls.log: `PHASE ARG OUTCOME CLUSTER`.
    func calls(on ip: String) -> [String] {
        let text =
            (try? String(contentsOf: self.stubState.appendingPathComponent("nodes/\(ip)/calls.log"), encoding: .utf8))
            ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    /// Makes the stub fail the next `phase` call on `ip` (once).
    func injectFailure(_ phase: String, on ip: String) throws {
        let file = self.stubState.appendingPathComponent("fail")
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\(phase) \(ip) 1\n".utf8))
    }

    /// What the emulator says of `image` beyond moto's own answer (``ImageCatalogue``).
    func describeImage(
        _ image: String, imdsSupport: String? = nil, enaSupport: Bool? = nil, cloudInit: String? = nil,
        marketplace: (productCode: String, subscribed: Bool)? = nil
    ) throws {
        try ImageCatalogue.describe(
            image, imdsSupport: imdsSupport, enaSupport: enaSupport, cloudInit: cloudInit, marketplace: marketplace)
    }

    /// The stub's hold file: stops a step in its middle on a node or a cluster.
    var holds: StubHolds { StubHolds(stubState: self.stubState) }

    /// The config.yaml the bootstrap node's genconf received.
    func genconfConfig(clusterName: String) -> String? {
        try? String(
            contentsOf: self.stubState.appendingPathComponent("genconf/\(clusterName)/config.yaml"), encoding: .utf8)
    }

    func genconfFile(clusterName: String, _ path: String) -> Data? {
        FileManager.default.contents(
            atPath: self.stubState.appendingPathComponent("genconf/\(clusterName)/files/\(path)").path)
    }

    /// Makes the node at `ip` a plain CentOS image in the stub's node model (no Docker, no
    /// ipset/unzip/xz, no group nogroup, SELinux enforcing), as a fresh non-pre-baked AMI.
    func makePlainImage(_ ip: String) async throws {
        try await self.stub(["plain-node", ip])
    }

    /// Makes the Docker of the node at `ip` that version in the stub's node model (its package's).
    func setDockerVersion(_ ip: String, _ version: String) async throws {
        try await self.stub(["docker-version", ip, version])
    }

    /// Sets the `server` lines of the node's /etc/chrony.conf in the stub's node model.
    func setTimeServers(_ ip: String, _ hosts: [String]) async throws {
        try await self.stub(["chrony-servers", ip] + hosts)
    }

    /// The packages the stub's node model of the node at `ip` holds (name → version).
    func packages(of ip: String) throws -> [String: String] {
        let file = self.stubState.appendingPathComponent("nodes/\(ip)/system.json")
        let model = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any]
        return model?["packages"] as? [String: String] ?? [:]
    }

    private func stub(_ arguments: [String]) async throws {
        let stub = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
                "scripts/fixtures/dcos-stub/stub.py")
        let status = try await runLocal(
            "/usr/bin/env", ["FLOTILLA_TEST_STUB_STATE=\(self.stubState.path)", "python3", stub.path] + arguments)
        guard status == 0 else {
            throw TestStack.Missing(variable: "stub.py \(arguments.joined(separator: " ")) (exit \(status))")
        }
    }

    /// Live (not terminated) instances tagged with the cluster.
    func liveInstances(_ spec: ClusterSpec) async throws -> [EC2Instance] {
        try await self.stack.ec2().describeInstances(filters: [.tag("cluster", spec.clusterID)]).filter {
            $0.state != .terminated
        }
    }
}

/// Records checkpoints; can stop provisioning at the `interruptAt`-th one, or at the first
/// whose label (`"before STEP"`, `"after STEP"`) `interruptIf` accepts, either after storing it
/// (a crash right after the checkpoint) or without storing it (a crash right after the side
/// effect, before its checkpoint was written).
final class RecordingObserver: ProvisionObserver, Sendable {
    struct Interrupted: Error {}
    private struct State {
        var count = 0
        var saved: ProvisionState?
        var labels: [String] = []
        var mutations = 0
        var progress: [String] = []
        var timings: [String] = []
    }
    private let started = ContinuousClock.now
    private let state = Mutex(State())
    let interruptAt: Int?
    /// Also interrupt at the first checkpoint whose step starts with this.
    let interruptOn: String?
    let interruptIf: (@Sendable (String) -> Bool)?
    let storeInterrupted: Bool
    let onCheckpoint: @Sendable (ProvisionState, CheckpointMoment, String) async throws -> Void

    init(
        interruptAt: Int? = nil, interruptOn: String? = nil, storeInterrupted: Bool = true,
        onCheckpoint: @escaping @Sendable (ProvisionState, CheckpointMoment, String) async throws -> Void = { _, _, _ in
        },
        interruptIf: (@Sendable (String) -> Bool)? = nil
    ) {
        self.interruptAt = interruptAt
        self.interruptOn = interruptOn
        self.interruptIf = interruptIf
        self.storeInterrupted = storeInterrupted
        self.onCheckpoint = onCheckpoint
    }

    var saved: ProvisionState? { self.state.withLock { $0.saved } }
    var count: Int { self.state.withLock { $0.count } }
    var labels: [String] { self.state.withLock { $0.labels } }
    var mutations: Int { self.state.withLock { $0.mutations } }

    func checkpoint(_ checkpoint: ProvisionState, moment: CheckpointMoment, step: String) async throws {
        try await self.onCheckpoint(checkpoint, moment, step)
        let interrupt = self.state.withLock { state -> Bool in
            state.count += 1
            let label = "\(moment) \(step)"
            state.labels.append(label)
            let elapsed = ContinuousClock.now - self.started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            state.timings.append("\(moment) \(step) at \(String(format: "%.2f", seconds)) s")
            let interrupt =
                state.count == self.interruptAt || self.interruptOn.map { step.hasPrefix($0) } == true
                || self.interruptIf?(label) == true
            if !interrupt || self.storeInterrupted { state.saved = checkpoint }
            return interrupt
        }
        if interrupt { throw Interrupted() }
    }

    func beforeMutation(_ description: String) async throws {
        self.state.withLock { $0.mutations += 1 }
    }

    func progress(_ message: String) async {
        self.state.withLock { $0.progress.append(message) }
    }

    var progress: [String] { self.state.withLock { $0.progress } }
    /// Every checkpoint with the time since this observer was made.
    var timings: [String] { self.state.withLock { $0.timings } }
}

/// Runs a local command to its end, off the cooperative pool; its exit status.
@discardableResult
func runLocal(_ executable: String, _ arguments: [String]) async throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    return try await process.runToCompletion().status
}
