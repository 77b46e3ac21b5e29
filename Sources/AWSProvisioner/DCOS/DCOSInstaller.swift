import Foundation
import Logging
import Timing

/// Drives the DC/OS "advanced" installer over a ``RemoteShell``: the bootstrap node
/// (download, genconf, serve), then preflight, deploy and postflight on every cluster
/// node with the node's real role, in parallel with a cap and a limit per command.
struct DCOSInstaller: Sendable {
    enum Phase: String, Sendable {
        case preflight, deploy, postflight

        /// The detached step each phase runs as on every node.
        var step: RemoteStep.Name {
            switch self {
            case .preflight: .preflight
            case .deploy: .deploy
            case .postflight: .postflight
            }
        }
    }

    let spec: ClusterSpec
    let shell: any RemoteShell
    let observer: any ProvisionObserver
    let logger: Logger
    /// This install run's number (``ProvisionState/installRuns``): the steps it starts on
    /// the nodes carry it.
    var run: Int = 1

    func target(_ node: ProvisionState.Node) -> SSHTarget {
        let host = self.spec.sshAddress == .publicIP ? (node.publicIP ?? node.privateIP) : node.privateIP
        return SSHTarget(host: host, port: self.spec.sshPort, user: self.spec.sshUser)
    }

    /// The name failed nodes' logs are stored under: the node's public IP where it has one.
    func logName(_ phase: String, _ node: ProvisionState.Node) -> String {
        "\(phase)-\(node.publicIP ?? node.privateIP)-journald.log"
    }

    /// The bootstrap node's working folder, one per cluster.
    var workDirectory: String { "flotilla-bootstrap-\(self.spec.clusterID)" }

    func bootstrapURL(_ bootstrap: ProvisionState.Node) -> String {
        let port = self.spec.install.bootstrapPort
        return port == 80 ? "http://\(bootstrap.privateIP)" : "http://\(bootstrap.privateIP):\(port)"
    }

    func configYAML(_ state: ProvisionState) -> String {
        let nodes = state.clusterNodes
        func ips(_ role: ClusterRole) -> [String] { nodes.filter { $0.role == role }.map(\.privateIP) }
        let resolver = state.vpcCIDR.flatMap(CIDR.init)?.host(2) ?? "169.254.169.253"
        return DCOSConfig.render(
            clusterName: self.spec.resourceName, bootstrapURL: self.bootstrapURL(state.bootstrapNode!),
            masters: ips(.master), agents: ips(.privateAgent), publicAgents: ips(.publicAgent),
            resolvers: [resolver], overrides: self.spec.dcosConfigOverrides)
    }

    /// The genconf step, a script run on the bootstrap node with its standard input closed:
    /// download the installer (retried for `downloadRetrySeconds`; a download that stalls
    /// below 10 kB/s for a minute is aborted and retried), write genconf and run `--genconf`.
    /// Never `bash -s`: the real `dcos_generate_config.sh` ends in `docker run -i`, which
    /// would swallow every line after it from standard input.
    func genconfScript(_ state: ProvisionState) -> String {
        let install = self.spec.install
        var files: [(String, Data, Bool)] = [
            ("genconf/config.yaml", Data(self.configYAML(state).utf8), false),
            ("genconf/ip-detect", Data(NodeScripts.ipDetect(endpoint: install.metadataEndpoint).utf8), true),
            (
                "genconf/ip-detect-public", Data(NodeScripts.ipDetectPublic(endpoint: install.metadataEndpoint).utf8),
                true
            ),
            (
                "genconf/fault-domain-detect",
                Data(NodeScripts.faultDomainDetect(endpoint: install.metadataEndpoint).utf8), true
            ),
        ]
        files += self.spec.genconfFiles.map { ("genconf/\($0.path)", $0.contents, false) }
        let writes = files.map { path, contents, executable in
            "mkdir -p \"$(dirname \(shellQuote(path)))\"\n"
                + "printf '%s' \(shellQuote(contents.base64EncodedString())) | base64 -d > \(shellQuote(path))\n"
                + (executable ? "chmod 755 \(shellQuote(path))\n" : "")
        }.joined()
        return """
            set -eu
            mkdir -p "$HOME/\(self.workDirectory)/genconf"
            cd "$HOME/\(self.workDirectory)"
            deadline=$(( $(date +%s) + \(Int(install.downloadRetrySeconds)) ))
            until curl -fLsS --retry 3 --retry-delay 2 --connect-timeout 10 --speed-limit 10240 --speed-time 60 \
            -o dcos_generate_config.sh.part \(shellQuote(self.spec.installerURL)); do
              if [ "$(date +%s)" -ge "$deadline" ]; then
                echo "flotilla: could not download the installer for \(Int(install.downloadRetrySeconds)) s" >&2
                exit 1
              fi
              sleep 5
            done
            mv dcos_generate_config.sh.part dcos_generate_config.sh
            \(writes)
            sudo bash dcos_generate_config.sh --genconf
            """
    }

