import AWSProvisioner
import AsyncHTTPClient
import Foundation
import NIOCore
import Queue
import TestSupport
import Testing

/// What operators see: `/metrics` of `worker run` and `worker janitor` (parsed whole by
/// prometheus_client's parser), JSON logs, `client cost`, and `worker web` in headless
/// Chromium. Real processes on the loopback stack.
@Suite("Observability", .serialized, .timeLimit(.minutes(10)))
struct ObservabilityTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The address a process logged (`metrics: http://…/metrics`, `web: http://…/`), from its
    /// standard error, text or JSON.
    static func loggedURL(_ process: Background, _ prefix: String) async throws -> String {
        var found: String?
        let logged = try await eventually(
            "\(process.arguments.joined(separator: " ")) logs its \(prefix) address", timeout: .seconds(60)
        ) {
            let text = process.stderrSoFar()
            guard let range = text.range(of: "\(prefix): http://") else { return false }
            let rest = text[range.upperBound...]
            found = "http://" + rest.prefix { !$0.isWhitespace && $0 != "\"" }
            return true
        }
        try #require(logged, "\(process.stderrSoFar().suffix(2000))")
        return try #require(found)
    }

    static func get(_ url: String) async throws -> (status: Int, body: String, contentType: String?) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        return (Int(response.status.code), String(buffer: body), response.headers.first(name: "content-type"))
    }

    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// Scrapes `/metrics` and parses the whole text with prometheus_client's parser.
    static func scrape(_ url: String) async throws -> [Sample] {
        let (status, body, type) = try await Self.get(url)
        try #require(status == 200)
        #expect(type?.hasPrefix("text/plain; version=0.0.4") == true, "\(type ?? "no content type")")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.root.appendingPathComponent("scripts/fixtures/parse-metrics.py").path]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        (process.standardInput, process.standardOutput, process.standardError) = (input, output, errors)
        try process.run()
        async let parsed = offPool { try output.fileHandleForReading.readToEnd() ?? Data() }
        async let complaints = offPool { try errors.fileHandleForReading.readToEnd() ?? Data() }
        try input.fileHandleForWriting.write(contentsOf: Data(body.utf8))
        try input.fileHandleForWriting.close()
        let (json, stderr) = try await (parsed, complaints)
        try await offPool { process.waitUntilExit() }
        try #require(process.terminationStatus == 0, "\(String(decoding: stderr, as: UTF8.self))\n\(body.prefix(3000))")
        let object = try jsonObject(String(decoding: json, as: UTF8.self))
        let samples = try #require(object["samples"] as? [[String: Any]])
        return samples.map { sample in
            Sample(
                name: sample["name"] as? String ?? "", labels: sample["labels"] as? [String: String] ?? [:],
                value: (sample["value"] as? NSNumber)?.doubleValue ?? .nan)
        }
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
            .map(\.value).reduce(0, +)
    }

    /// Makes the install of a cluster that is being provisioned fail: its worker is frozen
    /// (SIGSTOP) once the instances are launched, the stub is told to fail the master's next
    /// preflight, and the worker goes on (SIGCONT). The cluster ends `failed` with the
    /// master's journald log saved.
    static func failInstall(_ fleet: Fleet, _ id: String, worker: Process) async throws -> String {
        try await LifecycleTests.waitForInstances(fleet, id, count: 2, freezing: worker)
        defer { kill(worker.processIdentifier, SIGCONT) }
        let masters = try await fleet.ec2().describeInstances(filters: [.tag("cluster", id), .tag("role", "master")])
        let ip = try #require(masters.first?.privateIPAddress)
        let state = try #require(fleet.environment["FLOTILLA_TEST_STUB_STATE"], "run through ./scripts/test")
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: state).appendingPathComponent("fail"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("preflight \(ip) 1\n".utf8))
        try handle.close()
        return ip
    }

    @Test(
        "/metrics tracks a run (phases, outcomes, AWS, SSH, gauges), parses; JSON logs tell a story; cost counts hours"
    )
    func metricsLogsAndCost() async throws {
        try await Fleet.with { fleet in
            let worker = try fleet.startInBackground(
                ["worker", "run", "--worker-id", "w1", "--log-level", "debug", "--log-format", "json"]
                    + LifecycleTests.fastWorker)
            let janitor = try fleet.startInBackground([
                "worker", "janitor", "--interval-seconds", "1", "--log-level", "info",
            ])
            let metrics = try await Self.loggedURL(worker, "metrics")
            let janitorMetrics = try await Self.loggedURL(janitor, "metrics")
            #expect(metrics.hasPrefix("http://127.0.0.1:") && metrics.hasSuffix("/metrics"))

            let before = try await Self.scrape(metrics)
            // The fleet-wide gauges come from the janitor only (N workers would export N copies).
            #expect(!before.contains { $0.name == "flotilla_clusters" }, "worker run exports its own metrics only")
            let fleetBefore = try await Self.scrape(janitorMetrics)
            #expect(Self.value(fleetBefore, "flotilla_jobs", ["kind": "provision", "state": "queued"]) == 0)
            #expect(fleetBefore.contains { $0.name == "flotilla_clusters" && $0.labels["state"] == "ready" })

            // A provision: the phase histogram, the outcome counter, AWS calls, SSH connections.
            let keyPath = LifecycleTests.keyPath(fleet)
            let request = try await fleet.run(["client", "request", "--nodes", "1", "--json", "--key-out", keyPath])
            try #require(request.status == 0, "\(request.stderr)")
            let ready = try jsonObject(request.output)
            let id = try #require(ready["id"] as? String)
            let token = try #require(ready["lease_token"] as? String)
            let after = try await Self.scrape(metrics)
            var timings: [String] = []
            for phase in [
                "key pair", "security group", "instances", "instances running", "ssh", "prerequisites", "bootstrap",
                "preflight", "deploy", "postflight",
            ] {
                let count =
                    Self.value(after, "flotilla_provision_phase_seconds_count", ["phase": phase])
                    - Self.value(before, "flotilla_provision_phase_seconds_count", ["phase": phase])
                #expect(count == 1, "phase \(phase) timed once, got \(count)")
                let seconds = Self.value(after, "flotilla_provision_phase_seconds_sum", ["phase": phase])
                timings.append("\(phase) \(String(format: "%.2f", seconds)) s")
            }
            print(
                "measured: provisioning phases of a 1-node cluster, from /metrics: \(timings.joined(separator: ", "))")
            #expect(Self.value(after, "flotilla_cluster_outcomes_total", ["outcome": "ready"]) == 1)
            #expect(
                Self.value(after, "flotilla_aws_calls_total", ["action": "RunInstances", "code": "ok"]) >= 2,
                "bootstrap and cluster launches")
            #expect(Self.value(after, "flotilla_ssh_connections_total") >= 2)
            #expect(Self.value(after, "flotilla_job_claim_to_start_seconds_count", ["kind": "provision"]) >= 1)
            // The job's success is recorded just after the cluster is marked ready, which is what
            // the client waited for.
            let completed = try await eventually("the provision job's completion is counted", timeout: .seconds(30)) {
                Self.value(
                    try await Self.scrape(metrics), "flotilla_jobs_finished_total",
                    ["kind": "provision", "outcome": "completed"]) == 1
            }
            #expect(completed)
            let fleetAfter = try await Self.scrape(janitorMetrics)
            #expect(Self.value(fleetAfter, "flotilla_clusters", ["state": "ready"]) == 1)
            // History is the workers' counters, not a gauge: a scrape never counts finished jobs.
            #expect(!fleetAfter.contains { $0.name == "flotilla_jobs" && $0.labels["state"] == "succeeded" })
            #expect(Self.value(fleetAfter, "flotilla_jobs", ["kind": "provision", "state": "running"]) == 0)
            #expect(Self.value(fleetAfter, "flotilla_instance_hours_30d", ["owner": Fleet.clientLogin]) > 0)

            // A failed install: the reason counter moves.
            let failing = try await LifecycleTests.requestNoWait(fleet, nodes: 1)
            _ = try await Self.failInstall(fleet, failing.id, worker: worker.process)
            let failed = try await eventually("\(failing.id) fails", timeout: .seconds(120)) {
                ["failed", "tearing_down", "destroyed"].contains(try await fleet.state(of: failing.id))
            }
            let summary = await fleet.summary(failing.id)
            try #require(failed, "\(summary)")
            let afterFailure = try await Self.scrape(metrics)
            let outcomes = afterFailure.filter { $0.name == "flotilla_cluster_outcomes_total" }
            #expect(
                Self.value(
                    afterFailure, "flotilla_cluster_outcomes_total", ["outcome": "failed", "reason": "install_failed"])
                    == 1,
                "\(outcomes.map { "\($0.labels) \($0.value)" })"
            )

            // The janitor's own /metrics: the database gauges and its process's counters.
            let janitorSamples = try await Self.scrape(janitorMetrics)
            #expect(janitorSamples.contains { $0.name == "flotilla_key_pair_deletions_pending" })

            // Release, teardown: destroyed counted; the bootstrap node is counted in the cost.
            let trigger = Date()
            let release = try await fleet.run(["client", "release", id, "--lease-token", token])
            try #require(release.status == 0, "\(release.stderr)")
            try await LifecycleTests.expectDestroyed(fleet, id, path: "release after the metrics run", since: trigger)
            try await LifecycleTests.expectDestroyed(fleet, failing.id, path: "failed install", since: trigger)
            let end = try await Self.scrape(metrics)
            #expect(Self.value(end, "flotilla_cluster_outcomes_total", ["outcome": "destroyed"]) == 2)
            #expect(Self.value(end, "flotilla_aws_calls_total", ["action": "TerminateInstances", "code": "ok"]) >= 2)

            // JSON logs: every line is one object; the cluster's lines carry its id, and among
            // them are AWS calls (aws.action) and SSH commands (ssh.host).
            let lines = worker.stderrSoFar().split(separator: "\n")
            var ours: [[String: Any]] = []
            for line in lines {
                let object = try jsonObject(String(line))
                #expect(object["time"] is String && object["level"] is String && object["message"] is String)
                if object["cluster.id"] as? String == id { ours.append(object) }
            }
            #expect(ours.contains { $0["aws.action"] as? String == "RunInstances" }, "an AWS call of \(id) in its logs")
            #expect(ours.contains { $0["ssh.host"] is String }, "an SSH command of \(id) in its logs")
            #expect(ours.contains { ($0["message"] as? String)?.contains("cluster ready") == true })
            #expect(ours.contains { $0["job.id"] != nil })

            // client cost: hours per owner and type, money with a price table, bad input refused.
            let prices = FileManager.default.temporaryDirectory.appendingPathComponent(
                "e2e-prices-\(fleet.database).txt")
            try Data("# USD per hour\nm4.large 0.10\n".utf8).write(to: prices)
            defer { try? FileManager.default.removeItem(at: prices) }
            let cost = try await fleet.run(["client", "cost", "--since", "1h", "--json", "--prices", prices.path])
            try #require(cost.status == 0, "\(cost.stderr)")
            let report = try jsonObject(cost.output)
            let costLines = try #require(report["lines"] as? [[String: Any]])
            let mine = costLines.filter { $0["owner"] as? String == Fleet.clientLogin }
            let instances = mine.compactMap { $0["instances"] as? Int }.reduce(0, +)
            #expect(instances == 2, "the master and the bootstrap node; the failed cluster never became ready: \(mine)")
            let hours = mine.compactMap { $0["instance_hours"] as? Double }.reduce(0, +)
            #expect(hours > 0 && hours < 0.5, "\(hours)")
            let priced = mine.first { $0["instance_type"] as? String == "m4.large" }
            let pricedHours = try #require(priced?["instance_hours"] as? Double)
            let pricedCost = try #require(priced?["cost"] as? Double)
            #expect(abs(pricedCost - pricedHours * 0.10) < 1e-9, "\(pricedCost) for \(pricedHours) h at 0.10")
            let text = try await fleet.run(["client", "cost", "--since", "1h"])
            #expect(
                text.status == 0 && text.output.contains(Fleet.clientLogin) && text.output.contains("INSTANCE-HOURS"),
                "\(text.output)")
            let badSpan = try await fleet.run(["client", "cost", "--since", "soon"])
            #expect(badSpan.status == 64 && badSpan.stderr.contains("--since"), "\(badSpan.stderr)")
            try Data("m4.large cheap\n".utf8).write(to: prices)
            let badPrices = try await fleet.run(["client", "cost", "--prices", prices.path])
            #expect(badPrices.status == 1 && badPrices.stderr.contains("line 1"), "\(badPrices.stderr)")
            let taken = try await fleet.run([
                "worker", "run", "--metrics-address",
                metrics.replacingOccurrences(of: "http://", with: "").replacingOccurrences(of: "/metrics", with: ""),
                "--kinds", "noop",
            ])
            #expect(
                taken.status == 1 && taken.stderr.contains("cannot serve metrics on")
                    && taken.stderr.contains("FLOTILLA_METRICS_ADDRESS"),
                "\(taken.stderr)")
            let badFormat = try await fleet.run(["client", "list"], environment: ["FLOTILLA_LOG_FORMAT": "yaml"])
            #expect(badFormat.status == 64 && badFormat.stderr.contains("FLOTILLA_LOG_FORMAT"), "\(badFormat.stderr)")
        }
    }

    @Test(
        "worker web in headless Chromium: a cluster appears, turns ready live; a failed install's log shows; no secrets"
    )
    func webPage() async throws {
        try await Fleet.with { fleet in
            // Logins that can read secrets are refused: here the database's owner.
            let refused = try await fleet.run(["worker", "web", "--address", "127.0.0.1:0"])
            #expect(refused.status == 1 && refused.stderr.contains("refuses login"), "\(refused.stderr)")

            try await fleet.createLogin("e2e_operator", in: "flotilla_operator")
            let web = try fleet.startInBackground(
                ["worker", "web", "--address", "127.0.0.1:0", "--log-level", "info"],
                environment: ["PGUSER": "e2e_operator"])
            let url = try await Self.loggedURL(web, "web")
            let worker = try fleet.startInBackground(
                ["worker", "run", "--worker-id", "w1"] + LifecycleTests.fastWorker)
            try fleet.start(["janitor", "--interval-seconds", "1"])

            // The page itself: escaped, self-contained, locked down.
            let page = try await Self.get(url)
            #expect(page.status == 200 && page.body.contains("<h2>Clusters</h2>"))
            let missing = try await Self.get(url + "clusters/c-0000000000")
            #expect(missing.status == 404)
            #expect(!page.body.contains("http://") && !page.body.contains("https://"), "nothing fetched from elsewhere")

            let artefacts = Self.root.appendingPathComponent(".build/artefacts")
            try FileManager.default.createDirectory(at: artefacts, withIntermediateDirectories: true)
            let screenshot = artefacts.appendingPathComponent("web-page.png")
            let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-secrets-\(fleet.database)")
            FileManager.default.createFile(
                atPath: secrets.path, contents: Data(), attributes: [.posixPermissions: 0o600])
            defer { try? FileManager.default.removeItem(at: secrets) }
            let browser = try BrowserSession(url: url, secrets: secrets.path, screenshot: screenshot.path)
            defer { browser.stop() }
            let loaded = try await browser.read()
            try #require(loaded.hasPrefix("loaded Flotilla fleet"), "\(loaded)\n\(browser.errors())")

            // A cluster appears and turns ready while the page stays loaded.
            let keyPath = LifecycleTests.keyPath(fleet)
            let hostile = "<img src=x onerror=alert(1)> & \"quoted\""
            let request = try await fleet.run([
                "client", "request", "--nodes", "1", "--no-wait", "--json", "--label", hostile,
            ])
            try #require(request.status == 0, "\(request.stderr)")
            let first = (
                id: try #require(try jsonObject(request.output)["id"] as? String),
                token: try #require(try jsonObject(request.output)["lease_token"] as? String)
            )
            let readyRow = try await browser.send("wait-row \(first.id) ready")
            #expect(readyRow.hasPrefix("ok \(first.id) ready"), "\(readyRow)")
            let key = try await fleet.run(["client", "key", first.id, "--lease-token", first.token, "--out", keyPath])
            try #require(key.status == 0, "\(key.stderr)")

            // What a requester typed is shown as text, never as markup.
            let clusterPage = try await Self.get(url + "clusters/\(first.id)")
            #expect(clusterPage.body.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot;"))
            #expect(!clusterPage.body.contains("<img"), "the label is escaped")
            #expect(try await browser.send("open /clusters/\(first.id)") == "ok")
            #expect(try await browser.send("expect-text \(hostile)") == "ok", "the browser shows the label as text")
            #expect(try await browser.send("open /") == "ok")

            // A failed install, and its journald log on the cluster's page.
            let second = try await LifecycleTests.requestNoWait(fleet, nodes: 1)
            let ip = try await Self.failInstall(fleet, second.id, worker: worker.process)
            let failedRow = try await browser.send("wait-row \(second.id) failed,tearing_down,destroyed")
            #expect(failedRow.hasPrefix("ok"), "\(failedRow)")
            #expect(try await browser.send("open /clusters/\(second.id)") == "ok")
            #expect(try await browser.send("expect-text preflight-\(ip)-journald.log") == "ok")
            #expect(try await browser.send("expect-text injected failure: preflight on \(ip)") == "ok")

            // No key and no token in anything the browser saw.
            let keyText = try String(contentsOfFile: keyPath, encoding: .utf8)
            let secretLines =
                [first.token, second.token]
                + keyText.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("-----") }
            try Data(secretLines.joined(separator: "\n").utf8).write(to: secrets)
            #expect(try await browser.send("open /") == "ok")
            let clean = try await browser.send("check-secrets")
            #expect(clean.hasPrefix("ok"), "\(clean)")
            #expect(try await browser.send("screenshot").hasPrefix("ok"))
            #expect(FileManager.default.fileExists(atPath: screenshot.path))

            try await PoolTests.cleanUp(fleet, holding: [(first.id, first.token)], path: "web page clean-up")
            try await LifecycleTests.expectDestroyed(fleet, second.id, path: "failed install", since: Date())
            try? FileManager.default.removeItem(atPath: keyPath)
        }
    }
}

