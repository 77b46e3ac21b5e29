import ArgumentParser
import CommandOptions
import Foundation
import Logging
import Queue

/// Options for commands that act on one cluster as its lease holder.
struct LeaseOptions: ParsableArguments {
    @Option(help: "The lease token `client request` printed. Env: FLOTILLA_LEASE_TOKEN.")
    var leaseToken: String?

    func token() throws -> String {
        guard let token = self.leaseToken ?? ProcessInfo.processInfo.environment["FLOTILLA_LEASE_TOKEN"], !token.isEmpty
        else {
            throw ValidationError(
                "this needs the cluster's lease token: pass --lease-token or set FLOTILLA_LEASE_TOKEN")
        }
        return token
    }

    /// The token for cluster `id`: --lease-token or FLOTILLA_LEASE_TOKEN, else the file
    /// `./<id>.token` that `client request` wrote.
    func token(for id: String) throws -> String {
        if let token = self.leaseToken ?? ProcessInfo.processInfo.environment["FLOTILLA_LEASE_TOKEN"], !token.isEmpty {
            return token
        }
        if let data = FileManager.default.contents(atPath: "\(id).token"),
            let token = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
            !token.isEmpty
        {
            return token
        }
        throw ValidationError(
            "cluster \(id) needs its lease token: pass --lease-token, set FLOTILLA_LEASE_TOKEN, or keep ./\(id).token")
    }
}

/// Runs `body` with the client API, turning refusals into a message and exit status 1.
func withStore<T: Sendable>(
    _ options: ClientOptions, _ body: @Sendable (ClusterAPI, DatabaseSettings) async throws -> T
) async throws -> T {
    let logger = options.makeLogger()
    do {
        let settings = try DatabaseSettings.fromEnvironment(defaultSSLMode: .prefer)
        // Connections close when idle (agentIdleTimeout): a waiting agent holds none between looks.
        return try await settings.withClient(
            maximumConnections: 2, idleTimeout: agentIdleTimeout, connectPatience: .seconds(120), logger: logger
        ) { client in
            try await body(ClusterAPI(client: client, logger: logger), settings)
        }
    } catch let error as QueueError {
        fail(error.message)
    }
}

func requireCluster(_ store: ClusterAPI, _ id: String) async throws -> ClusterRecord {
    guard let cluster = try await store.cluster(id: id) else {
        throw QueueError(.notFound, "no cluster with id \(id) (cluster ids look like c-0123456789; see `client list`)")
    }
    return cluster
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show one cluster and its nodes.",
        discussion: """
            Shows the state, the expiry, the SSH user, the DC/OS web UI and the nodes by the
            names `client exec --node` takes. With the lease token (--lease-token,
            FLOTILLA_LEASE_TOKEN or ./<id>.token) it also reads the installed DC/OS version from
            master_0 (/opt/mesosphere/etc/dcos-version.json).

            Example:
              client status c-0123456789 --json
            """)
    @Argument(help: "The cluster id.") var id: String
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var access: NodeAccessOptions
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let json = self.options.json
        let (id, mode) = (self.id, self.access.mode)
        let token = try? self.lease.token(for: id)
        try await withStore(self.options) { store, _ in
            let cluster = try await requireCluster(store, id)
            let nodes = try await store.nodes(clusterID: id)
            let warnings =
                cluster.state == .ready ? try await store.events(clusterID: id).compactMap(ExpiryWarning.init) : []
            // Only the warning for the expiry in force: an extension made the earlier ones moot.
            let current = warnings.last.flatMap { last in
                cluster.expiresAt.map { abs($0.timeIntervalSince(last.expiresAt)) < 1 } ?? false ? last : nil
            }
            var version: String?
            if let token, cluster.state == .ready {
                version = await installedVersion(store: store, id: id, token: token, mode: mode)
            }
            if json {
                var object = ClusterOutput.json(cluster, nodes: nodes)
                object["dcos_version"] = version
                if let current {
                    object["expiry_warning"] = [
                        "minutes": current.minutes, "at": ISO8601DateFormatter().string(from: current.at),
                    ]
                }
                printJSON(object)
            } else {
                var text = ClusterOutput.text(cluster, nodes: nodes)
                if let version {
                    text = text.replacingOccurrences(of: "\nweb UI", with: "\nDC/OS        \(version)\nweb UI")
                }
                print(text)
                if let current { print("\nwarning: \(current.text(id: id))") }
            }
        }
    }
}

