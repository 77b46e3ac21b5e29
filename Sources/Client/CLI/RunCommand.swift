import ArgumentParser
import CommandOptions
import Foundation
import Queue
import Synchronization

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command against a cluster of its own, and always give the cluster back.",
        discussion: """
            Acquires a cluster (from a warm pool when one matches, else a new one), writes its
            key, runs COMMAND with the cluster in its environment, keeps the lease alive while
            COMMAND runs, releases the cluster when COMMAND ends, and exits with COMMAND's status.

            COMMAND's environment adds:
              FLOTILLA_CLUSTER_ID    the cluster id
              FLOTILLA_LEASE_TOKEN   its lease token (`client extend`, `client logs` read it)
              FLOTILLA_MASTER        the first master's address
              FLOTILLA_MASTERS, FLOTILLA_AGENTS, FLOTILLA_PUBLIC_AGENTS
                                     addresses by role, comma-separated (public IP where there is one)
              FLOTILLA_MASTERS_PRIVATE, FLOTILLA_AGENTS_PRIVATE, FLOTILLA_PUBLIC_AGENTS_PRIVATE
                                     private IPs by role
              FLOTILLA_SSH_KEY       the private key file (mode 0600; removed afterwards)
              FLOTILLA_SSH_USER, FLOTILLA_SSH_PORT

            While COMMAND runs the client beats every --heartbeat-timeout/4 and extends the
            cluster when less than 35 minutes are left, by --lifetime, as far as the policy's
            maximum total lifetime allows (expiry warnings are printed if it cannot). The cluster
            is released when COMMAND ends, fails, or this client gets SIGINT or SIGTERM (which
            are passed on to COMMAND first; it has 10 s to end). If this client dies without a
            word (SIGKILL, a lost machine), the janitor releases the cluster once no beat came
            for --heartbeat-timeout: within that plus the janitor's interval (5 s by default).

            \(ClusterShapeOptions.splitHelp)

            Examples:
              client run --nodes 3 -- ./integration-tests.sh
              client run --nodes 1 --lifetime 1h -- sh -c 'ssh -i "$FLOTILLA_SSH_KEY" \
            "$FLOTILLA_SSH_USER@$FLOTILLA_MASTER" true'
              client run --nodes 3 --collect-logs-on-failure ./evidence -- \
                sh -c 'client sync "$FLOTILLA_CLUSTER_ID" ~/dcos && client exec --test-env -- pytest -x'

            Exit codes: COMMAND's status; 1 when no cluster could be had; 64 bad usage; 127 COMMAND
            not found; 130 interrupted (SIGINT); 143 terminated (SIGTERM).
            """
    )

    @OptionGroup var shape: ClusterShapeOptions
    @Option(help: "How long the cluster lives once ready; extended while COMMAND runs (e.g. 90m, 2h).") var lifetime:
        String = "2h"
    @Option(help: "Free text shown with the cluster.") var label: String?
    @Option(help: "A retried request with the same id returns the same cluster.") var requestID: String?
    @Option(help: "Give up waiting for the cluster after this long (it is then released).") var timeout: String = "60m"
    @Option(help: "auto, wait or never: how a matching warm pool is used (see `client request --help`).") var pool:
        PoolModeOption = .auto
    @Option(help: "Release the cluster when this client sent no heartbeat for this long (2s to 1h).")
    var heartbeatTimeout: String = "60s"
    @Option(
        help: "Where to write the SSH private key (mode 0600). Default: a private temporary file, removed afterwards.")
    var keyOut: String?
    @Option(
        help: """
            When COMMAND exits non-zero, gather every node's journal, a DC/OS diagnostics bundle and the install \
            logs into this folder before the cluster is released (as `client logs --collect`).
            """)
    var collectLogsOnFailure: String?
    @Argument(parsing: .postTerminator, help: "The command to run, after --.") var command: [String] = []
    @Option(help: "Build the cluster in this region (`client images` lists the regions the fleet builds in).")
    var region: String?
    @OptionGroup var byName: PoolNameOptions
    @OptionGroup var access: NodeAccessOptions
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard !self.command.isEmpty else {
            throw ValidationError("give the command to run after --, like: client run --nodes 3 -- ./tests.sh")
        }
        guard let beat = ClusterRequest.parseDuration(self.heartbeatTimeout), beat >= .seconds(2),
            beat <= .seconds(3600)
        else {
            throw ValidationError("--heartbeat-timeout must be a duration from 2s to 1h")
        }
        guard ClusterRequest.parseDuration(self.timeout) != nil else {
            throw ValidationError("--timeout must be a duration like 45m")
        }
        if let keyOut { try checkWritable(keyOut, option: "--key-out") }
        if let folder = self.collectLogsOnFailure { try checkFolder(folder, option: "--collect-logs-on-failure") }
    }

    func run() async throws {
        guard let lifetime = ClusterRequest.parseDuration(self.lifetime), lifetime > .zero else {
            throw ValidationError("--lifetime must be a duration like 90m or 2h")
        }
        let request =
            try self.byName.requestJSON(shape: self.shape, region: self.region, lifetime: lifetime)
        let timeout = ClusterRequest.parseDuration(self.timeout)!
        let beat = ClusterRequest.parseDuration(self.heartbeatTimeout)!
        let new = NewCluster(
            requestID: self.requestID ?? "run-" + UUID().uuidString.lowercased(), label: self.label,
            request: request, abandonAfter: timeout + .seconds(15), poolMode: self.pool.mode,
            poolName: self.byName.poolName)
        let explain = self.byName.explainPool
        let (command, keyOut) = (self.command, self.keyOut)
        let (collectFolder, mode) = (self.collectLogsOnFailure, self.access.mode)
        let status = try await withStore(self.options) { store, _ -> Int32 in
            let made = Responsibility()
            let keyFolder = keyOut == nil ? try makePrivateFolder(prefix: "flotilla-run") : nil
            defer { if let keyFolder { try? FileManager.default.removeItem(atPath: keyFolder) } }
            let status: Int32
            do {
                status = try await untilSignalled {
                    let started = ContinuousClock.now
                    let receipt = try await store.request(new)
                    made.set(receipt.id, receipt.leaseToken)
                    let id = receipt.id
                    say("cluster \(id)\(receipt.pool.map { " from warm pool \($0)" } ?? " requested")")
                    await explainPoolMiss(
                        request: new.request, receipt: receipt, byName: new.poolName != nil, explain: explain,
                        store: store)
                    return try await withThrowingTaskGroup(of: Int32?.self) { group in
                        group.addTask {
                            await keepAlive(
                                id: id, token: receipt.leaseToken, store: store, timeout: beat, extendBy: lifetime)
                            return nil
                        }
                        defer { group.cancelAll() }
                        let cluster = try await waitForCluster(id, store: store, timeout: timeout)
                        guard cluster.state == .ready else {
                            let reason = cluster.lastError.map { ": \($0)" } ?? ""
                            throw QueueError(
                                .conflict,
                                "cluster \(id) did not become ready (it is \(cluster.state)\(reason)); "
                                    + "install logs: client logs \(id) --lease-token …")
                        }
                        let nodes = try await store.nodes(clusterID: id)
                        let keyPath = keyOut ?? keyFolder! + "/\(id).key"
                        try writeKey(
                            try await store.privateKey(clusterID: id, leaseToken: receipt.leaseToken), to: keyPath)
                        let waited = ClusterRequest.format(seconds: (ContinuousClock.now - started).seconds)
                        say("cluster \(id) ready after \(waited); running \(command.joined(separator: " "))")
                        let environment = clusterEnvironment(
                            cluster, nodes: nodes, token: receipt.leaseToken, keyPath: keyPath)
                        let status = try await runChild(command, environment: environment)
                        // Not after a Ctrl-C or SIGTERM: whoever sent it wants the client to end.
                        if status != 0, !Task.isCancelled, let collectFolder {
                            say("the command exited with status \(status); collecting logs into \(collectFolder)")
                            do {
                                let key = try String(contentsOfFile: keyPath, encoding: .utf8)
                                let access = try NodeAccess(cluster: cluster, records: nodes, key: key, mode: mode)
                                let logs = try await store.logs(clusterID: id, leaseToken: receipt.leaseToken)
                                var collector = LogCollector(access: access, folder: collectFolder)
                                let token = receipt.leaseToken
                                collector.keep = {
                                    try await store.keepLogs(clusterID: id, leaseToken: token, logs: $0)
                                }
                                let report = try await collector.collect(installLogs: logs)
                                say(report.text.split(separator: "\n").joined(separator: "\nclient run: "))
                            } catch {
                                say("could not collect the logs: \(givingUp(error).why)")
                            }
                        }
                        return status
                    }
                }
            } catch {
                let (code, why) = givingUp(error)
                if let (id, token) = made.current {
                    await releaseAfterGivingUp(id, token, why: why, store: store)
                } else {
                    FileHandle.standardError.write(Data("client: \(why); nothing was recorded\n".utf8))
                }
                return code
            }
            if let (id, token) = made.current {
                await releaseAfterGivingUp(id, token, why: "the command exited with status \(status)", store: store)
            }
            return status
        }
        if status != 0 { throw ExitCode(status) }
    }
}

