import AWSProvisioner
import Foundation
import Synchronization
import Testing

/// The loopback test cluster that `./scripts/test` starts (scripts/lib/nodes.sh): an
/// OpenSSH server on every 127.0.1.x address that accepts the key of the emulator instance
/// holding that private IP, and the stub DC/OS installer over HTTP.
///
/// All clusters of a test run launch into one subnet (127.0.1.0/24 in a VPC 127.0.0.0/16)
/// so their instances get distinct addresses: the emulator hands out .4, .5, … in order
/// per subnet.
struct LoopbackCluster: Sendable {
    let stack: TestStack
    let sshPort: Int
    let sshUser: String
    let installerURL: String
    let stubState: URL
    let checkRunner: String
    let ipDetect: String
    let subnetID: String

    private static let network = NetworkHolder()

    static func current() async throws -> LoopbackCluster {
        let stack = try TestStack.current()
        let environment = ProcessInfo.processInfo.environment
        func value(_ name: String) throws -> String {
            guard let value = environment[name], !value.isEmpty else { throw TestStack.Missing(variable: name) }
            return value
        }
        guard let port = Int(try value("FLOTILLA_TEST_SSH_PORT")) else { throw TestStack.Missing(variable: "FLOTILLA_TEST_SSH_PORT") }
        let ipDetect = try String(contentsOfFile: try value("FLOTILLA_TEST_IP_DETECT"), encoding: .utf8)
        return LoopbackCluster(
            stack: stack, sshPort: port, sshUser: try value("FLOTILLA_TEST_SSH_USER"),
            installerURL: try value("FLOTILLA_TEST_INSTALLER_URL"),
            stubState: URL(fileURLWithPath: try value("FLOTILLA_TEST_STUB_STATE")),
            checkRunner: try value("FLOTILLA_TEST_CHECK_RUNNER"), ipDetect: ipDetect,
            subnetID: try await Self.network.subnetID(stack))
    }

    /// A spec for `masters`/`agents`/`public agents` on the loopback nodes.
    func spec(masters: Int = 1, agents: Int = 1, publicAgents: Int = 1) -> ClusterSpec {
        var spec = ClusterSpec(clusterID: "t" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(10)),
                               installerURL: self.installerURL)
        spec.masters = masters
        spec.privateAgents = agents
        spec.publicAgents = publicAgents
        spec.region = self.stack.region
        spec.ami = "ami-0123456789abcdef0"
        spec.subnetID = self.subnetID
        spec.sshAddress = .privateIP
        spec.sshPort = self.sshPort
        spec.sshUser = self.sshUser
        spec.owner = "tests"
        spec.install = Self.install(checkRunner: self.checkRunner, ipDetect: self.ipDetect)
        return spec
    }

    /// Install settings for loopback nodes: python's http.server instead of nginx in Docker,
    /// the stub's check runner, and an ip-detect that tells the nodes apart by SSH address.
    static func install(checkRunner: String, ipDetect: String) -> InstallSettings {
        var install = InstallSettings()
        install.bootstrapPort = 8080
        // A server left on this address by an earlier cluster (the emulator reuses the
        // addresses of terminated instances) is stopped first. start-stop-daemon detaches
        // cleanly; a server started with `setsid nohup … &` kept the SSH session open here.
        // Its pid file is per cluster: matching by executable would see other nodes' servers.
        install.serveCommand = "pkill -f 'http.server --bind {ip} {port}' || true; while pgrep -f 'http.server --bind {ip} {port}' >/dev/null; do sleep 0.1; done; rm -f \"$PWD/serve.pid\"; start-stop-daemon --start --background --make-pidfile --pidfile \"$PWD/serve.pid\" --chdir \"$PWD/genconf/serve\" --startas /usr/bin/env -- python3 -m http.server --bind {ip} {port}"
        install.checkRunnerPath = checkRunner
        install.ipDetect = ipDetect
        install.ipDetectPublic = ipDetect
        install.faultDomainDetect = "#!/bin/sh\necho '{\"fault_domain\":{\"region\":{\"name\":\"loopback\"},\"zone\":{\"name\":\"loopback-1\"}}}'\n"
        install.pollIntervalSeconds = 0.2
        install.postflightIntervalSeconds = 0.2
        install.downloadRetrySeconds = 30
        install.sshTimeoutSeconds = 60
        install.instanceTimeoutSeconds = 60
        install.postflightTimeoutSeconds = 60
        install.commandTimeoutSeconds = 120
        return install
    }

    func provisioner(credentials: CredentialsCache? = nil) -> ClusterProvisioner {
        let cache = credentials ?? self.stack.cache()
        return ClusterProvisioner(ec2: self.stack.ec2(credentials: cache), credentials: cache, logger: TestStack.logger,
                                  makeShell: ClusterProvisioner.openSSHShells(baseDirectory: URL(fileURLWithPath: "/tmp/flotilla-ssh")))
    }

    /// What terminating the bootstrap instance does on EC2: its HTTP server stops and its
    /// files are gone. (Every loopback node is this machine.) Call it before teardown: once
    /// the instances are terminated the emulator may give their addresses to another cluster.
    func reap(_ state: ProvisionState?) {
        guard let state else { return }
        if let bootstrap = state.bootstrapNode {
            _ = try? runLocal("/usr/bin/pkill", ["-f", "http.server --bind \(bootstrap.privateIP) "])
        }
        let home = FileManager.default.homeDirectoryForCurrentUser
        try? FileManager.default.removeItem(at: home.appendingPathComponent("flotilla-bootstrap-\(state.clusterID)"))
    }

    /// Lines of the stub's per-node calls.log: `PHASE ARG OUTCOME CLUSTER`.
    func calls(on ip: String) -> [String] {
        let text = (try? String(contentsOf: self.stubState.appendingPathComponent("nodes/\(ip)/calls.log"), encoding: .utf8)) ?? ""
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

    /// The config.yaml the bootstrap node's genconf received.
    func genconfConfig(clusterName: String) -> String? {
        try? String(contentsOf: self.stubState.appendingPathComponent("genconf/\(clusterName)/config.yaml"), encoding: .utf8)
    }

    func genconfFile(clusterName: String, _ path: String) -> Data? {
        FileManager.default.contents(atPath: self.stubState.appendingPathComponent("genconf/\(clusterName)/files/\(path)").path)
    }

    /// Live (not terminated) instances tagged with the cluster.
    func liveInstances(_ spec: ClusterSpec) async throws -> [EC2Instance] {
        try await self.stack.ec2().describeInstances(filters: [.tag("cluster", spec.clusterID)]).filter { $0.state != .terminated }
    }
}

