import ArgumentParser
import CommandOptions
import Foundation
import Queue

/// A node as an agent names it: `master_0`, `agent_1`, `public_agent_0`, `bootstrap`.
struct NamedNode: Sendable {
    var name: String
    var node: NodeRecord

    var isMaster: Bool { self.node.role == "master" }
}

/// How the client reaches the nodes: `public` (a node's public IP where it has one, else its
/// private IP) or `private` (from inside the cluster's network).
enum AddressMode: String, ExpressibleByArgument, Sendable {
    case `public`, `private`
}

/// The options of every command that reaches a cluster's nodes over SSH.
struct NodeAccessOptions: ParsableArguments {
    @Option(
        help: """
            public or private: the node address to use (public: a node's public IP where it has one). \
            Env: FLOTILLA_SSH_ADDRESS.
            """)
    var address: AddressMode?

    var mode: AddressMode {
        self.address ?? ProcessInfo.processInfo.environment["FLOTILLA_SSH_ADDRESS"].flatMap(AddressMode.init) ?? .public
    }

    func validate() throws {
        if let raw = ProcessInfo.processInfo.environment["FLOTILLA_SSH_ADDRESS"], AddressMode(rawValue: raw) == nil {
            throw ValidationError("FLOTILLA_SSH_ADDRESS must be public or private, not \(raw)")
        }
    }
}

/// The cluster id argument: `client exec ID …`, or FLOTILLA_CLUSTER_ID (set by `client run`).
func clusterID(_ given: String?) throws -> String {
    guard let id = given ?? ProcessInfo.processInfo.environment["FLOTILLA_CLUSTER_ID"], !id.isEmpty else {
        throw ValidationError("give the cluster id (or set FLOTILLA_CLUSTER_ID, as `client run` does)")
    }
    return id
}

/// A cluster's nodes, named, and what `ssh` needs to reach them: a private folder with the
/// cluster's key and a `known_hosts` holding the host keys the worker pinned while it built the
/// cluster, so every connection checks the node's identity (`StrictHostKeyChecking=yes`).
///
/// The user's own `~/.ssh/config` still applies (a jump host, a proxy); what this sets comes
/// first on the command line and wins.
final class NodeAccess: Sendable {
    let cluster: ClusterRecord
    let nodes: [NamedNode]
    let mode: AddressMode
    let folder: String
    private let keyPath: String
    private let knownHostsPath: String

    /// Reads the cluster, its nodes and its key (the lease holder's), and writes the folder.
    /// Refuses a cluster whose nodes are gone or not yet there.
    static func open(store: ClusterAPI, id: String, token: String, mode: AddressMode) async throws -> NodeAccess {
        let cluster = try await requireCluster(store, id)
        if cluster.state == .destroyed || cluster.state == .tearingDown || cluster.state == .teardownFailed {
            throw QueueError(.conflict, "cluster \(id) is \(cluster.state): its nodes are gone or going")
        }
        let records = try await store.nodes(clusterID: id)
        guard !records.isEmpty, cluster.sshUser != nil else {
            throw QueueError(
                .conflict,
                "cluster \(id) is \(cluster.state) and has no nodes published yet; wait for it (`client wait \(id)`)")
        }
        let key = try await Self.privateKey(store: store, id: id, token: token)
        return try NodeAccess(cluster: cluster, records: records, key: key, mode: mode)
    }

    /// The key `client run` wrote for this cluster when there is one (no database read, no
    /// `key-read` event per command), else the lease holder's read.
    private static func privateKey(store: ClusterAPI, id: String, token: String) async throws -> String {
        let environment = ProcessInfo.processInfo.environment
        if environment["FLOTILLA_CLUSTER_ID"] == id, let path = environment["FLOTILLA_SSH_KEY"],
            let data = FileManager.default.contents(atPath: path), let key = String(data: data, encoding: .utf8),
            !key.isEmpty
        {
            return key
        }
        return try await store.privateKey(clusterID: id, leaseToken: token)
    }