private func say(_ message: String) {
    FileHandle.standardError.write(Data("client run: \(message)\n".utf8))
}

/// The environment COMMAND runs in: this one plus the cluster's addresses, key and user.
func clusterEnvironment(_ cluster: ClusterRecord, nodes: [NodeRecord], token: String, keyPath: String) -> [String:
    String]
{
    var environment = ProcessInfo.processInfo.environment
    func addresses(_ role: String, publicFirst: Bool) -> String {
        nodes.filter { $0.role == role }.map { publicFirst ? ($0.publicIP ?? $0.privateIP) : $0.privateIP }.joined(
            separator: ",")
    }
    environment["FLOTILLA_CLUSTER_ID"] = cluster.id
    environment["FLOTILLA_LEASE_TOKEN"] = token
    environment["FLOTILLA_MASTERS"] = addresses("master", publicFirst: true)
    environment["FLOTILLA_AGENTS"] = addresses("slave", publicFirst: true)
    environment["FLOTILLA_PUBLIC_AGENTS"] = addresses("slave_public", publicFirst: true)
    environment["FLOTILLA_MASTERS_PRIVATE"] = addresses("master", publicFirst: false)
    environment["FLOTILLA_AGENTS_PRIVATE"] = addresses("slave", publicFirst: false)
    environment["FLOTILLA_PUBLIC_AGENTS_PRIVATE"] = addresses("slave_public", publicFirst: false)
    environment["FLOTILLA_MASTER"] = environment["FLOTILLA_MASTERS"]?.split(separator: ",").first.map(String.init) ?? ""
    environment["FLOTILLA_SSH_KEY"] = keyPath
    environment["FLOTILLA_SSH_USER"] = cluster.sshUser ?? ""
    environment["FLOTILLA_SSH_PORT"] = cluster.sshPort.map(String.init) ?? "22"
    return environment
}