private actor NetworkHolder {
    private var task: Task<String, any Error>?

    func subnetID(_ stack: TestStack) async throws -> String {
        if let task { return try await task.value }
        let task = Task<String, any Error> {
            let ec2 = stack.ec2()
            // One network per stack, shared by every process that uses it (tests, workers):
            // the emulator numbers addresses per subnet, so one subnet keeps them distinct.
            let tag = EC2Filter.tag("Name", "flotilla-loopback")
            if let vpc = try await ec2.describeVpcs(filters: [tag]).first,
               let subnet = try await ec2.describeSubnets(filters: [EC2Filter(name: "vpc-id", values: [vpc.vpcID])]).first {
                return subnet.subnetID
            }
            let vpc = try await ec2.createVpc(cidrBlock: "127.0.0.0/16", tags: [EC2Tag(key: "Name", value: "flotilla-loopback")])
            return try await ec2.createSubnet(vpcID: vpc.vpcID, cidrBlock: "127.0.1.0/24").subnetID
        }
        self.task = task
        return try await task.value
    }
}

/// Records checkpoints; can stop provisioning at the `interruptAt`-th one, either after
/// storing it (a crash right after the checkpoint) or without storing it (a crash right
/// after the side effect, before its checkpoint was written).
final class RecordingObserver: ProvisionObserver, Sendable {
    struct Interrupted: Error {}
    private struct State {
        var count = 0
        var saved: ProvisionState?
        var labels: [String] = []
        var mutations = 0
        var progress: [String] = []
    }
    private let state = Mutex(State())
    let interruptAt: Int?
    let storeInterrupted: Bool
    let onCheckpoint: @Sendable (ProvisionState, CheckpointMoment, String) throws -> Void

    init(interruptAt: Int? = nil, storeInterrupted: Bool = true,
         onCheckpoint: @escaping @Sendable (ProvisionState, CheckpointMoment, String) throws -> Void = { _, _, _ in }) {
        self.interruptAt = interruptAt
        self.storeInterrupted = storeInterrupted
        self.onCheckpoint = onCheckpoint
    }

    var saved: ProvisionState? { self.state.withLock { $0.saved } }
    var count: Int { self.state.withLock { $0.count } }
    var labels: [String] { self.state.withLock { $0.labels } }
    var mutations: Int { self.state.withLock { $0.mutations } }

    func checkpoint(_ checkpoint: ProvisionState, moment: CheckpointMoment, step: String) async throws {
        try self.onCheckpoint(checkpoint, moment, step)
        let interrupt = self.state.withLock { state -> Bool in
            state.count += 1
            state.labels.append("\(moment) \(step)")
            let interrupt = state.count == self.interruptAt
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
}

@discardableResult
func runLocal(_ executable: String, _ arguments: [String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}
