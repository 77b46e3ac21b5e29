import Foundation
import TestSupport
import Testing

/// What a CI agent does once it holds a cluster, through real `client` processes and OpenSSH
/// to the loopback nodes: commands (in the DC/OS test environment too), files both ways, a
/// checkout's tests synced to the masters, and the evidence gathered when something failed.
@Suite("The agent's loop: commands, files and logs on the nodes", .serialized, .timeLimit(.minutes(10)))
struct AgentLoopTests {
    static let fastWorker = ["--lease-seconds", "4", "--heartbeat-seconds", "1", "--poll-seconds", "0.5"]

    /// A ready cluster of 1 master, 1 agent and 1 public agent: (id, token, the nodes' private IPs by role).
    static func readyCluster(_ fleet: Fleet) async throws -> (id: String, token: String, ips: [String: [String]]) {
        let request = try await fleet.run(["client", "request", "--nodes", "3", "--json"])
        try #require(request.status == 0, "\(request.stderr)\n\(fleet.workerLogs())")
        let object = try jsonObject(request.output)
        let id = try #require(object["id"] as? String)
        let token = try #require(object["lease_token"] as? String)
        var ips: [String: [String]] = [:]
        for node in object["nodes"] as? [[String: Any]] ?? [] {
            ips[node["role"] as? String ?? "", default: []].append(node["private_ip"] as? String ?? "")
        }
        return (id, token, ips)
    }