    init(cluster: ClusterRecord, records: [NodeRecord], key: String, mode: AddressMode) throws {
        self.cluster = cluster
        self.mode = mode
        self.nodes = Self.named(records)
        self.folder = try makePrivateFolder(prefix: "flotilla-ssh")
        self.keyPath = self.folder + "/key"
        self.knownHostsPath = self.folder + "/known_hosts"
        try writeSecret(key, to: self.keyPath, what: "the key")
        let port = cluster.sshPort ?? 22
        let lines = self.nodes.compactMap { named -> String? in
            guard let key = named.node.hostKey else { return nil }
            let hosts = [named.node.privateIP, named.node.publicIP].compactMap { $0 }.map {
                port == 22 ? $0 : "[\($0)]:\(port)"
            }
            return "\(hosts.joined(separator: ",")) \(key)"
        }
        try writeSecret(lines.map { $0 + "\n" }.joined(), to: self.knownHostsPath, what: "known hosts")
    }

    deinit { try? FileManager.default.removeItem(atPath: self.folder) }

    /// Names by role, each role's nodes in address order: `master_0`, `agent_0`,
    /// `public_agent_0`, and `bootstrap` (the node the worker installed from).
    static func named(_ records: [NodeRecord]) -> [NamedNode] {
        let prefixes = [("master", "master"), ("slave", "agent"), ("slave_public", "public_agent")]
        var result: [NamedNode] = []
        for (role, prefix) in prefixes {
            let sorted = records.filter { $0.role == role }.sorted { addressOrder($0.privateIP, $1.privateIP) }
            for (index, node) in sorted.enumerated() {
                result.append(NamedNode(name: "\(prefix)_\(index)", node: node))
            }
        }
        for node in records where node.role == "bootstrap" { result.append(NamedNode(name: "bootstrap", node: node)) }
        return result
    }

    var masters: [NamedNode] { self.nodes.filter(\.isMaster) }

    /// The node a reference names: `master_0`, `agent_N`, `public_agent_N`, `bootstrap`, an IP
    /// (public or private) or an instance id.
    func resolve(_ reference: String) throws -> NamedNode {
        if let node = self.nodes.first(where: {
            $0.name == reference || $0.node.instanceID == reference || $0.node.privateIP == reference
                || $0.node.publicIP == reference
        }) {
            return node
        }
        let names = self.nodes.map(\.name).joined(separator: ", ")
        throw QueueError(
            .invalidInput,
            "cluster \(self.cluster.id) has no node \(reference); its nodes are \(names) "
                + "(an IP or an instance id works too; see `client status \(self.cluster.id)`)")
    }

    func address(of node: NamedNode) -> String {
        self.mode == .public ? (node.node.publicIP ?? node.node.privateIP) : node.node.privateIP
    }

    /// `ssh` and its options for `node`, up to (not including) the remote command.
    /// `tty`: a terminal on the node (`-tt`), else none (`-T`).
    func ssh(_ node: NamedNode, tty: Bool = false) -> [String] {
        [
            "ssh", tty ? "-tt" : "-T",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityFile=\(self.keyPath)",
            "-o", "UserKnownHostsFile=\(self.knownHostsPath)",
            "-o", "GlobalKnownHostsFile=/dev/null",
            // A node the worker pinned no key for (none should be) is learned on first use.
            "-o", "StrictHostKeyChecking=\(node.node.hostKey == nil ? "accept-new" : "yes")",
            "-o", "ConnectTimeout=15",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
            "-p", String(self.cluster.sshPort ?? 22),
            "-l", self.cluster.sshUser ?? "centos",
            self.address(of: node), "--",
        ]
    }

    /// Runs `script` on `node` through `sh -c` and returns its exit status (255: SSH itself
    /// failed), with `streams` as the child's.
    func run(_ script: String, on node: NamedNode, streams: ChildStreams = ChildStreams()) async throws -> Int32 {
        let child = try spawnChild(
            self.ssh(node) + [Shell.command(["sh", "-c", script])], environment: ProcessInfo.processInfo.environment,
            streams: streams)
        return await withTaskCancellationHandler {
            await child.wait()
        } onCancel: {
            child.signal(SIGTERM)
        }
    }