    /// The serve step on the bootstrap node: start serving `genconf/serve/` (the serve
    /// command) and check that `dcos_install.sh` is served (the step fails when it is not).
    func serveScript(_ state: ProvisionState) -> String {
        let install = self.spec.install
        let bootstrap = state.bootstrapNode!
        let serve = install.serveCommand
            .replacingOccurrences(of: "{port}", with: String(install.bootstrapPort))
            .replacingOccurrences(of: "{ip}", with: bootstrap.privateIP)
        let served = self.bootstrapURL(bootstrap) + "/dcos_install.sh"
        return """
            set -eu
            cd "$HOME/\(self.workDirectory)"
            \(serve)
            tries=0
            until curl -fsS -o /dev/null \(shellQuote(served)); do
              tries=$((tries + 1))
              if [ "$tries" -ge 300 ]; then echo "flotilla: \(served) is not served" >&2; exit 1; fi
              sleep 0.1
            done
            """
    }

    /// Genconf, then serve, on the bootstrap node: each a detached step (``RemoteStep``).
    func bootstrap(_ state: ProvisionState) async throws {
        guard let bootstrap = state.bootstrapNode else {
            throw ProvisionError(.conflict, "cluster \(state.clusterID) has no bootstrap node recorded")
        }
        for (name, script, message) in [
            (
                RemoteStep.Name.genconf, self.genconfScript(state),
                "downloading the installer and generating the configuration"
            ),
            (.serve, self.serveScript(state), "serving the configuration to the nodes"),
        ] {
            try await self.observer.beforeMutation("bootstrap node \(name.rawValue)")
            await self.observer.progress("bootstrap: \(message)")
            let result = try await self.steps.run(self.step(name, on: bootstrap), script: script)
            guard result.succeeded else {
                let log = await self.collectLog(node: bootstrap, phase: name.rawValue, result: result)
                throw ProvisionError(
                    .installFailed,
                    "the bootstrap node \(bootstrap.privateIP) failed at \(name.rawValue): \(result.summary)",
                    logs: [self.logName("bootstrap", bootstrap): log])
            }
        }
    }

    /// The runner of this install's detached steps.
    var steps: RemoteStepRunner {
        RemoteStepRunner(shell: self.shell, target: { self.target($0) }, observer: self.observer)
    }

    func step(_ name: RemoteStep.Name, on node: ProvisionState.Node, asRoot: Bool = false) -> RemoteStep {
        RemoteStep(
            name: name, clusterID: self.spec.clusterID, node: node, run: self.run, asRoot: asRoot,
            timeoutSeconds: Int(self.spec.install.commandTimeoutSeconds))
    }