    /// Writes `files` (relative path → (contents, mode)) under `root`.
    static func write(_ files: [String: (String, Int)], under root: URL) throws {
        for (path, (contents, mode)) in files {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: url)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
        }
    }

    /// Every regular file under `root`: relative path → (contents, mode).
    static func tree(_ root: URL) -> [String: String] {
        var result: [String: String] = [:]
        let enumerator = FileManager.default.enumerator(atPath: root.path)
        while let path = enumerator?.nextObject() as? String {
            let full = root.appendingPathComponent(path).path
            let attributes = try? FileManager.default.attributesOfItem(atPath: full)
            let mode = (attributes?[.posixPermissions] as? Int).map { String($0, radix: 8) } ?? "?"
            if attributes?[.type] as? FileAttributeType == .typeDirectory {
                result[path + "/"] = mode
            } else {
                let contents = String(decoding: FileManager.default.contents(atPath: full) ?? Data(), as: UTF8.self)
                result[path] = "\(mode) \(contents)"
            }
        }
        return result
    }

    @Test(
        """
        exec (the test environment, a failing status, an unknown node, Ctrl-C), send-file and download-file of a \
        folder with its modes, sync of a checkout, and logs --collect on a ready cluster
        """)
    func agentLoop() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run"] + Self.fastWorker)
            let (id, token, ips) = try await Self.readyCluster(fleet)
            let lease = ["--lease-token", token]
            let scratch = try fleet.makeScratchDirectory(suffix: "-agent")

            // sync: a checkout's integration tests reach the masters' test folder.
            let checkout = scratch.appendingPathComponent("dcos")
            let testScript = """
                import os, sys
                def test_hosts():
                    assert os.environ["MASTER_HOSTS"] == os.environ["EXPECT_MASTERS"], os.environ["MASTER_HOSTS"]
                    assert os.environ["SLAVE_HOSTS"] == os.environ["EXPECT_AGENTS"], os.environ["SLAVE_HOSTS"]
                    assert os.environ["PUBLIC_SLAVE_HOSTS"] == os.environ["EXPECT_PUBLIC"]
                    assert os.environ["DCOS_STUB_ENVIRONMENT"] == "sourced", "environment.export was not sourced"
                    assert os.getcwd() == "/opt/mesosphere/active/dcos-integration-test", os.getcwd()
                def test_meant_to_fail():
                    assert os.environ.get("MAKE_IT_PASS") == "1", "failing on purpose"
                failed = 0
                for name, test in sorted(globals().items()):
                    if name.startswith("test_"):
                        try:
                            test()
                            print(name, "PASSED")
                        except AssertionError as error:
                            failed += 1
                            print(name, "FAILED:", error)
                sys.exit(1 if failed else 0)
                """
            try Self.write(
                [
                    "packages/dcos-integration-test/extra/test_flotilla_env.py": (testScript, 0o644),
                    "packages/dcos-integration-test/extra/__pycache__/stale.pyc": ("x", 0o644),
                ], under: checkout)
            let sync = try await fleet.run(["client", "sync", id, checkout.path] + lease)
            #expect(sync.status == 0, "\(sync.output)\n\(sync.stderr)")
            #expect(sync.output.contains("master_0"), "\(sync.output)")
            let noCheckout = try await fleet.run(["client", "sync", id, scratch.path] + lease)
            #expect(noCheckout.status == 64 && noCheckout.stderr.contains("packages/dcos-integration-test/extra"))

            // exec --test-env: the script reads the environment; its failing status comes back.
            let expect = [
                "--env", "EXPECT_MASTERS=\(ips["master", default: []].joined(separator: ","))",
                "--env", "EXPECT_AGENTS=\(ips["slave", default: []].joined(separator: ","))",
                "--env", "EXPECT_PUBLIC=\(ips["slave_public", default: []].joined(separator: ","))",
            ]
            let failing = try await fleet.run(
                ["client", "exec", id, "--test-env"] + expect + lease + ["--", "python3", "test_flotilla_env.py"])
            #expect(failing.status == 1, "\(failing.output)\n\(failing.stderr)")
            #expect(failing.output.contains("test_hosts PASSED"), "\(failing.output)")
            #expect(failing.output.contains("test_meant_to_fail FAILED: failing on purpose"), "\(failing.output)")
            let passing = try await fleet.run(
                ["client", "exec", id, "--test-env", "--env", "MAKE_IT_PASS=1"] + expect + lease
                    + ["--", "python3", "test_flotilla_env.py"])
            #expect(passing.status == 0, "\(passing.output)\n\(passing.stderr)")

            // An exit status, arguments kept as words, and a node by name.
            let status = try await fleet.run(
                ["client", "exec", id, "--node", "agent_0"] + lease + [
                    "--", "sh", "-c", "echo \"$0 $1\"; exit 7", "a b", "c",
                ])
            #expect(status.status == 7 && status.output == "a b c\n", "\(status.output)\n\(status.stderr)")
            let unknown = try await fleet.run(["client", "exec", id, "--node", "agent_9"] + lease + ["--", "true"])
            #expect(
                unknown.status == 1 && unknown.stderr.contains("master_0, agent_0, public_agent_0"), "\(unknown.stderr)"
            )

            // Ctrl-C reaches the command on the node, and its status is the client's.
            let marker = scratch.appendingPathComponent("interrupted").path
            let long = try fleet.startInBackground(
                ["client", "exec", id] + lease + [
                    "--", "sh", "-c",
                    "trap 'echo got-INT > \(marker); exit 130' INT; echo started; while :; do sleep 0.1; done",
                ])
            let started = try await eventually("the remote command started", timeout: .seconds(30)) {
                long.stdoutSoFar().contains("started")
            }
            try #require(started, "\(long.stderrSoFar())")
            long.send(SIGINT)
            let interrupted = await long.finish(within: .seconds(30))
            #expect(interrupted?.status == 130, "\(String(describing: interrupted))")
            #expect((try? String(contentsOfFile: marker, encoding: .utf8)) == "got-INT\n")

            // --tty: the command gets a terminal on the node (the client's own is script(1)'s pty).
            let client = fleet.bin.appendingPathComponent("client").path
            let terminal = Process()
            terminal.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            terminal.arguments = [
                "-qec", Self.shellWords([client, "exec", id, "--tty", "--lease-token", token, "--", "tty"]),
                "/dev/null",
            ]
            terminal.environment = fleet.environment(for: ["client"], [:])
            terminal.standardInput = FileHandle.nullDevice
            let tty = try await terminal.runToCompletion()
            #expect(tty.status == 0 && tty.output.contains("/dev/pts/"), "\(tty.output)\n\(tty.errors)")

            // send-file and download-file round-trip a folder with its modes.
            let local = scratch.appendingPathComponent("payload")
            try Self.write(
                [
                    "run.sh": ("#!/bin/sh\necho hi\n", 0o755), "secret.txt": ("s3cret\n", 0o600),
                    "nested/deeper/data.json": ("{\"a\": 1}\n", 0o640),
                ], under: local)
            let remote = scratch.appendingPathComponent("on-the-node/payload-copy").path
            let send = try await fleet.run(
                ["client", "send-file", id, local.path, remote, "--node", "public_agent_0"] + lease)
            #expect(send.status == 0, "\(send.output)\n\(send.stderr)")
            let back = scratch.appendingPathComponent("back")
            let download = try await fleet.run(
                ["client", "download-file", id, remote, back.path, "--node", "public_agent_0"] + lease)
            #expect(download.status == 0, "\(download.output)\n\(download.stderr)")
            #expect(Self.tree(back) == Self.tree(local), "\(Self.tree(back)) vs \(Self.tree(local))")
            #expect(
                Self.tree(local)["run.sh"]?.hasPrefix("755 ") == true
                    && Self.tree(local)["secret.txt"]?.hasPrefix("600 ") == true)
            let missing = try await fleet.run(
                [
                    "client", "download-file", id, "/nonexistent/\(UUID().uuidString)",
                    scratch.appendingPathComponent("none").path,
                ]
                    + lease)
            #expect(
                missing.status == 1 && missing.stderr.contains("no such file or folder on master_0"),
                "\(missing.stderr)")
            #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent("none").path))

            // status: the nodes by the names exec takes, the web UI, and the version read from master_0.
            let shown = try await fleet.run(["client", "status", id] + lease)
            #expect(shown.status == 0, "\(shown.stderr)")
            let master = try #require(ips["master"]?.first)
            for line in ["DC/OS        2.2.0", "web UI       http://\(master)/", "master_0", "public_agent_0"] {
                #expect(shown.output.contains(line), "\(line) in: \(shown.output)")
            }
            let statusJSON = try jsonObject(try await fleet.run(["client", "status", id, "--json"] + lease).output)
            #expect(statusJSON["dcos_version"] as? String == "2.2.0", "\(statusJSON)")

            // doctor: all that an agent needs is here; without ssh and tar on PATH it says what to install.
            let doctor = try await fleet.run(["client", "doctor", "--json"])
            #expect(doctor.status == 0, "\(doctor.output)\n\(doctor.stderr)")
            let checks = try jsonObject(doctor.output)["checks"] as? [[String: String]] ?? []
            #expect(checks.first { $0["name"] == "role" }?["outcome"] == "ok", "\(checks)")
            #expect(checks.first { $0["name"] == "database reachable" }?["outcome"] == "ok", "\(checks)")
            let bare = try await fleet.run(["client", "doctor"], environment: ["PATH": "/nonexistent"])
            #expect(bare.status == 1 && bare.output.contains("apt-get install openssh-client"), "\(bare.output)")

            // logs --collect: every node's journal and a diagnostics bundle from master_0.
            let evidence = scratch.appendingPathComponent("evidence")
            let collect = try await fleet.run(["client", "logs", id, "--collect", evidence.path, "--json"] + lease)
            #expect(collect.status == 0, "\(collect.output)\n\(collect.stderr)")
            try Self.expectEvidence(in: evidence, ips: ips)
            // The journals are kept with the cluster for the operator page, each capped at 1 MiB,
            // at most 16 MiB in all.
            #expect(try jsonObject(collect.output)["kept_with_cluster"] as? Int == 4, "\(collect.output)")
            let kept = try await fleet.scalar(
                """
                SELECT count(*)::int FROM cluster_logs WHERE cluster_id = \(id) AND name LIKE 'collected-%-journal.log'
                """, as: Int.self)
            #expect(kept == 4)
            let big = try await fleet.scalar(
                """
                SELECT flotilla_api.api_keep_logs(\(id), \(token), ARRAY['big.log'], ARRAY[repeat('x', 3 * 1048576)])
                """, as: Int.self)
            let stored = try await fleet.scalar(
                """
                SELECT octet_length(contents) FROM cluster_logs WHERE cluster_id = \(id) AND name = 'collected-big.log'
                """, as: Int.self)
            #expect(big == 1 && stored == 1_048_576, "\(stored)")
            await #expect(throws: (any Error).self) {
                try await fleet.execute(
                    """
                    SELECT flotilla_api.api_keep_logs(
                        \(id), \(token), array(SELECT 'f' || i || '.log' FROM generate_series(1, 16) i),
                        array(SELECT repeat('y', 1048576) FROM generate_series(1, 16)))
                    """)
            }
            let afterCap = try await fleet.scalar(
                "SELECT count(*)::int FROM cluster_logs WHERE cluster_id = \(id) AND name LIKE 'collected-f%'",
                as: Int.self)
            #expect(afterCap == 0, "a call over the cap is refused whole")
        }
    }

    /// A journal per node (bootstrap too) that shows its deploy, and a bundle listing every node.
    static func expectEvidence(in folder: URL, ips: [String: [String]]) throws {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        for (role, name) in [("master", "master_0"), ("slave", "agent_0"), ("slave_public", "public_agent_0")] {
            for ip in ips[role, default: []] {
                let path = folder.appendingPathComponent("\(name)-\(ip)-journal.log").path
                let journal = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                #expect(journal.contains("dcos-setup") && journal.contains("deploy \(role)"), "\(path): \(journal)")
            }
        }
        #expect(files.contains { $0.hasPrefix("bootstrap-") && $0.hasSuffix("-journal.log") }, "\(files)")
        let bundle = try #require(files.first { $0.hasPrefix("diagnostics-") && $0.hasSuffix(".zip") }, "\(files)")
        let listing = Process()
        listing.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        listing.arguments = [
            "python3", "-c", "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
            folder.appendingPathComponent(bundle).path,
        ]
        let pipe = Pipe()
        listing.standardOutput = pipe
        try listing.run()
        let names = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        listing.waitUntilExit()
        #expect(names.contains("summaryReport.txt"), "\(names)")
        for (role, folderRole) in [("master", "master"), ("slave", "agent"), ("slave_public", "agent_public")] {
            for ip in ips[role, default: []] {
                #expect(names.contains("\(ip)_\(folderRole)/dcos-journal.log"), "\(names)")
            }
        }
    }

    @Test(
        """
        client run --collect-logs-on-failure: a failing command leaves every journal and a bundle, then the \
        cluster is destroyed
        """
    )
    func collectOnFailure() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run"] + Self.fastWorker)
            try fleet.start(["janitor", "--interval-seconds", "1"])
            let scratch = try fleet.makeScratchDirectory(suffix: "-evidence")
            let folder = scratch.appendingPathComponent("logs")
            // The command uses `client exec` with no id, token or key of its own: client run's
            // environment is enough.
            let probe = scratch.appendingPathComponent("uid")
            let client = fleet.bin.appendingPathComponent("client").path
            let run = try await fleet.run([
                "client", "run", "--nodes", "3", "--collect-logs-on-failure", folder.path, "--", "sh", "-c",
                "\"$0\" exec --sudo --node agent_0 -- id -u > \"$1\" && exit 7", client, probe.path,
            ])
            #expect(run.status == 7, "\(run.stderr)")
            #expect((try? String(contentsOf: probe, encoding: .utf8)) == "0\n", "\(run.stderr)")
            let id = try await fleet.scalar("SELECT id FROM clusters", as: String.self)
            let ips = try await fleet.withClient { client in
                var ips: [String: [String]] = [:]
                let rows = try await client.query(
                    "SELECT role, private_ip FROM nodes WHERE cluster_id = \(id)", logger: Fleet.logger)
                for try await (role, ip) in rows.decode((String, String).self) { ips[role, default: []].append(ip) }
                return ips
            }
            try Self.expectEvidence(in: folder, ips: ips)
            let destroyed = try await eventually("\(id) destroyed after the release", timeout: .seconds(120)) {
                try await fleet.state(of: id) == "destroyed"
            }
            let summary = await fleet.summary(id)
            #expect(destroyed, "\(summary)")
            try await fleet.expectNothingLeft(id)
        }
    }

    @Test(
        """
        tags: a request without the policy's required tags is refused with their names; custom and role tags \
        reach every resource kind, as the AWS CLI lists them
        """)
    func customTags() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run"] + Self.fastWorker)
            try await fleet.execute("UPDATE policy SET required_tags = '{cost-center,team}' WHERE owner = '*'")
            let before = try await fleet.rowCount()
            let refused = try await fleet.run(
                ["client", "request", "--nodes", "3", "--no-wait", "--custom-tag", "team=dcos"])
            #expect(refused.status == 1, "\(refused.stderr)")
            #expect(
                refused.stderr.contains("the policy requires the tags cost-center on every cluster")
                    && refused.stderr.contains("--custom-tag cost-center=VALUE"), "\(refused.stderr)")
            let reserved = try await fleet.run(
                ["client", "request", "--nodes", "3", "--no-wait", "--custom-tag", "aws:cost=1"])
            #expect(reserved.status == 64 && reserved.stderr.contains("aws:"), "\(reserved.stderr)")
            let own = try await fleet.run([
                "client", "request", "--nodes", "3", "--no-wait", "--custom-tag", "owner=me",
            ])
            #expect(own.status == 64 && own.stderr.contains("Flotilla's own"), "\(own.stderr)")
            // The server refuses the same, whoever calls it.
            let direct = try await fleet.run(
                [
                    "client", "request", "--nodes", "3", "--no-wait", "--custom-tag", "cost-center=1", "--custom-tag",
                    "team=x",
                    "--custom-tag", String(repeating: "k", count: 129) + "=v",
                ])
            #expect(direct.status == 64 && direct.stderr.contains("1 to 128"), "\(direct.stderr)")
            #expect(try await fleet.rowCount() == before, "nothing was recorded")

            let mark = "cc-" + Fleet.shortID()
            let request = try await fleet.run([
                "client", "request", "--nodes", "3", "--json", "--custom-tag", "cost-center=\(mark)",
                "--custom-tag", "team=dcos", "--master-tag", "tier=control", "--agent-tag", "tier=worker",
            ])
            try #require(request.status == 0, "\(request.stderr)\n\(fleet.workerLogs())")
            let id = try #require(try jsonObject(request.output)["id"] as? String)
            let described = try await Self.awsCLI(
                fleet,
                ["ec2", "describe-tags", "--filters", "Name=key,Values=cost-center", "Name=value,Values=\(mark)"])
            let tagged = described["Tags"] as? [[String: Any]] ?? []
            let kinds = Set(tagged.compactMap { $0["ResourceType"] as? String })
            #expect(
                kinds.isSuperset(of: ["instance", "volume", "network-interface", "security-group", "key-pair"]),
                "resource kinds with the cost-center tag: \(kinds.sorted())")
            let tiers = try await Self.awsCLI(fleet, ["ec2", "describe-tags", "--filters", "Name=key,Values=tier"])
            let byResource = Dictionary(
                (tiers["Tags"] as? [[String: Any]] ?? []).map {
                    ($0["ResourceId"] as? String ?? "", $0["Value"] as? String ?? "")
                },
                uniquingKeysWith: { a, _ in a })
            let instances = try await fleet.ec2().describeInstances(filters: [.tag("cluster", id)])
            for instance in instances {
                let role = instance.tags[key: "role"] ?? ""
                let want = role == "master" ? "control" : role == "slave" ? "worker" : nil
                #expect(byResource[instance.instanceID] == want, "\(role) \(instance.instanceID): \(byResource)")
                #expect(instance.tags[key: "team"] == "dcos" && instance.tags[key: "cost-center"] == mark)
            }
            #expect(instances.count == 4, "\(instances.map(\.instanceID))")
        }
    }

    static func shellWords(_ words: [String]) -> String {
        words.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
    }

    /// The AWS CLI against the emulator, with the fleet's credentials; its JSON answer.
    static func awsCLI(_ fleet: Fleet, _ arguments: [String]) async throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            [
                "aws", "--endpoint-url", fleet.environment["AWS_ENDPOINT_URL"] ?? "", "--region",
                fleet.environment["AWS_REGION"] ?? "", "--output", "json",
            ] + arguments
        process.environment = fleet.environment
        let run = try await process.runToCompletion()
        try #require(run.status == 0, "aws \(arguments.joined(separator: " ")): \(run.errors)")
        return try jsonObject(run.output)
    }

    @Test(
        """
        images: two of the allow-list, with their own SSH users and Docker versions, both reach ready; an unknown \
        image or region is refused at once
        """)
    func imagesAndRegions() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--concurrency", "2"] + Self.fastWorker)
            let environment = ProcessInfo.processInfo.environment
            let region = try #require(environment["FLOTILLA_TEST_AWS_REGION"])
            let centos = try #require(environment["FLOTILLA_TEST_AMI"])
            let user = try #require(environment["FLOTILLA_TEST_SSH_USER"])
            let alt = try #require(environment["FLOTILLA_TEST_SSH_USER_ALT"])
            // An image no other test names: its cloud-init's login is the second one, and it has no
            // Docker (the prerequisites install the image's Docker version).
            let ubuntu = "ami-dca37ea5"
            try ImageCatalogue.describe(ubuntu, sshUser: alt)
            let stub = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("scripts/fixtures/dcos-stub/stub.py")
            let plain = Process()
            plain.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            plain.arguments = ["python3", stub.path, "plain-image", ubuntu]
            let marked = try await plain.runToCompletion()
            try #require(marked.status == 0, "\(marked.errors)")
            try await fleet.execute(
                """
                INSERT INTO images (name, distribution, ssh_user, docker_version, amis) VALUES
                    ('centos7-docker19', 'CentOS 7', \(user), '19.03.15',
                     jsonb_build_object(\(region)::text, \(centos)::text)),
                    ('ubuntu-docker20', 'Ubuntu 16.04', \(alt), '20.10.21',
                     jsonb_build_object(\(region)::text, \(ubuntu)::text))
                """)

            let before = try await fleet.rowCount()
            let unknownImage = try await fleet.run(["client", "request", "--image", "nosuch", "--no-wait"])
            #expect(unknownImage.status == 1, "\(unknownImage.stderr)")
            #expect(
                unknownImage.stderr.contains("no image named nosuch (images: centos7-docker19, ubuntu-docker20"),
                "\(unknownImage.stderr)")
            let unknownRegion = try await fleet.run(["client", "request", "--region", "mars-north-1", "--no-wait"])
            #expect(
                unknownRegion.status == 1
                    && unknownRegion.stderr.contains("nobody builds clusters in region mars-north-1"),
                "\(unknownRegion.stderr)")
            #expect(try await fleet.rowCount() == before, "nothing was recorded")
            let listing = try await fleet.run(["client", "images", "--json"])
            let images = try jsonObject(listing.output)["images"] as? [[String: Any]] ?? []
            #expect(
                images.map { $0["name"] as? String } == ["centos7-docker19", "ubuntu-docker20"], "\(listing.output)")
            #expect(images.allSatisfy { ($0["regions"] as? [String]) == [region] }, "\(listing.output)")

            var held: [(String, String)] = []
            async let first = fleet.run(
                [
                    "client", "request", "--nodes", "1", "--image", "centos7-docker19", "--region", region, "--json",
                    "--timeout", "5m",
                ])
            async let second = fleet.run(
                ["client", "request", "--nodes", "1", "--image", "ubuntu-docker20", "--json", "--timeout", "5m"])
            for (run, image, login, ami, docker) in [
                (try await first, "centos7-docker19", user, centos, "19.03.15"),
                (try await second, "ubuntu-docker20", alt, ubuntu, "20.10.21"),
            ] {
                try #require(run.status == 0, "\(image): \(run.stderr)\n\(fleet.workerLogs())")
                let object = try jsonObject(run.output)
                let id = try #require(object["id"] as? String)
                let token = try #require(object["lease_token"] as? String)
                #expect(object["ssh_user"] as? String == login, "\(image): \(run.output)")
                let instances = try await fleet.ec2().describeInstances(filters: [.tag("cluster", id)])
                #expect(!instances.isEmpty && instances.allSatisfy { $0.imageID == ami }, "\(image): \(instances)")
                let version = try await fleet.run(
                    [
                        "client", "exec", id, "--lease-token", token, "--", "docker", "version", "--format",
                        "{{.Server.Version}}",
                    ])
                #expect(version.output == docker + "\n", "\(image): \(version.output) \(version.stderr)")
            }
        }
    }

    @Test(
        """
        before the install: --copy-to-master files are on the masters when the stub's preflight starts; \
        --node-setup runs as root on every node with its output kept; a failing setup fails the cluster with its log
        """)
    func beforeTheInstall() async throws {
        let keyPath = "/var/lib/dcos/pki/tls/CA/private/custom_ca.key"
        let dcosExisted = FileManager.default.fileExists(atPath: "/var/lib/dcos")
        defer {
            try? FileManager.default.removeItem(atPath: dcosExisted ? keyPath : "/var/lib/dcos")
        }
        try await Fleet.with { fleet in
            try fleet.start(["run"] + Self.fastWorker)
            let scratch = try fleet.makeScratchDirectory(suffix: "-setup")
            let secret = "key-" + UUID().uuidString
            let key = scratch.appendingPathComponent("ca.key")
            try Data(secret.utf8).write(to: key)
            let setup = scratch.appendingPathComponent("setup.sh")
            try Data(
                """
                echo "setup as uid $(id -u)"
                if [ -f \(keyPath) ]; then echo "ca key present"; fi

                """.utf8
            ).write(to: setup)
            let request = try await fleet.run([
                "client", "request", "--nodes", "3", "--json", "--timeout", "5m", "--copy-to-master",
                "\(key.path):\(keyPath)",
                "--node-setup", setup.path,
            ])
            try #require(request.status == 0, "\(request.stderr)\n\(fleet.workerLogs())")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)
            let nodes = object["nodes"] as? [[String: Any]] ?? []
            let master = try #require(nodes.first { $0["role"] as? String == "master" }?["private_ip"] as? String)

            // The stub's preflight on the master saw the key, with its contents.
            let digest = try await Self.sha256(key)
            let state = try #require(ProcessInfo.processInfo.environment["FLOTILLA_TEST_STUB_STATE"])
            let log = (try? String(contentsOfFile: "\(state)/nodes/\(master)/install.log", encoding: .utf8)) ?? ""
            let lines = log.split(separator: "\n").map(String.init)
            let seen = lines.firstIndex {
                $0.contains("preflight master flotilla-\(id): custom CA key \(keyPath) present (sha256 \(digest))")
            }
            let deployed = lines.firstIndex { $0.contains("deploy master flotilla-\(id): ok") }
            #expect(seen != nil && deployed != nil && seen! < deployed!, "\(log)")

            // The node setup's output is kept for every node, the master's with the file it wrote.
            let out = scratch.appendingPathComponent("logs")
            let logs = try await fleet.run(["client", "logs", id, "--out", out.path, "--lease-token", token])
            #expect(logs.status == 0, "\(logs.stderr)")
            for node in nodes {
                let ip = (node["public_ip"] as? String) ?? (node["private_ip"] as? String ?? "")
                let text =
                    (try? String(contentsOf: out.appendingPathComponent("node-setup-\(ip).log"), encoding: .utf8)) ?? ""
                #expect(text.contains("setup as uid 0"), "\(ip): \(text)")
                // The master's files come first, then its setup. (Every loopback node is this
                // machine: an agent may see the master's file too, so only masters are asked.)
                if node["role"] as? String == "master" {
                    #expect(text.contains("flotilla: wrote \(keyPath) (\(secret.utf8.count) bytes)"), "\(text)")
                    #expect(text.contains("ca key present"), "\(text)")
                }
            }

            // A setup that fails fails the cluster, and its output says why.
            let failing = scratch.appendingPathComponent("fail.sh")
            try Data("echo 'setup broke here' >&2\nexit 3\n".utf8).write(to: failing)
            let broken = try await fleet.run([
                "client", "request", "--nodes", "1", "--json", "--timeout", "5m", "--node-setup", failing.path,
            ])
            #expect(broken.status == 1, "\(broken.stderr)")
            let failed = try jsonObject(broken.output)
            #expect((failed["last_error"] as? String ?? "").contains("node setup failed"), "\(broken.output)")
            let failedID = try #require(failed["id"] as? String)
            // Kept with the cluster (its token goes with it once it is torn down, so read as the fleet).
            let text = try await fleet.scalar(
                """
                SELECT coalesce(string_agg(name || ': ' || contents, E'\\n'), '') FROM cluster_logs
                WHERE cluster_id = \(failedID) AND name LIKE 'node-setup-%'
                """, as: String.self)
            #expect(text.contains("setup broke here"), "\(text)")
        }
    }

    static func sha256(_ file: URL) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", file.path]
        let run = try await process.runToCompletion()
        return String(run.output.prefix(64))
    }

    @Test(
        """
        --provision-only gives bare nodes (ready, phase provisioned, no DC/OS); client install then installs on \
        them and the cluster is ready again with the expiry it had; a second install is refused
        """)
    func provisionOnlyThenInstall() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run"] + Self.fastWorker)
            let request = try await fleet.run([
                "client", "request", "--nodes", "3", "--provision-only", "--json", "--timeout", "5m",
            ])
            try #require(request.status == 0, "\(request.stderr)\n\(fleet.workerLogs())")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)
            #expect(object["state"] as? String == "ready" && object["phase"] as? String == "provisioned", "\(object)")
            let state = try #require(ProcessInfo.processInfo.environment["FLOTILLA_TEST_STUB_STATE"])
            func calls() -> [String] {
                ((try? String(contentsOfFile: "\(state)/calls.log", encoding: .utf8)) ?? "").split(separator: "\n")
                    .map(String.init).filter { $0.hasSuffix(" flotilla-\(id)") }
            }
            #expect(!calls().contains { $0.contains(" preflight ") || $0.contains(" deploy ") }, "\(calls())")
            // The nodes have their prerequisites: Docker answers on them.
            let docker = try await fleet.run(
                [
                    "client", "exec", id, "--lease-token", token, "--", "docker", "version", "--format",
                    "{{.Server.Version}}",
                ])
            #expect(docker.status == 0, "\(docker.stderr)")
            let expiry = try await fleet.scalar(
                "SELECT extract(epoch FROM expires_at)::float8 FROM clusters WHERE id = \(id)", as: Double.self)

            let installer = try #require(ProcessInfo.processInfo.environment["FLOTILLA_TEST_INSTALLER_URL"])
            // Expiry does not watch an install: one that could outlive the expiry is refused.
            try await fleet.execute("UPDATE clusters SET expires_at = now() + interval '5 minutes' WHERE id = \(id)")
            let soon = try await fleet.run(
                ["client", "install", id, "--lease-token", token, "--installer-url", installer, "--no-wait"])
            #expect(soon.status == 1 && soon.stderr.contains("too soon for an install"), "\(soon.stderr)")
            try await fleet.execute(
                "UPDATE clusters SET expires_at = to_timestamp(\(expiry)) WHERE id = \(id)")
            let install = try await fleet.run([
                "client", "install", id, "--lease-token", token, "--installer-url", installer, "--json", "--timeout",
                "5m",
            ])
            #expect(install.status == 0, "\(install.stderr)\n\(fleet.workerLogs())")
            let installed = try jsonObject(install.output)
            #expect(
                installed["state"] as? String == "ready" && installed["phase"] as? String == "ready", "\(installed)")
            let deploys = calls().filter { $0.contains(" deploy ") && $0.contains(" ok ") }
            #expect(deploys.count == 3, "one deploy per node: \(calls())")
            let after = try await fleet.scalar(
                "SELECT extract(epoch FROM expires_at)::float8 FROM clusters WHERE id = \(id)", as: Double.self)
            #expect(abs(after - expiry) < 1, "the expiry stays: \(expiry) → \(after)")
            let again = try await fleet.run(
                ["client", "install", id, "--lease-token", token, "--installer-url", installer, "--no-wait"])
            #expect(again.status == 1 && again.stderr.contains("has DC/OS installed already"), "\(again.stderr)")
            let status = try await fleet.run(["client", "status", id, "--lease-token", token])
            #expect(status.output.contains("DC/OS        2.2.0"), "\(status.output)")
        }
    }
}