/// `scripts/fixtures/browser-check.py` as a child: one command per line in, one answer per line out.
/// A Python fixture from scripts/fixtures spoken to by lines: commands on its standard input,
/// answers on its standard output, its errors kept in a file.
class FixtureProcess: @unchecked Sendable {
    // @unchecked: used by one test task at a time.
    let process = Process()
    let input = Pipe()
    private let output = Pipe()
    let errorFile: URL
    private var buffer = Data()

    init(script: String, arguments: [String], errorFile: URL) throws {
        self.errorFile = errorFile
        _ = FileManager.default.createFile(atPath: self.errorFile.path, contents: Data())
        self.process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        self.process.arguments =
            ["python3", ObservabilityTests.root.appendingPathComponent("scripts/fixtures/\(script)").path] + arguments
        self.process.standardInput = self.input
        self.process.standardOutput = self.output
        self.process.standardError = try FileHandle(forWritingTo: self.errorFile)
        try self.process.run()
    }

    /// The next answer line (a command may take up to about two minutes).
    func read() async throws -> String {
        let handle = self.output.fileHandleForReading
        while true {
            if let newline = self.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: self.buffer[..<newline], as: UTF8.self)
                self.buffer.removeSubrange(...newline)
                return line
            }
            let chunk = try await offPool { handle.availableData }
            if chunk.isEmpty { return "fail the fixture ended: \(self.errors())" }
            self.buffer.append(chunk)
        }
    }

    func errors() -> String {
        String(
            decoding: (FileManager.default.contents(atPath: self.errorFile.path) ?? Data()).suffix(3000), as: UTF8.self)
    }
}

