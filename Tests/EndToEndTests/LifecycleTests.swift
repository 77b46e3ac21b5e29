import AWSProvisioner
import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing

/// Every way a request can end — a failure on the last attempt, a worker killed on the last
/// attempt, a cancel, a refused request, a client that times out, is interrupted or killed,
/// a release while provisioning, a teardown from another region — through real `worker run`,
/// `worker janitor` and `client` processes. Each test ends with every cluster it made
/// `destroyed` and nothing tagged with it left in the emulator, and prints
/// `measured: <path>: trigger → destroyed <seconds> s`.
@Suite("Every way a request ends leaves nothing running", .serialized, .timeLimit(.minutes(10)))
struct LifecycleTests {
    static let fastWorker = ["--lease-seconds", "4", "--heartbeat-seconds", "1", "--poll-seconds", "0.5"]
    static let janitor = ["janitor", "--interval-seconds", "1"]

    // MARK: Failures of the provision job

    @Test(
        "a provision job hitting a non-provisioning error on its last attempt: the cluster fails, then is destroyed"
    )
    func failedOnLastAttempt() async throws {
        try await Fleet.with { fleet in
            let (id, _) = try await Self.requestNoWait(fleet, nodes: 1)
            let job = try await fleet.provisionJobID(of: id)
            try await fleet.execute("UPDATE jobs SET max_attempts = 1 WHERE id = \(job)")
            // A checkpoint the worker cannot decode: a plain decoding error, not a ProvisionError.
            try await fleet.execute(
                """
                UPDATE clusters SET checkpoint = '{"garbage": true}'::jsonb WHERE id = \(id)
                """)

            let trigger = Date()
            // A worker alone: the teardown is queued in the transaction that fails the job.
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try await eventually("the provision job failed", timeout: .seconds(60)) {
                try await fleet.jobState(job) == "failed"
            }
            try await Self.expectDestroyed(
                fleet, id, path: "provision failed on its last attempt (undecodable checkpoint)", since: trigger)

            let lastError = try await fleet.scalar(
                "SELECT coalesce(last_error, '') FROM clusters WHERE id = \(id)", as: String.self)
            #expect(!lastError.isEmpty, "the cluster's last_error says why it failed")
            let events = try await fleet.events(of: id)
            #expect(events.contains("failed"), "\(events)")
            #expect(!events.contains("ready"), "\(events)")
            try await fleet.expectSecretsErased(id)
        }
    }