    func command(for phase: Phase, node: ProvisionState.Node, bootstrap: ProvisionState.Node) -> String {
        let fetch = """
            d=$(mktemp -d) && curl -fsS --retry 5 --retry-delay 1 --speed-limit 10240 --speed-time 60 \
            -o "$d/dcos_install.sh" \(shellQuote(self.bootstrapURL(bootstrap) + "/dcos_install.sh"))
            """
        switch phase {
        case .preflight:
            return "\(fetch) && sudo bash \"$d/dcos_install.sh\" --preflight-only \(node.role.rawValue) </dev/null; "
                + "rc=$?; rm -rf \"$d\"; exit $rc"
        case .deploy:
            // Once per node: it runs as a detached step, which a resumed worker waits for or
            // collects, and never starts twice (the installer refuses a node that holds any
            // part of an install).
            return "\(fetch) && sudo bash \"$d/dcos_install.sh\" \(node.role.rawValue) </dev/null; "
                + "rc=$?; rm -rf \"$d\"; exit $rc"
        case .postflight:
            // Its own deadline, shorter than the SSH command's, so the step ends with what
            // was still failing rather than a bare timeout.
            let runner = shellQuote(self.spec.install.checkRunnerPath)
            let interval = self.spec.install.postflightIntervalSeconds
            return """
                deadline=$(( $(date +%s) + \(Int(self.spec.install.postflightTimeoutSeconds)) ))
                until out=$(sudo \(runner) check node-poststart 2>&1) && out=$(sudo \(runner) check cluster 2>&1); do
                  if [ "$(date +%s)" -ge "$deadline" ]; then
                    echo "flotilla: postflight checks did not pass in \
                \(Int(self.spec.install.postflightTimeoutSeconds)) s; the last check said:" >&2
                    printf '%s\\n' "$out" | tail -n 40 >&2
                    exit 1
                  fi
                  sleep \(interval)
                done
                """
        }
    }

    /// The prerequisites step on every node, the bootstrap node included: detects what DC/OS
    /// needs and installs only what is missing (``NodePreparation``).
    func prepareNodes(_ state: ProvisionState) async throws {
        try await self.observer.beforeMutation("prerequisites on \(state.nodes.count) nodes")
        let started = ContinuousClock.now
        let steps = self.steps
        let results = await forEachConcurrently(state.nodes, limit: self.spec.install.parallelism) { node in
            try await steps.run(
                self.step(.prerequisites, on: node, asRoot: true),
                script: NodePreparation.script(
                    dockerVersion: self.spec.install.dockerVersion, timeServer: self.spec.install.timeServer))
        }
        let outcomes = try await self.requireSuccess(
            "prerequisites", on: state.nodes, results, logName: { "prerequisites-\($0.publicIP ?? $0.privateIP).log" })
        var changed: [String] = []
        for (node, outcome) in zip(state.nodes, outcomes) where !outcome.stdout.contains("nothing missing") {
            changed.append(
                "\(node.privateIP): " + outcome.stdout.split(separator: "\n").map(String.init).joined(separator: "; "))
        }
        let seconds = (ContinuousClock.now - started).seconds
        await self.observer.progress(
            changed.isEmpty
                ? "prerequisites: nothing missing on \(state.nodes.count) nodes (\(String(format: "%.2f", seconds)) s)"
                : "prerequisites installed in \(String(format: "%.1f", seconds)) s: \(changed.joined(separator: " | "))"
        )
    }

    /// After the prerequisites, on every cluster node as root: the master files (masters
    /// only), then the node-setup script, from a file (never fed on standard input). Each
    /// node's output is kept as `node-setup-<ip>.log`, also when it succeeds.
    func setupNodes(_ state: ProvisionState) async throws {
        guard !self.spec.masterFiles.isEmpty || self.spec.nodeSetupScript != nil else { return }
        let nodes = state.clusterNodes
        try await self.observer.beforeMutation("node setup on \(nodes.count) nodes")
        await self.observer.progress("node setup: \(nodes.count) nodes")
        let steps = self.steps
        let results = await forEachConcurrently(nodes, limit: self.spec.install.parallelism) { node in
            try await steps.run(self.step(.nodeSetup, on: node, asRoot: true), script: self.nodeSetupScript(node))
        }
        var kept: [String: String] = [:]
        for (node, result) in zip(nodes, results) {
            if case .success(let outcome) = result {
                kept["node-setup-\(node.publicIP ?? node.privateIP).log"] = outcome.stdout + outcome.stderr
            }
        }
        if !kept.isEmpty { try await self.observer.keep(logs: kept) }
        _ = try await self.requireSuccess(
            "node setup", on: nodes, results, logName: { "node-setup-\($0.publicIP ?? $0.privateIP).log" })
    }