final class BrowserSession: FixtureProcess, @unchecked Sendable {
    init(url: String, secrets: String, screenshot: String) throws {
        try super.init(
            script: "browser-check.py", arguments: [url, secrets, screenshot],
            errorFile: URL(fileURLWithPath: secrets + ".browser.err"))
    }

    func send(_ command: String) async throws -> String {
        try self.input.fileHandleForWriting.write(contentsOf: Data((command + "\n").utf8))
        return try await self.read()
    }

    func stop() {
        try? self.input.fileHandleForWriting.write(contentsOf: Data("quit\n".utf8))
        try? self.input.fileHandleForWriting.close()
        if self.process.isRunning {
            DispatchQueue.global().asyncAfter(deadline: .now() + 10) { [process] in
                if process.isRunning { process.terminate() }
            }
        }
        try? FileManager.default.removeItem(at: self.errorFile)
    }
}

/// `scripts/fixtures/fault-proxy.py` in front of the emulator, with `rules` (the proxy's JSON
/// rule list) in place. Point a binary's `AWS_ENDPOINT_URL` at ``endpoint``; ``stop()`` ends it.
final class FaultProxy: Sendable {
    let fixture: FixtureProcess
    let endpoint: String

    init(rules: String) async throws {
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flotilla-fault-proxy-\(UUID().uuidString.prefix(8)).err")
        let upstream = try #require(ProcessInfo.processInfo.environment["FLOTILLA_TEST_AWS_ENDPOINT"])
        self.fixture = try FixtureProcess(script: "fault-proxy.py", arguments: [upstream], errorFile: errors)
        let ready = try await self.fixture.read()
        let port = try #require(ready.hasPrefix("PORT ") ? Int(ready.dropFirst(5)) : nil, "\(ready)")
        self.endpoint = "http://127.0.0.1:\(port)"
        var request = HTTPClientRequest(url: "\(self.endpoint)/__fault__/rules")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: rules))
        let answer = try await Fleet.http.execute(request, timeout: .seconds(10))
        try #require(answer.status == .ok, "the fault proxy refused the rules: \(self.fixture.errors())")
    }

    func stop() {
        try? self.fixture.input.fileHandleForWriting.close()
        try? FileManager.default.removeItem(at: self.fixture.errorFile)
    }
}