/// Beats until cancelled; extends the cluster when less than 35 minutes are left, and prints
/// the janitor's expiry warnings and a refused extension once each. Never throws: a beat that
/// fails is tried again at the next one.
func keepAlive(id: String, token: String, store: ClusterAPI, timeout: Duration, extendBy: Duration) async {
    let every = max(Duration.milliseconds(500), timeout / 4)
    var lastEvent: Int64 = 0
    var refused: String?
    var failing = false
    while !Task.isCancelled {
        do {
            let expiry = try await store.heartbeat(clusterID: id, leaseToken: token, timeout: timeout)
            failing = false
            if let expiry, expiry.timeIntervalSinceNow < 35 * 60, refused == nil {
                do {
                    let moved = try await store.extend(clusterID: id, leaseToken: token, by: extendBy)
                    say("extended cluster \(id) to \(moved.formatted(.iso8601))")
                } catch let error as QueueError {
                    refused = error.message
                    say("cannot extend cluster \(id): \(error.message)")
                }
            }
            for event in try await store.events(clusterID: id, after: lastEvent) {
                lastEvent = event.id
                if let warning = ExpiryWarning(event) { say("warning: \(warning.text(id: id))") }
            }
        } catch is CancellationError {
            return
        } catch {
            if !failing { say("heartbeat failed (\(givingUp(error).why)); trying again") }
            failing = true
        }
        try? await Task.sleep(for: every)
    }
}
