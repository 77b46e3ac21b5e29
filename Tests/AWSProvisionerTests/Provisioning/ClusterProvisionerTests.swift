import AWSProvisioner
import Foundation
import Synchronization
import TestSupport
import Testing

@Suite("Provisioning on the loopback cluster", .timeLimit(.minutes(10)))
struct ClusterProvisionerTests {
    /// Provisions, checks the installer's records, tears down, checks nothing remains.
    func provisionAndCheck(masters: Int, agents: Int, publicAgents: Int) async throws {
        let cluster = try LoopbackCluster.current()
        var spec = cluster.spec(masters: masters, agents: agents, publicAgents: publicAgents)
        let clusterName = "renamed-\(spec.clusterID)"
        // As a user's file often starts: a comment and a document start, which the merge drops
        // (the stub installer reads config.yaml with PyYAML, which refuses a second document).
        spec.dcosConfigOverrides = "# our settings\n---\ntelemetry_enabled: false\ncluster_name: \(clusterName)\n"
        spec.genconfFiles = [
            ClusterSpec.GenconfFile(path: "extra/hello.txt", contents: Data("hello from flotilla\n".utf8))
        ]
        let provisioner = cluster.provisioner()
        let observer = RecordingObserver()
        let started = ContinuousClock.now
        let state = try await provisioner.provision(spec, observer: observer)
        let summary = try #require(observer.progress.last)
        #expect(summary.contains("SSH used"))
        print(
            "measured: \(masters + agents + publicAgents)-node provision + install took "
                + "\(ContinuousClock.now - started); \(summary)")
        #expect(state.step == .ready)
        #expect(state.nodes.count == masters + agents + publicAgents + 1)
        #expect(state.nodes.allSatisfy { $0.hostKey?.hasPrefix("ssh-") == true && $0.privateIP.hasPrefix("127.0.1.") })
        #expect(try await cluster.liveInstances(spec).count == masters + agents + publicAgents + 1)

        // The installer saw the real roles, in order, on every node.
        for node in state.clusterNodes {
            let calls = cluster.calls(on: node.privateIP).filter { $0.hasSuffix(" \(clusterName)") }
            let phases = calls.filter { $0.contains(" ok ") }.map {
                $0.split(separator: " ").prefix(2).joined(separator: " ")
            }
            #expect(phases.first == "preflight \(node.role.rawValue)", "\(node.privateIP): \(calls)")
            #expect(phases.contains("deploy \(node.role.rawValue)"), "\(node.privateIP): \(calls)")
            #expect(phases.last == "postflight cluster", "\(node.privateIP): \(calls)")
            let preflight = try #require(phases.firstIndex(of: "preflight \(node.role.rawValue)"))
            let deploy = try #require(phases.firstIndex(of: "deploy \(node.role.rawValue)"))
            #expect(preflight < deploy)
        }
        // config.yaml: generated lists of private IPs, overrides merged by top-level key.
        let config = try #require(cluster.genconfConfig(clusterName: clusterName))
        for node in state.clusterNodes { #expect(config.contains("- \(node.privateIP)")) }
        #expect(config.contains("cluster_name: \(clusterName)"))
        #expect(!config.contains("cluster_name: \(spec.resourceName)"))
        #expect(config.contains("telemetry_enabled: false"))
        #expect(config.contains("bootstrap_url: http://\(state.bootstrapNode!.privateIP):8080"))
        #expect(cluster.genconfFile(clusterName: clusterName, "extra/hello.txt") == Data("hello from flotilla\n".utf8))

        await cluster.reap(state)
        let report = try await provisioner.teardown(spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
        #expect(report.terminatedInstances.count == state.nodes.count)
        #expect(report.deletedKeyPair == spec.resourceName)
        #expect(try await cluster.liveInstances(spec).isEmpty)
    }

    @Test("a 1-master, 1-agent, 1-public-agent cluster provisions, installs and tears down")
    func smallCluster() async throws {
        try await self.provisionAndCheck(masters: 1, agents: 1, publicAgents: 1)
    }

    @Test(
        "narrowed admin_location: SSH for the fleet's range, the serve port for the cluster's group, planned HttpTokens"
    )
    func narrowedAdminLocation() async throws {
        let cluster = try LoopbackCluster.current()
        var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        spec.adminLocation = "203.0.113.0/24"
        let provisioner = cluster.provisioner()
        let state = try await provisioner.provision(spec, observer: RecordingObserver())
        #expect(state.step == .ready)

        let groupID = try #require(state.securityGroupID)
        let group = try #require(try await cluster.stack.ec2().describeSecurityGroups(groupIDs: [groupID]).first)
        func sources(of port: Int) -> [String] {
            group.ingress.filter { $0.ipProtocol == "tcp" && $0.fromPort == port }.flatMap(\.cidrRanges)
        }
        let vpc = try #require(state.vpcCIDR)
        #expect(
            Set(sources(of: 22)) == ["203.0.113.0/24", vpc],
            "SSH: admin location and the fleet's range (the VPC, private SSH)")
        for port in [80, 443, 61001, 9000] { #expect(sources(of: port) == ["203.0.113.0/24"], "port \(port)") }
        let servePort = spec.install.bootstrapPort
        #expect(sources(of: servePort).isEmpty, "the serve port \(servePort) is open to no address range")
        #expect(
            !group.ingress.contains {
                $0.ipProtocol == "tcp" && ($0.fromPort ?? 0) <= servePort && ($0.toPort ?? 0) >= servePort
                    && !$0.cidrRanges.isEmpty
            })
        #expect(
            group.ingress.contains { $0.ipProtocol == "-1" && $0.sourceGroupIDs.contains(group.groupID) },
            "members reach each other, the serve port included: \(group.ingress)")

        let instances = try await cluster.liveInstances(spec)
        #expect(instances.count == 2)
        #expect(
            // The loopback image declares no ImdsSupport: tokens optional, as its cloud-init may need.
            instances.allSatisfy {
                $0.metadataHTTPTokens == "optional" && state.placement?.metadataTokens == "optional"
            },
            "\(instances.map { $0.metadataHTTPTokens ?? "nil" })")