/// The DC/OS version installed on master_0, read over SSH; nil when it cannot be read.
func installedVersion(store: ClusterAPI, id: String, token: String, mode: AddressMode) async -> String? {
    guard let access = try? await NodeAccess.open(store: store, id: id, token: token, mode: mode),
        let master = access.masters.first,
        let answer = try? await access.capture("cat \(DCOSPaths.versionFile)", on: master), answer.status == 0,
        let object = try? JSONSerialization.jsonObject(with: Data(answer.output.utf8)) as? [String: Any]
    else { return nil }
    return object["version"] as? String
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List clusters, newest first.",
        discussion: "Examples:\n  client list --mine\n  client list --state ready --json")
    @Flag(help: "Only clusters whose owner is you (a client login sees only its own anyway; for fleet logins).")
    var mine = false
    @Option(help: "Only clusters in this state: requested, provisioning, ready, failed, tearing_down, destroyed.")
    var state: String?
    @OptionGroup var options: ClientOptions

    func validate() throws {
        if let state, ClusterState(rawValue: state) == nil {
            throw ValidationError("--state must be one of: \(ClusterState.all.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let (json, mine, state) = (self.options.json, self.mine, self.state.flatMap(ClusterState.init(rawValue:)))
        try await withStore(self.options) { store, settings in
            let clusters = try await store.clusters(owner: mine ? settings.username : nil, state: state)
            if json {
                printJSON(["clusters": clusters.map { ClusterOutput.json($0, nodes: []) }])
                return
            }
            print(
                ["ID", "STATE", "NODES", "OWNER", "EXPIRES IN"].map {
                    $0.padding(toLength: 15, withPad: " ", startingAt: 0)
                }.joined())
            for cluster in clusters {
                let expires =
                    cluster.state == .ready
                    ? cluster.expiresAt.map { ClusterRequest.format(seconds: max(0, $0.timeIntervalSinceNow)) } ?? "-"
                    : "-"
                let cells = [
                    cluster.id, cluster.state.rawValue, "\(cluster.masters + cluster.agents + cluster.publicAgents)",
                    cluster.owner, expires,
                ]
                print(cells.map { $0.padding(toLength: max(15, $0.count + 1), withPad: " ", startingAt: 0) }.joined())
            }
        }
    }
}

struct ExtendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extend", abstract: "Move a ready cluster's expiry later.",
        discussion: "Example:\n  client extend c-0123456789 --by 1h --lease-token $TOKEN")
    @Argument(help: "The cluster id.") var id: String
    @Option(help: "How much longer: 30m, 1h, 1h30m.") var by: String
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard let amount = ClusterRequest.parseDuration(self.by), amount > .zero else {
            throw ValidationError("--by must be a positive duration like 30m, 1h or 1h30m")
        }
    }

    func run() async throws {
        let (id, token, amount, json) = (
            self.id, try self.lease.token(), ClusterRequest.parseDuration(self.by)!, self.options.json
        )
        try await withStore(self.options) { store, _ in
            let expires = try await store.extend(clusterID: id, leaseToken: token, by: amount)
            printAnswer(
                json: json, ["id": id, "expires_at": ClusterOutput.iso(expires)],
                text: "cluster \(id) now expires at \(ClusterOutput.iso(expires))")
        }
    }
}

struct ReleaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release", abstract: "Tear clusters down now.",
        discussion: """
            Each cluster's lease token comes from --lease-token or FLOTILLA_LEASE_TOKEN (the
            same for all), else from ./<id>.token (as `client request` wrote it). Every id is
            tried; exit status 1 when any could not be released.

            Examples:
              client release c-0123456789 --lease-token $TOKEN
              client release c-0123456789 c-9876543210
            """)
    @Argument(help: "The cluster ids.") var ids: [String]
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard !self.ids.isEmpty else { throw ValidationError("give at least one cluster id") }
        for id in self.ids { _ = try self.lease.token(for: id) }
    }

    func run() async throws {
        let tokens = try self.ids.map { ($0, try self.lease.token(for: $0)) }
        let json = self.options.json
        let failures = try await withStore(self.options) { store, _ -> Int in
            var results: [[String: Any]] = []
            var failures = 0
            for (id, token) in tokens {
                do {
                    try await store.release(clusterID: id, leaseToken: token)
                    results.append(["id": id, "released": true])
                    if !json { print("cluster \(id) released; the janitor tears it down now") }
                } catch let error as QueueError {
                    failures += 1
                    results.append(["id": id, "released": false, "error": error.message])
                    FileHandle.standardError.write(Data("client: \(id): \(error.message)\n".utf8))
                }
            }
            if json {
                let many: [String: Any] = ["clusters": results]
                printJSON(results.count == 1 ? results[0] : many)
            }
            return failures
        }
        if failures > 0 { throw ExitCode(1) }
    }
}