    @Test("a worker SIGKILLed on the last attempt: the lease expires, the cluster fails and another worker destroys it")
    func workerKilledOnLastAttempt() async throws {
        try await Fleet.with { fleet in
            let (id, _) = try await Self.requestNoWait(fleet, nodes: 3)
            let job = try await fleet.provisionJobID(of: id)
            try await fleet.execute("UPDATE jobs SET max_attempts = 1 WHERE id = \(job)")
            // The doomed worker shares the fleet's SSH folder with the survivor: the key folder
            // the SIGKILL leaves behind is removed when the survivor starts.
            let doomed = try fleet.start(["run", "--worker-id", "doomed"] + Self.fastWorker)
            // 1 master, 1 agent, 1 public agent and the bootstrap node.
            try await Self.waitForInstances(fleet, id, count: 4)

            let trigger = Date()
            fleet.send(SIGKILL, to: doomed)
            let status = await doomed.exit(within: .seconds(10))
            #expect(status == 128 + SIGKILL)
            try fleet.start(Self.janitor)
            try fleet.start(["run", "--worker-id", "survivor"] + Self.fastWorker)
            try await eventually("the provision job failed once its lease expired", timeout: .seconds(60)) {
                try await fleet.jobState(job) == "failed"
            }
            try await Self.expectDestroyed(fleet, id, path: "worker SIGKILLed on the last attempt", since: trigger)

            let launched = try await fleet.ec2().describeInstances(filters: [.tag("cluster", id)])
            #expect(
                launched.count == 4,
                "instances ever launched for the cluster: \(launched.map { "\($0.instanceID) \($0.state)" })")
            let events = try await fleet.events(of: id)
            #expect(events.contains("failed"), "\(events)")
            #expect(!events.contains("ready"), "\(events)")
            try await fleet.expectSecretsErased(id)
            try await fleet.expectSSHDirectoryEmpty()
        }
    }

    @Test(
        "an operator cancels the provision job with SQL: the job ends cancelled and the cluster destroyed, never ready")
    func operatorCancel() async throws {
        try await Fleet.with { fleet in
            let worker = try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            let (id, _) = try await Self.requestNoWait(fleet, nodes: 3)
            let job = try await fleet.provisionJobID(of: id)
            try await Self.waitForInstances(fleet, id, count: 4, freezing: worker)

            let trigger = Date()
            try await fleet.execute("SELECT cancel_job(\(job))")
            kill(worker.processIdentifier, SIGCONT)
            try await eventually("the provision job cancelled", timeout: .seconds(60)) {
                try await fleet.jobState(job) == "cancelled"
            }
            try await Self.expectDestroyed(fleet, id, path: "operator cancel_job during provisioning", since: trigger)

            let events = try await fleet.events(of: id)
            #expect(events.contains("failed"), "a cancelled provision marks the cluster failed: \(events)")
            #expect(!events.contains("ready"), "\(events)")
            try await fleet.expectSecretsErased(id)
            try await fleet.expectSSHDirectoryEmpty()
        }
    }

    // MARK: The client

    @Test("client request --key-out into a folder that does not exist is refused before anything is written")
    func keyOutFolderMissing() async throws {
        try await Fleet.with { fleet in
            // A worker runs, so anything the request had queued would be built.
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            let deployment = try await fleet.scalar("SELECT id::text FROM deployment", as: String.self)
            let ec2 = fleet.ec2()
            let before = try await fleet.rowCount()
            let taggedBefore = try await ec2.describeInstances(filters: [.tag("deployment", deployment)]).count

            let folder = "/nonexistent-dir-\(UUID().uuidString)"
            let run = try await fleet.run(["client", "request", "--nodes", "1", "--key-out", "\(folder)/k.key"])
            #expect(run.status == 64, "\(run.stderr)")
            #expect(run.stderr.contains("--key-out"), "\(run.stderr)")
            #expect(try await fleet.rowCount() == before, "nothing is written")
            #expect(!FileManager.default.fileExists(atPath: folder))
            let jobs = try await fleet.scalar("SELECT count(*)::int FROM jobs", as: Int.self)
            #expect(jobs == 0)
            #expect(
                try await ec2.describeInstances(filters: [.tag("deployment", deployment)]).count == taggedBefore,
                "no EC2 resources")
        }
    }

    @Test("client request --timeout with no worker: it times out, releases its request, and the cluster ends destroyed")
    func clientTimesOut() async throws {
        try await Fleet.with { fleet in
            let run = try await fleet.run([
                "client", "request", "--nodes", "3", "--timeout", "2s", "--key-out", Self.keyPath(fleet),
            ])
            let trigger = Date()
            #expect(run.status == 1, "\(run.stderr)")
            #expect(Self.saysTimedOut(run.stderr), "\(run.stderr)")
            #expect(run.stderr.contains("released"), "\(run.stderr)")
            let id = try await Self.onlyCluster(fleet)
            let state = try await fleet.state(of: id)
            let summary = await fleet.summary(id)
            #expect(state == "tearing_down" || state == "destroyed", "released at once: \(summary)")

            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            try await Self.expectDestroyed(fleet, id, path: "client request timed out (no worker)", since: trigger)
            let events = try await fleet.events(of: id)
            #expect(events.contains("teardown-released"), "\(events)")
            #expect(!events.contains("ready"), "\(events)")
            let job = try await fleet.provisionJobID(of: id)
            #expect(try await fleet.jobState(job) == "cancelled", "a queued provision job is cancelled by the release")
            try await fleet.expectSecretsErased(id)
        }
    }

    @Test(
        "client request interrupted with SIGINT (Ctrl-C) while provisioning: exit 130, released, destroyed, never ready"
    )
    func clientInterrupted() async throws {
        try await Self.signalWaitingClient(
            SIGINT, expectedStatus: 130, path: "client SIGINT (Ctrl-C) during provisioning")
    }

    @Test("client request terminated with SIGTERM while provisioning: exit 143, released, destroyed, never ready")
    func clientTerminated() async throws {
        try await Self.signalWaitingClient(SIGTERM, expectedStatus: 143, path: "client SIGTERM during provisioning")
    }

    /// A waiting `client request` with a worker building its cluster gets `signal` once the
    /// instances exist.
    static func signalWaitingClient(_ signal: Int32, expectedStatus: Int32, path: String) async throws {
        try await Fleet.with { fleet in
            let worker = try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            let client = try fleet.startInBackground([
                "client", "request", "--nodes", "3", "--key-out", Self.keyPath(fleet),
            ])
            let id = try await Self.waitForClusterRow(fleet)
            let job = try await fleet.provisionJobID(of: id)
            try await Self.waitForInstances(fleet, id, count: 4, freezing: worker)

            let trigger = Date()
            client.send(signal)
            let finished = await client.finish(within: .seconds(60))
            kill(worker.processIdentifier, SIGCONT)
            let run = try #require(finished, "the client still runs 60 s after signal \(signal)")
            #expect(run.status == expectedStatus, "signalled: \(run.signalled); \(run.stderr)")
            #expect(run.stderr.contains("released"), "\(run.stderr)")
            try await eventually("the provision job cancelled", timeout: .seconds(60)) {
                try await fleet.jobState(job) == "cancelled"
            }
            try await Self.expectDestroyed(fleet, id, path: path, since: trigger)

            let events = try await fleet.events(of: id)
            #expect(!events.contains("ready"), "\(events)")
            try await fleet.expectSecretsErased(id)
            try await fleet.expectSSHDirectoryEmpty()
        }
    }

    @Test("client request --keep-on-failure that times out leaves its cluster requested; a release later destroys it")
    func keepOnFailure() async throws {
        try await Fleet.with { fleet in
            let run = try await fleet.run([
                "client", "request", "--nodes", "1", "--timeout", "2s", "--keep-on-failure",
                "--key-out", Self.keyPath(fleet), "--json",
            ])
            #expect(run.status == 1, "\(run.stderr)")
            #expect(Self.saysTimedOut(run.stderr), "\(run.stderr)")
            let id = try await Self.onlyCluster(fleet)
            // What it kept is printed, token included, so its holder can release it.
            let kept = try jsonObject(run.output)
            #expect(kept["id"] as? String == id)
            let summary = await fleet.summary(id)
            #expect(try await fleet.state(of: id) == "requested", "the client kept the cluster: \(summary)")
            let noReason = try await fleet.scalar(
                "SELECT teardown_reason IS NULL FROM clusters WHERE id = \(id)", as: Bool.self)
            #expect(noReason, "the client kept the cluster: \(summary)")
            let events = try await fleet.events(of: id)
            #expect(!events.contains(where: { $0.hasPrefix("teardown-") || $0 == "released" }), "\(events)")

            // Clean up as its holder would.
            let token = try #require(kept["lease_token"] as? String)
            let trigger = Date()
            let release = try await fleet.run(["client", "release", id, "--lease-token", token])
            #expect(release.status == 0, "\(release.stderr)")
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            try await Self.expectDestroyed(fleet, id, path: "kept after a timeout, then released", since: trigger)
            let after = try await fleet.events(of: id)
            #expect(!after.contains("ready"), "\(after)")
            try await fleet.expectSecretsErased(id)
        }
    }

    @Test(
        "a client SIGKILLed while waiting: nobody collects the key; abandoned at abandon_at, the cluster is destroyed"
    )
    func clientKilled() async throws {
        try await Fleet.with { fleet in
            try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            try fleet.start(Self.janitor)
            let client = try fleet.startInBackground([
                "client", "request", "--nodes", "1", "--timeout", "3s", "--key-out", Self.keyPath(fleet),
            ])
            let id = try await Self.waitForClusterRow(fleet)

            let trigger = Date()
            client.send(SIGKILL)
            let finished = await client.finish(within: .seconds(10))
            #expect(finished?.status == 128 + SIGKILL)
            // abandon_at = the request + its timeout (3 s) + 15 s.
            let window = try await fleet.scalar(
                """
                SELECT coalesce(extract(epoch FROM abandon_at - created_at)::float8, -1) FROM clusters WHERE id = \(id)
                """, as: Double.self)
            #expect(window >= 17 && window <= 20, "abandon_at - created_at = \(window) s")

            try await Self.expectDestroyed(
                fleet, id, path: "client SIGKILLed while waiting (abandoned)", since: trigger)
            let reason = try await fleet.scalar(
                "SELECT coalesce(teardown_reason, '') FROM clusters WHERE id = \(id)", as: String.self)
            #expect(reason == "abandoned")
            #expect(try await fleet.scalar("SELECT collected_at IS NULL FROM clusters WHERE id = \(id)", as: Bool.self))
            let events = try await fleet.events(of: id)
            #expect(events.contains("teardown-abandoned"), "\(events)")
            let lag = try await fleet.scalar(
                """
                SELECT coalesce((SELECT extract(epoch FROM e.at - c.abandon_at)::float8
                                 FROM cluster_events e JOIN clusters c ON c.id = e.cluster_id
                                 WHERE e.cluster_id = \(id) AND e.kind = 'teardown-abandoned'
                                 ORDER BY e.at LIMIT 1), -1)
                """, as: Double.self)
            print("measured: the janitor started the teardown of an abandoned request \(lag) s after abandon_at")
            #expect(lag >= 0 && lag < 5, "teardown-abandoned \(lag) s after abandon_at")
            try await fleet.expectSecretsErased(id)
        }
    }

    // MARK: Release

    @Test("a release during provisioning: tearing_down at once, the provision job cancelled, destroyed, never ready")
    func releaseDuringProvisioning() async throws {
        try await Fleet.with { fleet in
            let worker = try fleet.start(["run", "--worker-id", "w1"] + Self.fastWorker)
            let (id, token) = try await Self.requestNoWait(fleet, nodes: 3)
            let job = try await fleet.provisionJobID(of: id)
            try await Self.waitForInstances(fleet, id, count: 4, freezing: worker)

            let trigger = Date()
            let release = try await fleet.run(["client", "release", id, "--lease-token", token])
            kill(worker.processIdentifier, SIGCONT)
            #expect(release.status == 0, "\(release.stderr)")
            let summary = await fleet.summary(id)
            #expect(try await fleet.state(of: id) == "tearing_down", "released at once: \(summary)")
            try await eventually("the provision job cancelled", timeout: .seconds(60)) {
                try await fleet.jobState(job) == "cancelled"
            }
            try await Self.expectDestroyed(fleet, id, path: "release during provisioning", since: trigger)

            let events = try await fleet.events(of: id)
            #expect(!events.contains("ready"), "\(events)")
            #expect(events.contains("teardown-released"), "\(events)")
            try await fleet.expectSecretsErased(id)
            try await fleet.expectSSHDirectoryEmpty()
        }
    }

    // MARK: Where and whose

    @Test("a cluster built in one region is destroyed by workers of another region, in the region it was built in")
    func teardownUsesRecordedRegion() async throws {
        try await Fleet.with { fleet in
            let home = try fleet.start(["run", "--worker-id", "home"] + Self.fastWorker)
            let request = try await fleet.run([
                "client", "request", "--nodes", "1", "--json", "--timeout", "5m", "--key-out", Self.keyPath(fleet),
            ])
            try #require(request.status == 0, "\(request.stderr)")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)
            let recorded = try await fleet.scalar(
                "SELECT coalesce(region, '') FROM clusters WHERE id = \(id)", as: String.self)
            #expect(recorded == fleet.region)
            #expect(
                try await fleet.scalar("SELECT collected_at IS NOT NULL FROM clusters WHERE id = \(id)", as: Bool.self),
                "client request read the key")
            #expect(await fleet.stopProcess(home) != nil)

            let abroad = fleet.region == "eu-west-1" ? "us-east-1" : "eu-west-1"
            try fleet.start(["run", "--worker-id", "abroad"] + Self.fastWorker, environment: ["AWS_REGION": abroad])
            try fleet.start(Self.janitor, environment: ["AWS_REGION": abroad])
            let trigger = Date()
            let release = try await fleet.run(["client", "release", id, "--lease-token", token])
            #expect(release.status == 0, "\(release.stderr)")
            // remaining(_:) looks in the test region, where the cluster was built.
            try await Self.expectDestroyed(
                fleet, id, path: "release, torn down by a worker of another region", since: trigger)

            let tearer = try await fleet.scalar(
                """
                SELECT coalesce(lease_owner, '') FROM jobs
                WHERE kind = 'teardown' AND cluster_id = \(id) ORDER BY id DESC LIMIT 1
                """, as: String.self)
            #expect(tearer == "abroad")
            #expect(
                try await fleet.scalar("SELECT coalesce(region, '') FROM clusters WHERE id = \(id)", as: String.self)
                    == fleet.region)
            try await fleet.expectSecretsErased(id)
        }
    }

    @Test("resources carry the deployment tag, and the sweep removes its own deployment's leftovers only")
    func sweepKeepsToItsDeployment() async throws {
        try await Fleet.with { fleet in
            let mine = "dep-a-\(Fleet.shortID())"
            let theirs = "dep-b-\(Fleet.shortID())"
            try fleet.start(["run", "--worker-id", "a1"] + Self.fastWorker, environment: ["FLOTILLA_DEPLOYMENT": mine])
            let request = try await fleet.run([
                "client", "request", "--nodes", "1", "--json", "--timeout", "5m", "--key-out", Self.keyPath(fleet),
            ])
            try #require(request.status == 0, "\(request.stderr)")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)
            #expect(
                try await fleet.scalar(
                    "SELECT coalesce(deployment, '') FROM clusters WHERE id = \(id)", as: String.self)
                    == mine)

            let ec2 = fleet.ec2()
            let ours = [EC2Filter.tag("cluster", id), .tag("deployment", mine)]
            let live = try await ec2.describeInstances(filters: [.tag("cluster", id)]).filter {
                $0.state != .terminated
            }
            let tagged = try await ec2.describeInstances(filters: ours).filter { $0.state != .terminated }
            #expect(
                tagged.count >= 1 && tagged.count == live.count,
                "\(tagged.count) of \(live.count) instances carry deployment=\(mine)")
            #expect(try await ec2.describeVolumes(filters: ours).count >= 1, "volumes carry the deployment tag")
            #expect(
                try await ec2.describeSecurityGroups(filters: ours).count == 1,
                "the security group carries the deployment tag")
            #expect(try await ec2.describeKeyPairs(filters: ours).count == 1, "the key pair carries the deployment tag")

            // Two old leftovers of a cluster no database knows, one per deployment.
            let subnet = try #require(fleet.environment["FLOTILLA_SUBNET_ID"])
            let vpcID = try await ec2.describeSubnets(subnetIDs: [subnet]).first?.vpcID
            func leftover(_ deployment: String, _ marker: String) async throws -> String {
                try await ec2.createSecurityGroup(
                    name: "flotilla-e2e-sweep-\(marker)", description: "an old leftover of an unknown cluster",
                    vpcID: vpcID,
                    tags: [
                        EC2Tag(key: "managed-by", value: "flotilla"), EC2Tag(key: "cluster", value: "c-00000000ff"),
                        EC2Tag(key: "deployment", value: deployment),
                        EC2Tag(key: "created", value: "2000-01-01T00:00:00Z"), EC2Tag(key: "e2e-marker", value: marker),
                    ])
            }
            let markerMine = "\(mine)-\(Fleet.shortID())"
            let markerTheirs = "\(theirs)-\(Fleet.shortID())"
            _ = try await leftover(mine, markerMine)
            let theirGroup = try await leftover(theirs, markerTheirs)

            try fleet.start(
                ["janitor", "--interval-seconds", "1", "--sweep-grace-seconds", "0", "--sweep-interval-seconds", "1"],
                environment: ["FLOTILLA_DEPLOYMENT": mine])
            let swept = try await eventually("the sweep removes its own deployment's leftover", timeout: .seconds(60)) {
                try await ec2.describeSecurityGroups(filters: [.tag("e2e-marker", markerMine)]).isEmpty
            }
            let theirsLeft = try await ec2.describeSecurityGroups(filters: [.tag("e2e-marker", markerTheirs)])
            try? await ec2.deleteSecurityGroup(groupID: theirGroup)
            #expect(swept)
            #expect(theirsLeft.count == 1, "the sweep must not touch deployment \(theirs)")
            let stillLive = try await ec2.describeInstances(filters: [.tag("cluster", id)]).filter {
                $0.state != .terminated
            }
            #expect(stillLive.count == live.count, "the sweep left the ready cluster alone")
            #expect(try await fleet.state(of: id) == "ready")

            let trigger = Date()
            let release = try await fleet.run(["client", "release", id, "--lease-token", token])
            #expect(release.status == 0, "\(release.stderr)")
            try await Self.expectDestroyed(
                fleet, id, path: "release of a cluster of deployment \(mine)", since: trigger)
            try await fleet.expectSecretsErased(id)
        }
    }

    // MARK: Helpers

    /// A key file path in the temporary folder.
    static func keyPath(_ fleet: Fleet) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("e2e-\(fleet.database)-\(Fleet.shortID()).key")
            .path
    }

    /// `client request --no-wait --json`: the new cluster's id and lease token.
    static func requestNoWait(_ fleet: Fleet, nodes: Int) async throws -> (id: String, token: String) {
        let request = try await fleet.run(["client", "request", "--nodes", "\(nodes)", "--no-wait", "--json"])
        try #require(request.status == 0, "\(request.stderr)")
        let object = try jsonObject(request.output)
        let id = try #require(object["id"] as? String)
        let token = try #require(object["lease_token"] as? String)
        return (id, token)
    }

    /// Whether a client's message says it gave up waiting.
    static func saysTimedOut(_ stderr: String) -> Bool {
        let text = stderr.lowercased()
        return text.contains("timed out") || text.contains("gave up waiting")
    }

    /// The id of the one cluster in the fleet's database.
    static func onlyCluster(_ fleet: Fleet) async throws -> String {
        let count = try await fleet.scalar("SELECT count(*)::int FROM clusters", as: Int.self)
        try #require(count == 1, "clusters in the database: \(count)")
        return try await fleet.scalar("SELECT id FROM clusters", as: String.self)
    }

    /// Waits until a (background) `client request` has written its cluster row; returns its id.
    static func waitForClusterRow(_ fleet: Fleet) async throws -> String {
        let written = try await eventually("the cluster row exists", timeout: .seconds(30)) {
            try await fleet.scalar("SELECT count(*)::int FROM clusters", as: Int.self) > 0
        }
        guard written else { throw LifecycleTestFailure("no cluster row was written") }
        return try await fleet.scalar("SELECT id FROM clusters ORDER BY created_at LIMIT 1", as: String.self)
    }

    /// Waits until every launch of the provisioning happened (its `instances done` checkpoint;
    /// `count` instances, the bootstrap node included), and checks the cluster is not ready
    /// yet, so that what the test does next happens during provisioning. The checkpoint, not an
    /// EC2 listing, is what is polled: it is cheap, and the install after it takes seconds.
    ///
    /// With `freezing`, that worker is stopped (SIGSTOP) the moment the checkpoint is seen, so
    /// the install cannot finish before the test acts however loaded the machine is; the test
    /// lets it go on (SIGCONT) once it has acted.
    static func waitForInstances(_ fleet: Fleet, _ id: String, count: Int, freezing worker: Process? = nil) async throws
    {
        // The checkpoint after every launch ("instances done") is a cheap read, polled every
        // 100 ms: on the loopback cluster the install that follows takes only seconds. The launches
        // themselves took more than 90 s in a full run's load.
        let checkpointed = try await eventually(
            "the launches of \(id) (\(count) instances) checkpointed", timeout: .seconds(300)
        ) {
            try await fleet.scalar(
                """
                SELECT count(*)::int FROM cluster_events
                WHERE cluster_id = \(id) AND kind = 'phase' AND detail ->> 'phase' = 'instances done'
                """, as: Int.self) > 0
        }
        if let worker, checkpointed { kill(worker.processIdentifier, SIGSTOP) }
        let launched = checkpointed
        guard launched else {
            let summary = await fleet.summary(id)
            Issue.record("\(summary)\n\(fleet.workerLogs())")
            throw LifecycleTestFailure("the instances of \(id) were not launched")
        }
        let state = try await fleet.state(of: id)
        if state == "ready" {
            Issue.record("\(id) was ready before the test could act: the install finished faster than the test polls")
        }
    }

    /// Waits until the cluster is destroyed, prints the time from `trigger` to its
    /// `destroyed_at`, and checks that nothing tagged with it is left in the emulator (in the
    /// test region unless `region` is given).
    static func expectDestroyed(
        _ fleet: Fleet, _ id: String, path: String, since trigger: Date, region: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let destroyed = try await eventually("\(id) destroyed after: \(path)", timeout: .seconds(120)) {
            try await fleet.state(of: id) == "destroyed"
        }
        guard destroyed else {
            let summary = await fleet.summary(id)
            Issue.record(
                "\(path): \(id) is not destroyed: \(summary)\n\(fleet.workerLogs())", sourceLocation: sourceLocation)
            try await fleet.expectNothingLeft(id, region: region, sourceLocation: sourceLocation)
            return
        }
        let destroyedAt = try await fleet.scalar(
            "SELECT extract(epoch FROM destroyed_at)::float8 FROM clusters WHERE id = \(id)", as: Double.self)
        let seconds = destroyedAt - trigger.timeIntervalSince1970
        print("measured: \(path): trigger → destroyed \(String(format: "%.1f", seconds)) s")
        try await fleet.expectNothingLeft(id, region: region, sourceLocation: sourceLocation)
    }
}

struct LifecycleTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