    func nodeSetupScript(_ node: ProvisionState.Node) -> String {
        // Folders as the system makes them (0755: DC/OS's own users walk them); each file is
        // created 0600 (the umask is the file's only).
        var script = "set -eu\n"
        if node.role == .master {
            for file in self.spec.masterFiles {
                script +=
                    "mkdir -p \"$(dirname \(shellQuote(file.path)))\"\n"
                    + "(umask 077; printf '%s' \(shellQuote(file.contents.base64EncodedString())) | base64 -d "
                    + "> \(shellQuote(file.path)))\n"
                    + "chmod 600 \(shellQuote(file.path))\n"
                    + "echo \"flotilla: wrote \(file.path) (\(file.contents.count) bytes)\"\n"
            }
        }
        if let setup = self.spec.nodeSetupScript {
            script += """
                f=$(mktemp)
                printf '%s' \(shellQuote(Data(setup.utf8).base64EncodedString())) | base64 -d > "$f"
                rc=0; bash "$f" </dev/null || rc=$?
                rm -f "$f"
                exit $rc

                """
        }
        return script
    }

    /// Runs `phase` on every cluster node; throws with the failed nodes' logs.
    func run(_ phase: Phase, on state: ProvisionState) async throws {
        guard let bootstrap = state.bootstrapNode else {
            throw ProvisionError(.conflict, "cluster \(state.clusterID) has no bootstrap node recorded")
        }
        let nodes = state.clusterNodes
        try await self.observer.beforeMutation("\(phase.rawValue) on \(nodes.count) nodes")
        await self.observer.progress("\(phase.rawValue): \(nodes.count) nodes")
        let steps = self.steps
        let results = await forEachConcurrently(nodes, limit: self.spec.install.parallelism) { node in
            try await steps.run(
                self.step(phase.step, on: node), script: self.command(for: phase, node: node, bootstrap: bootstrap))
        }
        _ = try await self.requireSuccess(
            phase.rawValue, on: nodes, results, logName: { self.logName(phase.rawValue, $0) })
    }

    /// Each node's outcome of `step`; when it failed anywhere, throws `installFailed` naming
    /// every node it failed on, with their logs (collected under `logName`).
    func requireSuccess(
        _ step: String, on nodes: [ProvisionState.Node], _ results: [Result<RemoteResult, any Error>],
        logName: (ProvisionState.Node) -> String
    ) async throws -> [RemoteResult] {
        let outcomes = results.map(RemoteResult.init)
        var logs: [String: String] = [:]
        var failed: [String] = []
        for (node, outcome) in zip(nodes, outcomes) where !outcome.succeeded {
            failed.append("\(node.privateIP) (\(node.role)): \(outcome.summary)")
            logs[logName(node)] = await self.collectLog(node: node, phase: step, result: outcome)
        }
        guard failed.isEmpty else {
            throw ProvisionError(
                .installFailed,
                "\(step) failed on \(failed.count) of \(nodes.count) nodes: " + failed.joined(separator: "; "),
                logs: logs)
        }
        return outcomes
    }

    /// The node's journal (`journalctl -xe`) and what the failed command printed.
    func collectLog(node: ProvisionState.Node, phase: String, result: RemoteResult) async -> String {
        let outcome = result.summary.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        var log = "# flotilla: \(phase) on \(node.privateIP) (\(node.role), \(node.instanceID)) failed: \(outcome)\n"
        log += "# --- command stdout ---\n\(result.stdout)\n# --- command stderr ---\n\(result.stderr)\n"
        let journal = try? await self.shell.run(
            "sudo journalctl -xe --no-pager -n 20000 2>&1 || true", on: self.target(node),
            input: nil, timeout: .seconds(120))
        log += "# --- journalctl -xe ---\n"
        if let journal, journal.exitStatus != nil {
            log += journal.stdout + journal.stderr
        } else {
            log += "(the journal could not be read: \(journal?.summary ?? "ssh failed"))\n"
        }
        return log
    }
}