struct InstallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install DC/OS on a cluster of bare nodes (`client request --provision-only`), and wait.",
        discussion: """
            The worker installs on the nodes the cluster has (genconf on its bootstrap node, then
            preflight, deploy and postflight), as the request's own install would have; the
            cluster is provisioning meanwhile and ready at the end, with the expiry it had. A
            failed install fails the cluster (its logs: client logs ID --out DIR).

            Example:
              client request --nodes 3 --provision-only --json > bare.json
              client install "$(jq -r .id bare.json)" --installer-url https://…/dcos_generate_config.sh
            """)
    @Argument(help: "The cluster id.") var id: String
    @Option(help: "URL of dcos_generate_config.sh. Default: $FLOTILLA_INSTALLER_URL.") var installerURL: String?
    @Option(help: "Give up waiting after this long (the install goes on).") var timeout: String = "60m"
    @Flag(help: "Return once the install is queued.") var noWait = false
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard ClusterRequest.parseDuration(self.timeout) != nil else {
            throw ValidationError("--timeout must be a duration like 45m")
        }
        guard !(self.installerURL ?? ProcessInfo.processInfo.environment["FLOTILLA_INSTALLER_URL"] ?? "").isEmpty else {
            throw ValidationError("no installer URL: pass --installer-url or set FLOTILLA_INSTALLER_URL")
        }
    }

    func run() async throws {
        let (id, token, json, noWait) = (self.id, try self.lease.token(for: self.id), self.options.json, self.noWait)
        let url = self.installerURL ?? ProcessInfo.processInfo.environment["FLOTILLA_INSTALLER_URL"]!
        let timeout = ClusterRequest.parseDuration(self.timeout)!
        let ok = try await withStore(self.options) { store, _ -> Bool in
            try await store.install(clusterID: id, leaseToken: token, installerURL: url)
            if noWait {
                printAnswer(json: json, ["id": id, "state": "provisioning"], text: "cluster \(id): installing DC/OS")
                return true
            }
            let cluster = try await waitForCluster(id, store: store, timeout: timeout)
            let nodes = try await store.nodes(clusterID: id)
            printAnswer(
                json: json, ClusterOutput.json(cluster, nodes: nodes), text: ClusterOutput.text(cluster, nodes: nodes))
            return cluster.state == .ready
        }
        if !ok { throw ExitCode(1) }
    }
}

struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Write the cluster's SSH private key to a file (mode 0600).",
        discussion: "Example:\n  client key c-0123456789 --out ~/.ssh/c-0123456789 --lease-token $TOKEN")
    @Argument(help: "The cluster id.") var id: String
    @Option(help: "Where to write the key.") var out: String
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (id, token, out, json) = (self.id, try self.lease.token(), self.out, self.options.json)
        try await withStore(self.options) { store, _ in
            let key = try await store.privateKey(clusterID: id, leaseToken: token)
            try writeKey(key, to: out)
            printAnswer(json: json, ["id": id, "key_path": out], text: "wrote the key of \(id) to \(out)")
        }
    }
}

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Write a cluster's logs into a folder: the stored install logs, or everything.",
        discussion: """
            --out DIR writes the logs the worker stored (<phase>-<ip>-journald.log for
            the nodes of a failed phase, node-setup-<ip>.log), until the cluster is
            destroyed (its lease tokens go with it).

            --collect DIR gathers, from the nodes themselves, whatever the cluster's
            state while it has nodes: every node's journal (<node>-<ip>-journal.log,
            read with journalctl as root), a DC/OS diagnostics bundle made on master_0
            through its diagnostics service (diagnostics-<id>.zip; none when DC/OS is
            not running there), and the stored install logs (install/). Exit status 1
            when a node's journal could not be read.

            Examples:
              client logs c-0123456789 --out ./logs --lease-token $TOKEN
              client logs c-0123456789 --collect ./evidence
            """)
    @Argument(help: "The cluster id.") var id: String
    @Option(help: "Write the stored install logs into this folder (created if missing).") var out: String?
    @Option(help: "Gather journals, a diagnostics bundle and the install logs into this folder.") var collect: String?
    @Option(help: "How long to wait for the diagnostics bundle.") var bundleTimeout: String = "10m"
    @OptionGroup var access: NodeAccessOptions
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard (self.out == nil) != (self.collect == nil) else {
            throw ValidationError("give one of --out DIR (stored install logs) or --collect DIR (from the nodes)")
        }
        guard let limit = ClusterRequest.parseDuration(self.bundleTimeout), limit > .zero else {
            throw ValidationError("--bundle-timeout must be a duration like 10m")
        }
        try checkFolder(self.out ?? self.collect!, option: self.out == nil ? "--collect" : "--out")
    }

    func run() async throws {
        let (id, json, token, mode) = (self.id, self.options.json, try self.lease.token(), self.access.mode)
        let (out, collect, limit) = (self.out, self.collect, ClusterRequest.parseDuration(self.bundleTimeout)!)
        let options = self.options
        let complete = try await endingOnSignal {
            try await withStore(options) { store, _ -> Bool in
                let logs = try await store.logs(clusterID: id, leaseToken: token)
                if let collect {
                    let access = try await NodeAccess.open(store: store, id: id, token: token, mode: mode)
                    var collector = LogCollector(access: access, folder: collect, bundleTimeout: limit)
                    collector.keep = { try await store.keepLogs(clusterID: id, leaseToken: token, logs: $0) }
                    let report = try await collector.collect(installLogs: logs)
                    var object: [String: Any] = ["id": id, "files": report.files, "missing_journals": report.failures]
                    object["bundle_problem"] = report.bundleProblem
                    if case .success(let count) = report.kept { object["kept_with_cluster"] = count }
                    printAnswer(json: json, object, text: report.text)
                    return report.failures.isEmpty
                }
                let out = out!
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                for log in logs {
                    try Data(log.contents.utf8).write(to: URL(fileURLWithPath: out).appendingPathComponent(log.name))
                }
                printAnswer(
                    json: json, ["id": id, "files": logs.map(\.name)],
                    text: logs.isEmpty
                        ? "cluster \(id) has no install logs" : logs.map { "\(out)/\($0.name)" }.joined(separator: "\n")
                )
                return true
            }
        }
        if !complete { throw ExitCode(1) }
    }
}