        await cluster.reap(state)
        let report = try await provisioner.teardown(spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
    }

    @Test(
        "tokens required on an image whose cloud-init predates 19.4: no SSH key, as on EC2; with 19.4 and v2.0, ready")
    func tokensAndCloudInit() async throws {
        let cluster = try LoopbackCluster.current()
        // The loopback image declares no ImdsSupport and has cloud-init 18.5 (the key lookup's
        // default). The operator forces tokens anyway: the node never gets its key.
        var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        spec.metadataTokens = .required
        spec.install.sshTimeoutSeconds = 15
        let observer = RecordingObserver()
        let error = await #expect(throws: ProvisionError.self) {
            try await cluster.provisioner().provision(spec, observer: observer)
        }
        #expect(error?.code == .ssh || error?.code == .timeout, "\(String(describing: error))")
        #expect(error?.message.contains("SSH") == true, "\(String(describing: error))")
        let stackDirectory = try #require(ProcessInfo.processInfo.environment["STACK_DIR"])
        let lookups =
            (try? String(contentsOfFile: stackDirectory + "/nodes/authorized-keys.log", encoding: .utf8)) ?? ""
        let saved = try #require(observer.saved)
        let bootstrap = try #require(saved.nodes.first { $0.role == .bootstrap })
        #expect(
            lookups.contains("\(bootstrap.instanceID): no key: image \(cluster.image) has cloud-init 18.5"),
            "the key lookup says why")
        let report = try await cluster.provisioner().teardown(
            spec, state: saved, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)

        // An image that declares ImdsSupport v2.0, with a cloud-init that asks for tokens: the
        // plan requires them, and the node reads its key with one.
        try cluster.describeImage("ami-35e92e4c", imdsSupport: "v2.0", cloudInit: "19.4")
        var modern = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        modern.ami = "ami-35e92e4c"
        let state = try await cluster.provisioner().provision(modern, observer: RecordingObserver())
        #expect(state.step == .ready && state.placement?.metadataTokens == "required")
        await cluster.reap(state)
        let modernReport = try await cluster.provisioner().teardown(
            modern, state: state, settings: .fast, observer: RecordingObserver())
        #expect(modernReport.leftovers.isEmpty)
    }

    @Test("the production serve command runs on a bootstrap node whose Docker predates 20.10")
    func serveOnOldDocker() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        #expect(spec.install.serveCommand == InstallSettings().serveCommand, "loopback runs the production command")
        let observer = RecordingObserver { state, moment, step in
            if step == "instances running", moment == .after, let bootstrap = state.bootstrapNode {
                try await cluster.setDockerVersion(bootstrap.privateIP, "19.03.15")
            }
        }
        let state = try await cluster.provisioner().provision(spec, observer: observer)
        #expect(state.step == .ready)
        let bootstrap = try #require(state.bootstrapNode)
        #expect(
            cluster.calls(on: bootstrap.privateIP).contains { $0.hasPrefix("prereqs docker-run:nginx:") },
            "the bootstrap served through its Docker")
        // That Docker is as strict as 19.03: `rm -f` of a container that is not there fails.
        let folder = URL(fileURLWithPath: "/tmp/fl-\(UUID().uuidString.prefix(8).lowercased())")
        let shell = try OpenSSHShell(privateKeyPEM: try #require(state.privateKeyPEM), directory: folder)
        let target = SSHTarget(host: bootstrap.privateIP, port: spec.sshPort, user: spec.sshUser)
        try await shell.pinHostKey(try #require(bootstrap.hostKey), for: target)
        let missing = try await shell.run(
            "sudo docker version --format '{{.Server.Version}}'; sudo docker rm -f flotilla-nothing-here", on: target,
            input: nil, timeout: .seconds(180))
        await shell.close()
        #expect(missing.stdout.contains("19.03.15"), "\(missing)")
        #expect(missing.exitStatus == 1 && missing.stderr.contains("No such container"), "\(missing)")

        await cluster.reap(state)
        let report = try await cluster.provisioner().teardown(
            spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
    }

    @Test("plain-image nodes get their prerequisites installed, then install; on prepared nodes the step only detects")
    func plainImageNodes() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec(masters: 1, agents: 1, publicAgents: 0)
        // Once the instances have addresses, they become plain CentOS images.
        let observer = RecordingObserver { state, moment, step in
            if step == "instances running", moment == .after {
                for node in state.nodes { try await cluster.makePlainImage(node.privateIP) }
            }
        }
        let provisioner = cluster.provisioner()
        let state = try await provisioner.provision(spec, observer: observer)
        #expect(state.step == .ready)
        let installed = observer.progress.first { $0.hasPrefix("prerequisites installed") }
        #expect(installed?.contains("docker") == true, "\(observer.progress)")
        #expect(installed?.contains("nogroup") == true, "\(observer.progress)")
        // The clock: chronyd gets the Amazon Time Sync Service (postflight checks the clock).
        #expect(installed?.contains("pointing chronyd at 169.254.169.123") == true, "\(observer.progress)")
        // Docker at the pinned version, its client too (yum alone would pull the newest client).
        for node in state.nodes {
            let packages = try cluster.packages(of: node.privateIP)
            #expect(packages["docker-ce"] == "19.03.15-3.el7", "\(node.privateIP): \(packages)")
            #expect(packages["docker-ce-cli"] == "19.03.15-3.el7", "\(node.privateIP): \(packages)")
        }
        print("measured: \(installed ?? "no prerequisites step")")

        // Again on the same, now prepared, nodes: detection only.
        let again = RecordingObserver()
        let started = ContinuousClock.now
        var rerun = state
        rerun.step = .sshReady
        // The nodes remember every step that ran (a resumed run collects them): forget them.
        try? FileManager.default.removeItem(
            at: FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(
                "flotilla-steps/\(spec.clusterID)"))
        _ = try? await provisioner.provision(spec, from: rerun, observer: again)
        let nothing = again.progress.first { $0.hasPrefix("prerequisites: nothing missing") }
        #expect(nothing != nil, "\(again.progress)")
        print(
            "measured: prerequisites on \(state.nodes.count) prepared nodes: \(nothing ?? "-") "
                + "(whole resumed run \(ContinuousClock.now - started))")

        await cluster.reap(state)
        let report = try await provisioner.teardown(spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
    }

    @Test("a master whose clock never synchronises fails postflight in DC/OS's own words, naming the node")
    func clockNotSynchronised() async throws {
        let cluster = try LoopbackCluster.current()
        var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        spec.install.postflightTimeoutSeconds = 3
        // After the prerequisites, the master's chronyd loses the time server it could reach (a
        // plain CentOS image keeps only its pool servers, which a private subnet cannot reach).
        let observer = RecordingObserver { state, moment, step in
            if step == "prerequisites", moment == .after, let master = state.clusterNodes.first {
                try await cluster.setTimeServers(master.privateIP, ["0.centos.pool.ntp.org"])
            }
        }
        let error = await #expect(throws: ProvisionError.self) {
            try await cluster.provisioner().provision(spec, observer: observer)
        }
        let master = try #require(observer.saved?.clusterNodes.first)
        #expect(error?.code == .installFailed)
        #expect(error?.message.contains("postflight failed on 1 of 1 nodes: \(master.privateIP)") == true)
        let log = error?.logs.values.joined() ?? ""
        #expect(log.contains("Clock is out of sync / in unsync state"), "\(String(describing: error))")

        let state = try #require(observer.saved)
        await cluster.reap(state)
        let report = try await cluster.provisioner().teardown(
            spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
    }

    @Test(
        "a bootstrap script on stdin would be swallowed by the installer, like docker run -i; the file-based one is not"
    )
    func stdinIsSwallowed() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        let provisioner = cluster.provisioner()
        let state = try await provisioner.provision(spec, observer: RecordingObserver())
        #expect(state.step == .ready, "the file-based bootstrap served the configuration and the install passed")
        let bootstrap = try #require(state.bootstrapNode)
        let shell = try OpenSSHShell(
            privateKeyPEM: try #require(state.privateKeyPEM),
            directory: URL(fileURLWithPath: "/tmp/flotilla-ssh/stdin-\(UUID().uuidString.prefix(6))"))
        let target = SSHTarget(host: bootstrap.privateIP, port: spec.sshPort, user: spec.sshUser)
        try await shell.pinHostKey(try #require(bootstrap.hostKey), for: target)
        let script = """
            cd "$HOME/flotilla-bootstrap-\(spec.clusterID)"
            sudo bash dcos_generate_config.sh --genconf
            echo after-genconf-marker
            """
        let swallowed = try await shell.run("bash -s", on: target, input: Data(script.utf8), timeout: .seconds(60))
        #expect(swallowed.exitStatus == 0, "\(swallowed.summary)\n\(Self.nodeLogs(for: target.host))")
        #expect(
            !swallowed.stdout.contains("after-genconf-marker"),
            "the lines after genconf were read by the installer, not run")
        await shell.close()
        #expect(!FileManager.default.fileExists(atPath: shell.directory.path))

        // Closing removes the shell's folder (the key, the control socket) every time: after a
        // command, and with a command cancelled while its master connection is up.
        var left: [String] = []
        var slowestClose = Duration.zero
        for round in 0..<12 {
            let closing = try OpenSSHShell(
                privateKeyPEM: try #require(state.privateKeyPEM),
                directory: URL(fileURLWithPath: "/tmp/flotilla-ssh/close-\(round)-\(UUID().uuidString.prefix(6))"))
            try await closing.pinHostKey(try #require(bootstrap.hostKey), for: target)
            if round.isMultiple(of: 2) {
                // A first connection under the whole suite's load has taken over 30 s.
                let quick = try await closing.run("true", on: target, input: nil, timeout: .seconds(120))
                #expect(quick.exitStatus == 0, "\(quick.summary)\n\(Self.nodeLogs(for: target.host))")
            } else {
                // Its own limit outlasts the wait for its socket below: under the whole suite's load
                // (the emulator answering every node's key lookup) one connection took over 60 s.
                let long = Task { try await closing.run("sleep 180", on: target, input: nil, timeout: .seconds(180)) }
                let socket = closing.directory.appendingPathComponent("cm-\(target.host)-\(target.port)").path
                let ended = Mutex<RemoteResult?>(nil)
                let watcher = Task { if let result = try? await long.value { ended.withLock { $0 = result } } }
                let deadline = ContinuousClock.now.advanced(by: .seconds(120))
                while !FileManager.default.fileExists(atPath: socket), ended.withLock({ $0 == nil }),
                    ContinuousClock.now < deadline
                {
                    try await Task.sleep(for: .milliseconds(5))
                }
                #expect(
                    FileManager.default.fileExists(atPath: socket),
                    """
                    the master connection came up (round \(round); the command \
                    \(ended.withLock { $0?.summary } ?? "still running"))
                    \(Self.nodeLogs(for: target.host))
                    """)
                long.cancel()
                _ = await watcher.value
                _ = await long.result
            }
            let closeStarted = ContinuousClock.now
            await closing.close()
            slowestClose = max(slowestClose, ContinuousClock.now - closeStarted)
            if FileManager.default.fileExists(atPath: closing.directory.path) {
                left.append(closing.directory.lastPathComponent)
            }
        }
        #expect(left.isEmpty, "shell folders left after close: \(left)")
        print("measured: the slowest of 12 shell closes took \(slowestClose)")

        await cluster.reap(state)
        let report = try await provisioner.teardown(spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
    }

    /// The last lines the node's key lookup and sshd logged about `host`, for a failure message.
    static func nodeLogs(for host: String) -> String {
        let environment = ProcessInfo.processInfo.environment
        let logs = [
            ("key lookup", environment["STACK_DIR"].map { $0 + "/nodes/authorized-keys.log" }),
            ("sshd", environment["FLOTILLA_TEST_SSH_LOG"]),
        ]
        return logs.map { name, path in
            let text = path.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            let lines = text.split(separator: "\n").filter { $0.contains(host) }.suffix(12)
            return "\(name) (\(path ?? "no log")):\n" + lines.joined(separator: "\n")
        }.joined(separator: "\n")
    }

    @Test(
        "node scripts read IMDSv2 from the v2-only emulator; IMDSv1 is refused; a token-refusing service fails clearly"
    )
    func nodeScriptsAgainstIMDS() async throws {
        let cluster = try LoopbackCluster.current()
        let environment = ProcessInfo.processInfo.environment
        let endpoint = try #require(
            environment["FLOTILLA_TEST_IMDS_ENDPOINT"], "run through ./scripts/test (stack_start_imds)")
        let stackDirectory = try #require(environment["STACK_DIR"])
        // The install itself ran these scripts (genconf, every preflight and deploy) against
        // the emulator, which starts in v2-only mode.
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        let provisioner = cluster.provisioner()
        let state = try await provisioner.provision(spec, observer: RecordingObserver())
        let master = try #require(state.clusterNodes.first)
        let shell = try OpenSSHShell(
            privateKeyPEM: try #require(state.privateKeyPEM),
            directory: URL(fileURLWithPath: "/tmp/flotilla-ssh/imds-\(UUID().uuidString.prefix(6))"))
        let target = SSHTarget(host: master.privateIP, port: spec.sshPort, user: spec.sshUser)
        try await shell.pinHostKey(try #require(master.hostKey), for: target)
        func run(_ script: String) async throws -> RemoteResult {
            try await shell.run(
                "f=$(mktemp) && cat > \"$f\" && bash \"$f\" </dev/null; rc=$?; rm -f \"$f\"; exit $rc",
                on: target, input: Data(script.utf8), timeout: .seconds(60))
        }
        let ip = try await run(NodeScripts.ipDetect(endpoint: endpoint))
        #expect(ip.exitStatus == 0 && ip.stdout == "\(master.privateIP)\n", "\(ip.summary)")
        let publicIP = try await run(NodeScripts.ipDetectPublic(endpoint: endpoint))
        #expect(
            publicIP.exitStatus == 0 && publicIP.stdout == "\(master.publicIP ?? master.privateIP)\n",
            "\(publicIP.summary)")
        let domain = try await run(NodeScripts.faultDomainDetect(endpoint: endpoint))
        #expect(domain.exitStatus == 0, "\(domain.summary)")
        #expect(domain.stdout.contains("\"region\":{\"name\":\"aws/\(cluster.stack.region)\"}"), "\(domain.stdout)")
        // The 2018 scripts read IMDSv1 (no token): refused, as AWS refuses them with HttpTokens=required.
        let v1 = try await shell.run(
            "curl -fsS \(endpoint)/latest/meta-data/local-ipv4", on: target, input: nil, timeout: .seconds(30))
        #expect(v1.exitStatus != 0, "\(v1.summary)")

        // A metadata service that refuses tokens: an emulator of our own in `refuse` mode, on a
        // port that was free (tried again on another one if the emulator could not bind).
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
                "scripts/fixtures/imds-emulator.py")
        var emulator: Process?
        var refusing = ""
        for _ in 0..<5 where emulator == nil {
            let port = Int.random(in: 40000...49999)
            let control = URL(fileURLWithPath: stackDirectory).appendingPathComponent("imds-refuse-\(port)")
            try "refuse\n".write(to: control, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [
                "python3", script.path, "--port", String(port), "--control", control.path,
                "--log", control.path + ".log", "--aws-conf", stackDirectory + "/nodes/aws.json", "--mode", "refuse",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Up when it answers anything over HTTP; gone when it could not start.
            let deadline = ContinuousClock.now.advanced(by: .seconds(15))
            while process.isRunning, ContinuousClock.now < deadline,
                try await runLocal(
                    "/usr/bin/curl",
                    ["-s", "-o", "/dev/null", "--max-time", "1", "http://127.0.0.1:\(port)/latest/meta-data/"]) != 0
            {
                try await Task.sleep(for: .milliseconds(100))
            }
            if process.isRunning {
                emulator = process
                refusing = "http://127.0.0.1:\(port)"
            }
        }
        let refusingEmulator = try #require(emulator, "the refusing IMDS emulator did not start")
        // Ended and awaited however the rest ends.
        do {
            let refused = try await run(NodeScripts.ipDetect(endpoint: refusing))
            #expect(refused.exitStatus == 1, "\(refused.summary)")
            #expect(refused.stdout.isEmpty)
            #expect(
                refused.stderr.contains("ip-detect: the instance metadata service refused an IMDSv2 token"),
                "\(refused.stderr)")
            await shell.close()

            await cluster.reap(state)
            let report = try await provisioner.teardown(
                spec, state: state, settings: .fast, observer: RecordingObserver())
            #expect(report.leftovers.isEmpty)
        } catch {
            await refusingEmulator.stop()
            throw error
        }
        await refusingEmulator.stop()
    }

    @Test("a bootstrap port among the admin ports is refused before anything is created")
    func servePortAmongAdminPorts() throws {
        let cluster = try LoopbackCluster.current()
        var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        spec.install.bootstrapPort = 80
        let error = #expect(throws: ProvisionError.self) { try spec.validate() }
        #expect(error?.message.contains("open to admin_location") == true)
    }

    @Test("a 3-master, 5-agent, 2-public-agent cluster provisions, installs and tears down")
    func largerCluster() async throws {
        try await self.provisionAndCheck(masters: 3, agents: 5, publicAgents: 2)
    }

    @Test("a preflight failure on one node returns that node's journal and tears down cleanly")
    func preflightFailure() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec()
        let provisioner = cluster.provisioner()
        let failing = Mutex<String?>(nil)
        let observer = RecordingObserver { state, moment, step in
            // Once the nodes have addresses, make preflight fail on the private agent.
            if step == "instances running", let agent = state.nodes.first(where: { $0.role == .privateAgent }) {
                failing.withLock { $0 = agent.privateIP }
                try cluster.injectFailure("preflight", on: agent.privateIP)
            }
        }
        let error = await #expect(throws: ProvisionError.self) {
            try await provisioner.provision(spec, observer: observer)
        }
        let ip = try #require(failing.withLock { $0 })
        #expect(error?.code == .installFailed)
        #expect(error?.message.contains(ip) == true)
        let log = try #require(error?.logs["preflight-\(ip)-journald.log"])
        #expect(log.contains("injected failure"), "the installer's output is in the log")
        #expect(log.contains("journalctl"))
        #expect(error?.logs.count == 1, "only the failed node's log")

        let saved = try #require(observer.saved)
        #expect(saved.step == .bootstrapReady)
        await cluster.reap(saved)
        let report = try await provisioner.teardown(spec, state: saved, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
        #expect(try await cluster.liveInstances(spec).isEmpty)
    }

    /// Starts provisioning `spec`, whose deploy the caller holds (STATE/hold), and waits until the
    /// master's deploy stands in its middle. Returns the run, its observer and the state stored.
    private func provisionUntilDeployHeld(_ cluster: LoopbackCluster, _ spec: ClusterSpec) async throws -> (
        Task<ProvisionState, any Error>, RecordingObserver, ProvisionState
    ) {
        let observer = RecordingObserver()
        let provisioning = Task { try await cluster.provisioner().provision(spec, observer: observer) }
        let held = Mutex<ProvisionState?>(nil)
        // Under the whole suite's load a provisioning takes minutes to reach deploy.
        try await eventually("deploy held", timeout: .seconds(400)) {
            guard let state = observer.saved, let master = state.clusterNodes.first,
                cluster.calls(on: master.privateIP).contains(where: { $0.hasPrefix("hold deploy waiting") })
            else { return false }
            held.withLock { $0 = state }
            return true
        }
        return (provisioning, observer, try #require(held.withLock { $0 }))
    }

    @Test("a deploy cut short on its node (its processes killed) is named as such at once, and never taken for done")
    func deployCutShort() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        try cluster.holds.add("deploy", spec.resourceName)
        defer { try? cluster.holds.remove("deploy", spec.resourceName) }
        // The worker dies (its task is cancelled) while the deploy is held in its middle.
        let (provisioning, _, saved) = try await self.provisionUntilDeployHeld(cluster, spec)
        provisioning.cancel()
        _ = await provisioning.result
        // Then the node loses the deploy: its supervisor and everything it started are killed,
        // as a reboot would (the installer's model keeps the half-done install).
        let master = try #require(saved.clusterNodes.first)
        let folder = "flotilla-steps/\(spec.clusterID)/\(master.instanceID)/deploy"
        #expect(try await killStepSession(folder: "/" + folder), "no supervisor found for \(folder)")
        try cluster.holds.remove("deploy", spec.resourceName)

        let resumed = RecordingObserver()
        let error = await #expect(throws: ProvisionError.self) {
            try await cluster.provisioner().provision(spec, from: saved, observer: resumed)
        }
        #expect(error?.code == .installFailed)
        #expect(
            error?.message.contains("deploy on \(master.privateIP) was cut short") == true,
            "\(String(describing: error))")
        #expect(error?.message.contains("cannot resume") == true)
        #expect(resumed.saved.map { $0.step < .deployed } ?? true, "never past deploy")
        let deploys = cluster.calls(on: master.privateIP).filter { $0.hasPrefix("deploy ") }
        #expect(deploys.isEmpty, "no deploy finished and none was started again: \(deploys)")

        let state = resumed.saved ?? saved
        await cluster.reap(state)
        let report = try await cluster.provisioner().teardown(
            spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
    }

    @Test("an SSH connection cut in the middle of deploy: the worker reconnects, the step goes on, one install")
    func connectionCutMidStep() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        try cluster.holds.add("deploy", spec.resourceName)
        defer { try? cluster.holds.remove("deploy", spec.resourceName) }
        let (provisioning, observer, held) = try await self.provisionUntilDeployHeld(cluster, spec)
        let master = try #require(held.clusterNodes.first).privateIP
        // The worker's connection to the node dies under the running command, as when the
        // network path drops: the multiplexing master that carries it ends, and the client
        // waiting on the step through it is left with a broken connection (ssh exits 255).
        let pattern = "/cm-" + master.replacingOccurrences(of: ".", with: "\\.") + "-[0-9]+ \\[mux\\]"
        #expect(try await runLocal("/usr/bin/pkill", ["-KILL", "-f", pattern]) == 0, "no connection to \(master)")
        try await eventually("the runner noticed", timeout: .seconds(120)) {
            observer.progress.contains { $0.contains("deploy on \(master): the connection failed") }
        }
        try cluster.holds.remove("deploy", spec.resourceName)

        let state = try await provisioning.value
        #expect(state.step == .ready)
        #expect(observer.progress.contains { $0 == "deploy on \(master): reconnected" }, "\(observer.progress)")
        let deploys = cluster.calls(on: master).filter { $0.hasPrefix("deploy ") }
        #expect(deploys.count == 1 && deploys.allSatisfy { $0.contains(" ok ") }, "one install: \(deploys)")

        await cluster.reap(state)
        let report = try await cluster.provisioner().teardown(
            spec, state: state, settings: .fast, observer: RecordingObserver())
        #expect(report.leftovers.isEmpty)
    }

    @Test(
        "interrupted at any checkpoint, provisioning ends with exactly the requested instances; teardown leaves nothing"
    )
    func resumeFromEveryCheckpoint() async throws {
        let cluster = try LoopbackCluster.current()
        // Two chains, each one cluster: every run stops at the next checkpoint not yet tried,
        // and the next run resumes from what was stored. In the first, each crash comes right
        // after its checkpoint was stored; in the second, right after each step's side effect,
        // with its checkpoint not stored, so the resumed run does the step again.
        async let afterStore = self.interruptAtEveryCheckpoint(cluster, stored: true)
        async let beforeStore = self.interruptAtEveryCheckpoint(cluster, stored: false)
        let (stored, unstored) = try await (afterStore, beforeStore)
        #expect(stored.count >= 15, "checkpoints: \(stored)")
        #expect(Set(unstored) == Set(stored.filter { $0.hasPrefix("after") }), "\(unstored) against \(stored)")
    }

    /// Provisions one 1-master cluster as a chain of runs, each interrupted at the first
    /// checkpoint not interrupted at before, resumed from the last stored state, until a run
    /// completes. Checks it ends with exactly its instances and one install per node, tears it
    /// down, checks nothing is left, and returns the checkpoints it interrupted at, in order.
    private func interruptAtEveryCheckpoint(_ cluster: LoopbackCluster, stored: Bool) async throws -> [String] {
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        var state: ProvisionState?
        var tried: [String] = []
        var finished: ProvisionState?
        // Each run gets past at least one new checkpoint; a chain longer than this loops.
        for _ in 0..<60 {
            let skip = Set(tried)
            let observer = RecordingObserver(
                storeInterrupted: stored,
                interruptIf: { label in !skip.contains(label) && (stored || label.hasPrefix("after")) })
            do {
                finished = try await cluster.provisioner().provision(spec, from: state, observer: observer)
                break
            } catch is RecordingObserver.Interrupted {
                tried.append(try #require(observer.labels.last))
                // A run interrupted before it stored anything resumes from where it began.
                state = observer.saved ?? state
            } catch let error as ProvisionError {
                let logs = error.logs.values.joined(separator: "\n").suffix(1500)
                Issue.record("resumed after \(tried) (stored: \(stored)): \(error) \(logs)")
                throw error
            }
        }
        let resumed = try #require(finished, "the chain did not finish after \(tried)")
        let context = "stored: \(stored), interrupted at \(tried)"
        let live = try await cluster.liveInstances(spec)
        #expect(live.count == 2, "\(context): \(live.count) live instances")
        #expect(Set(live.map(\.instanceID)) == Set(resumed.instanceIDs), "\(context)")
        // The real installer refuses a second install on a node: none happened.
        for node in resumed.clusterNodes {
            let deploys = cluster.calls(on: node.privateIP).filter {
                $0.hasPrefix("deploy ") && $0.contains(" ok ") && $0.hasSuffix(" \(spec.resourceName)")
            }
            #expect(deploys.count == 1, "\(context): \(deploys.count) installs on \(node.privateIP)")
        }
        await cluster.reap(resumed)
        try await cluster.provisioner().teardown(spec, state: resumed, settings: .fast, observer: RecordingObserver())
        let keys = try await cluster.stack.ec2().describeKeyPairs(filters: [.tag("cluster", spec.clusterID)])
        let groups = try await cluster.stack.ec2().describeSecurityGroups(filters: [.tag("cluster", spec.clusterID)])
        #expect(try await cluster.liveInstances(spec).isEmpty && keys.isEmpty && groups.isEmpty, "\(context)")
        return tried
    }

    @Test("teardown with credentials about to expire renews them first, then deletes the key pair")
    func teardownRenewsCredentials() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        // Credentials that live 20 minutes: past the cache's 15-minute refresh window, but
        // short of the 30 minutes teardown demands for the key pair delete.
        let fixture = try CredentialProcessFixture(credentials: cluster.stack.credentials, lifetime: 20 * 60)
        defer { fixture.remove() }
        let cache = CredentialsCache(provider: fixture.provider, logger: TestStack.logger)
        let provisioner = cluster.provisioner(credentials: cache)
        // Only the EC2 resources matter here: stop once the instances run, before SSH.
        let partial = RecordingObserver { _, _, step in
            if step == "instances running" { throw RecordingObserver.Interrupted() }
        }
        do { _ = try await provisioner.provision(spec, observer: partial) } catch is RecordingObserver.Interrupted {}
        let state = try #require(partial.saved)
        let before = try fixture.invocations
        #expect(before == 1)

        // The next credentials the process hands out last an hour, as a renewed session would.
        try fixture.setLifetime(3600)
        var settings = TeardownSettings.fast
        settings.credentialMargin = .seconds(30 * 60)
        let report = try await provisioner.teardown(
            spec, state: state, settings: settings, observer: RecordingObserver())
        #expect(try fixture.invocations == before + 1, "credentials were renewed once, before the key pair delete")
        #expect(report.deletedKeyPair == spec.resourceName)
        let keys = try await cluster.stack.ec2().describeKeyPairs(filters: [.tag("cluster", spec.clusterID)])
        #expect(keys.isEmpty)
    }
}

typealias TeardownSettings = ClusterProvisioner.TeardownSettings

extension ClusterProvisioner.TeardownSettings {
    static var fast: Self { .init(pollInterval: .milliseconds(100)) }
}

/// Runs `body` for each element, at most `limit` at once; results in input order.
func forEachLimited<Element: Sendable, Value: Sendable>(
    _ elements: [Element], limit: Int,
    _ body: @escaping @Sendable (Element) async -> Value
) async -> [Value] {
    var results = [Value?](repeating: nil, count: elements.count)
    await withTaskGroup(of: (Int, Value).self) { group in
        var next = 0
        for _ in 0..<limit where next < elements.count {
            let index = next
            group.addTask { (index, await body(elements[index])) }
            next += 1
        }
        while let (index, value) = await group.next() {
            results[index] = value
            if next < elements.count {
                let index = next
                group.addTask { (index, await body(elements[index])) }
                next += 1
            }
        }
    }
    return results.map { $0! }
}
