import AWSProvisioner
import Foundation
import TestSupport
import Testing

/// `worker canary`: a first real run in one command (issue 25), here against the emulator and
/// the loopback nodes, as an operator would start it against their own account.
@Suite("worker canary: plan, one master, consoles, install, teardown", .serialized, .timeLimit(.minutes(15)))
struct CanaryTests {
    /// The canary's cluster id, from its first line (`cluster canary-… in REGION`).
    static func clusterID(_ output: String) -> String? {
        output.firstMatch(of: #/cluster (canary-[0-9a-f]+) in /#).map { String($0.1) }
    }

    static func folder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent(
            "flotilla-canary-test-\(UUID().uuidString.prefix(8))")
    }

    @Test("a canary goes to ready and tears down; it reads the console, times each phase, keeps clean AWS answers")
    func readyAndTornDown() async throws {
        try await Fleet.with { fleet in
            let out = Self.folder()
            defer { try? FileManager.default.removeItem(at: out) }
            let run = try await fleet.run(["worker", "canary", "--out", out.path])
            print("worker canary:\n\(run.output)")
            #expect(run.status == 0, "\(run.output)\n\(run.stderr)")
            let id = try #require(Self.clusterID(run.output), "\(run.output)")
            for expected in [
                "every call would be allowed", "cloud-init authorized", "(the cluster's key)", "ready: bootstrap ",
                "torn down: 2 instances", "nothing tagged \(id) is left", "Phases:", "plan and dry run", "ssh",
                "prerequisites", "deploy", "postflight", "teardown", "total",
            ] {
                #expect(run.output.contains(expected), "'\(expected)' in:\n\(run.output)")
            }
            let left = try await fleet.remaining(id)
            #expect(left.isEmpty, "\(left)")

            // The AWS answers, one file each, with no credential and no key material.
            let answers = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("aws").path)
            for action in ["DescribeImages", "RunInstances", "GetConsoleOutput", "ImportKeyPair", "TerminateInstances"]
            {
                #expect(answers.contains { $0.contains("-\(action)-") }, "no \(action) answer in \(answers.sorted())")
            }
            let secret = try #require(fleet.environment["AWS_SECRET_ACCESS_KEY"])
            for name in answers {
                let text = try String(contentsOf: out.appendingPathComponent("aws/\(name)"), encoding: .utf8)
                #expect(!text.contains(secret), "\(name) holds the secret key")
                #expect(!text.contains("PRIVATE KEY") && !text.contains("ssh-ed25519 AAAA"), "\(name) holds a key")
            }
            let consoles = try FileManager.default.contentsOfDirectory(atPath: out.path).filter {
                $0.hasPrefix("console-i-")
            }
            #expect(consoles.count == 2, "\(consoles)")
        }
    }

    @Test("an image that cannot read its key with tokens required: the console says so, the canary stops at once")
    func noKeyStopsAtOnce() async throws {
        try await Fleet.with { fleet in
            let out = Self.folder()
            defer { try? FileManager.default.removeItem(at: out) }
            let started = ContinuousClock.now
            let run = try await fleet.run(
                ["worker", "canary", "--out", out.path], environment: ["FLOTILLA_METADATA_TOKENS": "required"])
            let took = ContinuousClock.now - started
            print("measured: canary with no key stopped after \(took)\n\(run.output)")
            #expect(run.status == 1, "\(run.output)\n\(run.stderr)")
            #expect(run.output.contains("authorized no SSH key, so SSH will never open"), "\(run.output)")
            #expect(run.output.contains("no authorized SSH keys") || run.output.contains("Giving up on md"))
            #expect(!run.output.contains("ready: "))
            let id = try #require(Self.clusterID(run.output))
            #expect(run.output.contains("nothing tagged \(id) is left"), "\(run.output)")
            #expect(try await fleet.remaining(id).isEmpty)
        }
    }

    @Test("a Marketplace image nobody subscribed to: exit 2, nothing created")
    func marketplaceRefused() async throws {
        try await Fleet.with { fleet in
            // An image no other test names (a Windows SQL Server image of the emulator's catalogue).
            let image = "ami-86ee3cff"
            try ImageCatalogue.describe(image, marketplace: ("b5h9x0f4l8n1j3p6q2r7t0v9c", false))
            let out = Self.folder()
            defer { try? FileManager.default.removeItem(at: out) }
            let run = try await fleet.run(
                ["worker", "canary", "--out", out.path], environment: ["FLOTILLA_AMI": image])
            #expect(run.status == 2, "\(run.output)\n\(run.stderr)")
            #expect(run.output.contains("OptInRequired") && run.output.contains("nothing was created"), "\(run.output)")
            let id = try #require(Self.clusterID(run.output))
            #expect(try await fleet.remaining(id).isEmpty)
        }
    }

    @Test(
        "Ctrl-C mid-deploy: exit 130, the canary tears down all it made; a second Ctrl-C or a SIGTERM does not stop it"
    )
    func interruptedTearsDown() async throws {
        try await Fleet.with { fleet in
            let holds = StubHolds(
                stubState: URL(fileURLWithPath: try #require(fleet.environment["FLOTILLA_TEST_STUB_STATE"])))
            let out = Self.folder()
            defer { try? FileManager.default.removeItem(at: out) }
            // The fault proxy slows the teardown's first TerminateInstances (throttled after 4 s,
            // then retried), so the second signal lands while the teardown runs.
            let proxy = try await FaultProxy(
                rules: """
                    [{"action": "TerminateInstances", "times": 1, "status": 503, "code": "RequestLimitExceeded",
                      "message": "Request limit exceeded.", "delay": 4}]
                    """)
            defer { proxy.stop() }
            let canary = try fleet.startInBackground(
                ["worker", "canary", "--out", out.path], environment: ["AWS_ENDPOINT_URL": proxy.endpoint])
            var id = ""
            try await eventually("the canary named its cluster") {
                id = Self.clusterID(canary.stdoutSoFar()) ?? ""
                return !id.isEmpty
            }
            try holds.add("deploy", "flotilla-\(id)")
            defer { try? holds.remove("deploy", "flotilla-\(id)") }
            try await eventually("deploy held", timeout: .seconds(400)) {
                canary.stdoutSoFar().contains("deploy: ")
                    && (try? String(
                        contentsOfFile: try #require(fleet.environment["FLOTILLA_TEST_STUB_STATE"]) + "/calls.log",
                        encoding: .utf8))?.contains("hold deploy waiting flotilla-\(id)") == true
            }
            canary.send(SIGINT)
            try await eventually("the teardown terminating the instances", timeout: .seconds(60)) {
                canary.stdoutSoFar().contains("terminating ")
            }
            canary.send(SIGINT)
            canary.send(SIGTERM)
            let run = try #require(await canary.finish(within: .seconds(300)), "the canary did not end")
            #expect(run.status == 130, "\(run.output)\n\(run.stderr)")
            #expect(run.output.contains("interrupted; tearing down what was made"), "\(run.output)")
            #expect(run.output.contains("interrupted again: the teardown goes on"), "\(run.output)")
            #expect(run.output.contains("terminated again: the teardown goes on"), "\(run.output)")
            #expect(run.output.contains("nothing tagged \(id) is left"), "\(run.output)")
            #expect(try await fleet.remaining(id).isEmpty)
        }
    }
}