/// Refuses, before anything is recorded, a folder that cannot be made or written.
func checkFolder(_ path: String, option: String) throws {
    var isFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
        guard isFolder.boolValue else { throw ValidationError("\(option) \(path) is a file; give a folder") }
        guard access(path, W_OK | X_OK) == 0 else { throw ValidationError("\(option) \(path) is not writable") }
        return
    }
    var parent = URL(fileURLWithPath: path).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: parent.path) { parent = parent.deletingLastPathComponent() }
    guard access(parent.path, W_OK | X_OK) == 0 else {
        throw ValidationError("\(option) \(path): cannot make it (\(parent.path) is not writable)")
    }
}

struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait", abstract: "Wait until a cluster is ready (exit 0) or failed (exit 1).",
        discussion: "Example:\n  client wait c-0123456789 --timeout 45m")
    @Argument(help: "The cluster id.") var id: String
    @Option(help: "Give up after this long (exit 1).") var timeout: String = "60m"
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard ClusterRequest.parseDuration(self.timeout) != nil else {
            throw ValidationError("--timeout must be a duration like 45m")
        }
    }

    func run() async throws {
        let (id, json, timeout) = (self.id, self.options.json, ClusterRequest.parseDuration(self.timeout)!)
        let ok = try await withStore(self.options) { store, _ in
            _ = try await requireCluster(store, id)
            let cluster = try await waitForCluster(id, store: store, timeout: timeout)
            let nodes = try await store.nodes(clusterID: id)
            printAnswer(
                json: json, ClusterOutput.json(cluster, nodes: nodes), text: ClusterOutput.text(cluster, nodes: nodes))
            return cluster.state == .ready
        }
        if !ok { throw ExitCode(1) }
    }
}

