import Foundation
import TestSupport
import Testing

/// Issue 25: remote work outlives the worker. The stub installer stops a step in its middle
/// while `STATE/hold` lists it (scripts/fixtures/dcos-stub/README.md); the worker that started
/// the step is then SIGKILLed, another takes the job, and the step goes on.
@Suite("Installs survive the fleet: workers cut inside remote steps", .serialized, .timeLimit(.minutes(20)))
struct InterruptionTests {
    static let fastWorker = FleetTests.fastWorker

    /// The stub's hold file (STATE/hold) of the fleet's stack.
    static func holds(_ fleet: Fleet) throws -> StubHolds {
        let state = try #require(fleet.environment["FLOTILLA_TEST_STUB_STATE"], "run through ./scripts/test")
        return StubHolds(stubState: URL(fileURLWithPath: state))
    }

    /// The stub's per-node calls of one cluster: `IP PHASE ARG OUTCOME CLUSTER` lines.
    static func calls(_ fleet: Fleet, cluster name: String) throws -> [String] {
        let state = try #require(fleet.environment["FLOTILLA_TEST_STUB_STATE"])
        let text = (try? String(contentsOfFile: state + "/calls.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init).filter { $0.hasSuffix(" \(name)") }
    }

    @Test("a worker SIGKILLed in the middle of every remote step: the clusters end ready, one install per node")
    func killedInsideEveryStep() async throws {
        try await Fleet.with { fleet in
            let holds = try Self.holds(fleet)
            // Two clusters, each cut in three of the six steps, in three rounds: the kills of a
            // round fall in one step of each. (A SIGKILLed worker's job counts an attempt when its
            // lease runs out; a job has 5, so one cluster cut six times would fail for that alone.)
            let rounds = [("prereqs", "genconf"), ("serve", "preflight"), ("deploy", "postflight")]
            var clusters: [(id: String, token: String, phases: [String])] = []
            for side in 0..<2 {
                let request = try await fleet.run(["client", "request", "--nodes", "1", "--no-wait", "--json"])
                try #require(request.status == 0, "\(request.stderr)")
                let object = try jsonObject(request.output)
                let id = try #require(object["id"] as? String)
                let phases = rounds.map { side == 0 ? $0.0 : $0.1 }
                clusters.append((id, try #require(object["lease_token"] as? String), phases))
                for phase in phases { try holds.add(phase, "flotilla-\(id)") }
            }
            defer {
                for cluster in clusters {
                    for phase in cluster.phases { try? holds.remove(phase, "flotilla-\(cluster.id)") }
                }
            }

            // Info logs: the adoption of each step is read from them below.
            let info = ["FLOTILLA_LOG_LEVEL": "info"]
            var worker = try fleet.start(["run", "--worker-id", "w0"] + Self.fastWorker, environment: info)
            for round in 0..<rounds.count {
                for cluster in clusters {
                    let phase = cluster.phases[round]
                    let held = try await eventually("\(cluster.id) held in \(phase)", timeout: .seconds(400)) {
                        let state = try await fleet.state(of: cluster.id)
                        guard state != "failed" else { return true }
                        return try Self.calls(fleet, cluster: "flotilla-\(cluster.id)").contains {
                            $0.contains(" hold \(phase) waiting ")
                        }
                    }
                    let state = try await fleet.state(of: cluster.id)
                    let calls = try Self.calls(fleet, cluster: "flotilla-\(cluster.id)")
                    try #require(
                        held && state != "failed",
                        """
                        \(cluster.id) (\(state)) never reached \(phase) in round \(round)
                        calls: \(calls.joined(separator: "\n"))
                        \(fleet.workerLogs(last: 20_000))
                        """)
                }
                await fleet.stopProcess(worker, signal: SIGKILL, timeout: .seconds(10))
                // The steps go on while no worker is there, and the next worker finds them.
                for cluster in clusters { try holds.remove(cluster.phases[round], "flotilla-\(cluster.id)") }
                worker = try fleet.start(["run", "--worker-id", "w\(round + 1)"] + Self.fastWorker, environment: info)
            }
            for cluster in clusters {
                let wait = try await fleet.run(["client", "wait", cluster.id, "--json", "--timeout", "8m"])
                #expect(wait.status == 0, "\(wait.stderr)\n\(fleet.workerLogs())")
                let name = "flotilla-\(cluster.id)"
                let calls = try Self.calls(fleet, cluster: name)
                let nodes = try await fleet.scalar(
                    """
                    SELECT coalesce(string_agg(private_ip, ' '), '') FROM nodes
                    WHERE cluster_id = \(cluster.id) AND role <> 'bootstrap'
                    """, as: String.self
                ).split(separator: " ").map(String.init)
                #expect(nodes.count == 1)
                for ip in nodes {
                    // Exactly one install and one preflight: no step ran twice, none was refused.
                    let mine = calls.filter { $0.hasPrefix("\(ip) ") }
                    #expect(mine.filter { $0.contains(" deploy ") && $0.contains(" ok ") }.count == 1, "\(ip): \(mine)")
                    #expect(
                        mine.filter { $0.contains(" preflight ") && $0.contains(" ok ") }.count == 1, "\(ip): \(mine)")
                    #expect(!mine.contains { $0.contains(" deploy ") && $0.contains(" fail ") }, "\(ip): \(mine)")
                }
                #expect(calls.filter { $0.contains(" genconf bootstrap ok ") }.count == 1, "\(calls)")
                for phase in cluster.phases {
                    #expect(calls.contains { $0.contains(" hold \(phase) released ") }, "\(phase) never held: \(calls)")
                }
            }
            // Each cut step was adopted by the next worker (waited for, or collected), not redone.
            let logs = fleet.workerLogs(last: 200_000)
            for step in ["prerequisites", "genconf", "serve", "preflight", "deploy", "postflight"] {
                let adopted = logs.range(
                    of: step + #" on [0-9.]+: already (running|finished)"#, options: .regularExpression)
                #expect(adopted != nil, "no later worker adopted \(step)")
            }

            try fleet.start(["janitor", "--interval-seconds", "1"])
            for cluster in clusters {
                #expect(
                    try await fleet.run(["client", "release", cluster.id, "--lease-token", cluster.token]).status == 0)
            }
            for cluster in clusters {
                try await eventually("\(cluster.id) destroyed") { try await fleet.state(of: cluster.id) == "destroyed" }
                let left = try await fleet.remaining(cluster.id)
                #expect(left.instances == 0 && left.groups == 0 && left.keys == 0)
            }
        }
    }

    @Test("a rolling restart: every worker SIGTERMed and replaced while 6 clusters stand in 6 phases; all 6 end ready")
    func rollingRestart() async throws {
        try await Fleet.with { fleet in
            let holds = try Self.holds(fleet)
            let phases = ["prereqs", "genconf", "serve", "preflight", "deploy", "postflight"]
            var clusters: [(id: String, token: String, phase: String)] = []
            defer { for cluster in clusters { try? holds.remove(cluster.phase, "flotilla-\(cluster.id)") } }
            // Each cluster stops in its own phase.
            for phase in phases {
                let request = try await fleet.run(["client", "request", "--nodes", "1", "--no-wait", "--json"])
                try #require(request.status == 0, "\(request.stderr)")
                let object = try jsonObject(request.output)
                let id = try #require(object["id"] as? String)
                clusters.append((id, try #require(object["lease_token"] as? String), phase))
                try holds.add(phase, "flotilla-\(id)")
            }
            let old = try (0..<2).map {
                try fleet.start(["run", "--worker-id", "old\($0)", "--concurrency", "4"] + Self.fastWorker)
            }
            for cluster in clusters {
                try await eventually("\(cluster.id) held in \(cluster.phase)", timeout: .seconds(400)) {
                    try Self.calls(fleet, cluster: "flotilla-\(cluster.id)").contains {
                        $0.contains(" hold \(cluster.phase) waiting ")
                    }
                }
            }
            // Every worker is told to stop at once, as a rolling update of the fleet does; each
            // hands its jobs back within the default grace period.
            let stopping = ContinuousClock.now
            for worker in old { fleet.send(SIGTERM, to: worker) }
            for worker in old { await fleet.stopProcess(worker, timeout: .seconds(15)) }
            let took = ContinuousClock.now - stopping
            print("measured: 2 workers holding 6 jobs in remote steps exited \(took) after SIGTERM")
            for index in 0..<2 {
                try fleet.start(["run", "--worker-id", "new\(index)", "--concurrency", "4"] + Self.fastWorker)
            }
            for cluster in clusters { try holds.remove(cluster.phase, "flotilla-\(cluster.id)") }
            for cluster in clusters {
                let wait = try await fleet.run(["client", "wait", cluster.id, "--json", "--timeout", "8m"])
                #expect(wait.status == 0, "\(cluster.id) (\(cluster.phase)): \(wait.stderr)\n\(fleet.workerLogs())")
                let installs = try Self.calls(fleet, cluster: "flotilla-\(cluster.id)").filter {
                    $0.contains(" deploy ") && $0.contains(" ok ")
                }
                #expect(installs.count == 1, "\(cluster.id) (\(cluster.phase)): \(installs)")
            }

            try fleet.start(["janitor", "--interval-seconds", "1"])
            for cluster in clusters {
                let release = try await fleet.run(["client", "release", cluster.id, "--lease-token", cluster.token])
                #expect(release.status == 0, "\(release.stderr)")
            }
            for cluster in clusters {
                try await eventually("\(cluster.id) destroyed") { try await fleet.state(of: cluster.id) == "destroyed" }
                let left = try await fleet.remaining(cluster.id)
                #expect(left.instances == 0 && left.groups == 0 && left.keys == 0, "\(cluster.id): \(left)")
            }
        }
    }

    @Test("told to stop while its database does not answer, a worker exits within its grace period (5 s + 3 s)")
    func stopsWithoutItsDatabase() async throws {
        try await Fleet.with { fleet in
            let holds = try Self.holds(fleet)
            let request = try await fleet.run(["client", "request", "--nodes", "1", "--no-wait", "--json"])
            try #require(request.status == 0, "\(request.stderr)")
            let id = try #require(try jsonObject(request.output)["id"] as? String)
            try holds.add("deploy", "flotilla-\(id)")
            defer { try? holds.remove("deploy", "flotilla-\(id)") }

            // The worker reaches PostgreSQL through a proxy that can stop answering.
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            let proxy = Process()
            proxy.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            proxy.arguments = [
                "python3", root.appendingPathComponent("scripts/fixtures/tcp-blackhole.py").path,
                try #require(fleet.environment["PGHOST"]), try #require(fleet.environment["PGPORT"]),
            ]
            let control = Pipe()
            let announce = Pipe()
            proxy.standardInput = control
            proxy.standardOutput = announce
            try proxy.run()
            defer {
                try? control.fileHandleForWriting.close()
                proxy.terminate()
            }
            let line = try await offPool {
                String(decoding: announce.fileHandleForReading.availableData, as: UTF8.self)
            }
            let port = try #require(
                line.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })

            let worker = try fleet.start(
                ["run", "--worker-id", "cut-off"] + Self.fastWorker,
                environment: ["PGHOST": "127.0.0.1", "PGPORT": port])
            try await eventually("deploy held", timeout: .seconds(400)) {
                try Self.calls(fleet, cluster: "flotilla-\(id)").contains { $0.contains(" hold deploy waiting ") }
            }
            kill(proxy.processIdentifier, SIGUSR1)
            let told = ContinuousClock.now
            let status = await fleet.stopProcess(worker, timeout: .seconds(20))
            let took = ContinuousClock.now - told
            print(
                "measured: SIGTERM to exit, database not answering: \(took) (status \(status.map(String.init) ?? "-"))"
            )
            #expect(status != nil && took < .seconds(10), "took \(took)")

            // The job and its step are not lost: another worker finishes the cluster.
            proxy.terminate()
            try holds.remove("deploy", "flotilla-\(id)")
            try fleet.start(["run", "--worker-id", "next"] + Self.fastWorker)
            let wait = try await fleet.run(["client", "wait", id, "--json", "--timeout", "8m"])
            #expect(wait.status == 0, "\(wait.stderr)\n\(fleet.workerLogs())")
            let installs = try Self.calls(fleet, cluster: "flotilla-\(id)").filter {
                $0.contains(" deploy ") && $0.contains(" ok ")
            }
            #expect(installs.count == 1, "\(installs)")
            try fleet.start(["janitor", "--interval-seconds", "1"])
            let token = try #require(try jsonObject(request.output)["lease_token"] as? String)
            #expect(try await fleet.run(["client", "release", id, "--lease-token", token]).status == 0)
            try await eventually("destroyed") { try await fleet.state(of: id) == "destroyed" }
        }
    }
}