    /// Runs `script` on `node` and returns what it printed (standard output; standard error
    /// joins it) and its status.
    func capture(_ script: String, on node: NamedNode) async throws -> (status: Int32, output: String) {
        let file = try TemporaryFile()
        let status = try await self.run(
            script, on: node, streams: ChildStreams(input: nil, output: file.descriptor, error: file.descriptor))
        return (status, file.contents())
    }

    /// The test environment dcos-e2e's `run_with_test_environment` set: every role's private
    /// IPs, the master the command runs on as DNS address, and the node counts.
    func testEnvironment(on node: NamedNode) -> [(String, String)] {
        func ips(_ role: String) -> String {
            self.nodes.filter { $0.node.role == role }.map(\.node.privateIP).joined(separator: ",")
        }
        let agents = self.nodes.filter { $0.node.role == "slave" || $0.node.role == "slave_public" }.count
        return [
            ("MASTER_HOSTS", ips("master")), ("PUBLIC_MASTER_HOSTS", ips("master")), ("SLAVE_HOSTS", ips("slave")),
            ("PUBLIC_SLAVE_HOSTS", ips("slave_public")), ("DCOS_DNS_ADDRESS", "http://\(node.node.privateIP)"),
            ("DCOS_NUM_MASTERS", String(self.masters.count)), ("DCOS_NUM_AGENTS", String(agents)),
        ]
    }
}

/// Runs `body` until it ends or SIGINT/SIGTERM arrives. A signal cancels it: the ssh and tar it
/// runs are stopped, the cluster's key folder is removed as it unwinds, and the command ends
/// with 128 + the signal's number, as a shell expects.
func endingOnSignal<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    do {
        return try await untilSignalled(body)
    } catch let signalled as Signalled {
        throw ExitCode(128 + signalled.signal)
    }
}

/// Where DC/OS keeps what `--test-env` and `client sync` use on a node.
enum DCOSPaths {
    static let environment = "/opt/mesosphere/environment.export"
    static let testDirectory = "/opt/mesosphere/active/dcos-integration-test"
    static let bootstrapLib = "/opt/mesosphere/active/bootstrap/lib"
    static let versionFile = "/opt/mesosphere/etc/dcos-version.json"
}

/// POSIX shell quoting.
enum Shell {
    /// `text` as one word for `sh`: single-quoted unless it is plainly safe.
    static func quote(_ text: String) -> String {
        // No `=`: a first word like FOO=1 would be an assignment to the shell, not a command.
        if !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./:,@%+".contains($0)) }) {
            return text
        }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func command(_ words: [String]) -> String { words.map(quote).joined(separator: " ") }
}

/// A folder only this user can read.
func makePrivateFolder(prefix: String) throws -> String {
    var template = Array(
        FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix).XXXXXX").path.utf8CString)
    guard let made = mkdtemp(&template) else {
        throw QueueError(.invalidInput, "cannot create a private temporary folder: \(String(cString: strerror(errno)))")
    }
    return String(cString: made)
}

/// An unlinked temporary file a child writes into; read back with ``contents()``.
final class TemporaryFile: Sendable {
    let descriptor: Int32

    init() throws {
        var template = Array(
            FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-out.XXXXXX").path.utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else {
            throw QueueError(.invalidInput, "cannot create a temporary file: \(String(cString: strerror(errno)))")
        }
        unlink(&template)
        self.descriptor = fd
    }

    deinit { close(self.descriptor) }

    func contents() -> String {
        lseek(self.descriptor, 0, SEEK_SET)
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(self.descriptor, &buffer, buffer.count)
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Orders dotted IPv4 addresses by their numbers (text order puts 10.0.0.10 before 10.0.0.9).
func addressOrder(_ a: String, _ b: String) -> Bool {
    let x = a.split(separator: ".").compactMap { Int($0) }
    let y = b.split(separator: ".").compactMap { Int($0) }
    return x.count == 4 && y.count == 4 ? x.lexicographicallyPrecedes(y) : a < b
}