/// Waits for the cluster to become ready or fail, showing the phase and elapsed time: one
/// updating line on a terminal, plain lines otherwise.
///
/// Each look is one short connection (the client's pool closes a connection idle for
/// ``agentIdleTimeout``), so an agent that is only waiting holds no connection between looks,
/// and a cluster change wakes nobody. How often it looks follows what it waits for
/// (``nextLook(after:state:ahead:)``): a request still queued behind others cannot be ready
/// soon, a cluster being built can.
func waitForCluster(_ id: String, store: ClusterAPI, timeout: Duration) async throws -> ClusterRecord {
    let start = ContinuousClock.now
    let terminal = isatty(STDERR_FILENO) == 1
    var lastLine = ""
    var interval = Duration.zero
    while true {
        guard let cluster = try await store.cluster(id: id) else {
            throw QueueError(.notFound, "cluster \(id) vanished")
        }
        let elapsed = ClusterRequest.format(seconds: (ContinuousClock.now - start).seconds)
        var line = "\(id): \(cluster.state)\(cluster.phase.map { " — \($0)" } ?? "") (\(elapsed))"
        var ahead: Int?
        if cluster.state == .requested || cluster.state == .provisioning,
            let info = try? await store.waitInfo(clusterID: id)
        {
            line += waitEstimate(info, age: Date().timeIntervalSince(cluster.createdAt))
            ahead = info.jobState == "queued" ? info.ahead : nil
        }
        if terminal {
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
        } else if line.split(separator: "(").first != lastLine.split(separator: "(").first {
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
        lastLine = line
        if cluster.state == .ready || cluster.state.isFinal {
            if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
            return cluster
        }
        if ContinuousClock.now - start > timeout {
            if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
            throw QueueError(
                .invalidInput,
                "timed out after \(ClusterRequest.format(seconds: timeout.seconds)) waiting for \(id) "
                    + "to be ready; it is \(cluster.state) (\(cluster.phase ?? "-"))")
        }
        interval = nextLook(after: interval, state: cluster.state, ahead: ahead)
        // A little jitter, so that agents that started together do not look together; never
        // past the timeout.
        let left = timeout - (ContinuousClock.now - start)
        try await Task.sleep(for: max(.milliseconds(100), min(interval * Double.random(in: 0.5...1.5), left)))
    }
}

/// How long a client's pooled connection stays open unused: long enough to serve one look's
/// two queries, short enough that it is closed between looks.
let agentIdleTimeout = Duration.milliseconds(50)

/// The pause before the next look. A cluster being built is looked at every 2 s. A request
/// still queued cannot be ready before it is claimed and built, so it is looked at every
/// `ahead` / 4 seconds, from 2 s (next in line) to 30 s (120 or more ahead). One whose place
/// is unknown backs off from 1 s to 10 s. The cost to the server is then about one short
/// connection per look: a few per second for hundreds of queued agents, plus one every 2 s
/// per cluster being built (bounded by the fleet's worker slots, not by the agents).
func nextLook(after previous: Duration, state: ClusterState, ahead: Int?) -> Duration {
    if state == .provisioning { return .seconds(2) }
    if let ahead { return .seconds(min(30, max(2, Double(ahead) / 4))) }
    if previous == .zero { return .seconds(1) }
    return min(previous * 2, .seconds(10))
}

func writeKey(_ key: String, to path: String) throws {
    try writeSecret(key, to: path, what: "the key")
}

/// Writes `text` to a new file at `path` that only this user can read: created with mode
/// 0600 (never readable by others, not even for a moment), refusing to follow a link.
func writeSecret(_ text: String, to path: String, what: String) throws {
    try? FileManager.default.removeItem(atPath: path)
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
        throw QueueError(.invalidInput, "cannot write \(what) to \(path): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else {
            throw QueueError(.invalidInput, "cannot write \(what) to \(path): \(String(cString: strerror(errno)))")
        }
        written += n
    }
}

/// "; 2 requests ahead; recent clusters were ready ~14m after their request (median of 20), ~9m left".
func waitEstimate(_ info: ClusterAPI.WaitInfo, age: Double) -> String {
    var text = ""
    if info.jobState == "queued" {
        text += info.ahead == 0 ? "; next in line" : "; \(info.ahead) request\(info.ahead == 1 ? "" : "s") ahead"
    }
    if let median = info.medianSeconds, info.sample > 0 {
        text +=
            "; recent clusters were ready ~\(ClusterRequest.format(seconds: median)) after their request "
            + "(median of \(info.sample))"
        let left = median - age
        text += left > 0 ? ", ~\(ClusterRequest.format(seconds: left)) left" : ", this one is taking longer"
    }
    return text
}

/// An `expiry-warning` event: the janitor's notice 30 or 10 minutes before expiry.
struct ExpiryWarning {
    var minutes: Int
    var expiresAt: Date
    var at: Date

    init?(_ event: ClusterAPI.Event) {
        guard event.kind == "expiry-warning",
            let object = try? JSONSerialization.jsonObject(with: Data(event.detail.utf8)) as? [String: Any],
            let minutes = object["minutes"] as? Int, let epoch = object["expires_epoch"] as? Double
        else { return nil }
        (self.minutes, self.expiresAt, self.at) = (minutes, Date(timeIntervalSince1970: epoch), event.at)
    }

    func text(id: String) -> String {
        let left = ClusterRequest.format(seconds: max(0, self.expiresAt.timeIntervalSinceNow))
        return "cluster \(id) expires in \(left) (the \(self.minutes)-minute warning); "
            + "extend it with `client extend \(id) --by 1h`"
    }
}
