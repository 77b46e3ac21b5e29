import AWSProvisioner
import AsyncHTTPClient
import Foundation
import Logging
import PostgresNIO
import Queue
import Synchronization
import TestSupport
import Testing

/// A fleet for one test: a fresh database migrated by `worker migrate`, and `worker run`,
/// `worker janitor` and `client` processes pointed at it and at the local stack that
/// `./scripts/test` started (emulator, loopback SSH nodes, stub installer).
final class Fleet: Sendable {
    let database: String
    let environment: [String: String]
    let bin: URL
    /// This fleet's own `FLOTILLA_SSH_DIR` (a short path: SSH control sockets must stay under
    /// 108 bytes), so a test can check that its workers left no key behind.
    let sshDirectory: URL
    /// One pool of at most 4 connections to the fleet's database for the test's own queries,
    /// running while ``with(_:)``'s body runs (a client per query would open and close two
    /// connections for every poll of every waiting test).
    let client: PostgresClient
    private let processes = Mutex<[Process]>([])
    /// Folders and files the fleet made, removed when it stops.
    private let scratch = Mutex<[URL]>([])

    static let logger: Logger = {
        var logger = Logger(label: "flotilla.tests.e2e")
        logger.logLevel = .critical
        return logger
    }()

    init() async throws {
        let env = ProcessInfo.processInfo.environment
        func value(_ name: String) throws -> String {
            guard let value = env[name], !value.isEmpty else {
                Issue.record("\(name) is not set: run the tests through ./scripts/test")
                throw QueueError(.configuration, "missing \(name)")
            }
            return value
        }
        self.bin = URL(fileURLWithPath: try value("FLOTILLA_BIN_DIR"))
        let server = try DatabaseSettings.fromEnvironment()
        let name = "e2e_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        try await server.with(database: "postgres").withClient(maximumConnections: 1, logger: Self.logger) { client in
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: Self.logger)
        }
        self.database = String(name)
        let sshDirectory = try Self.makeShortDirectory()
        self.sshDirectory = sshDirectory
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-e2e-aws-\(name)")
        FileManager.default.createFile(atPath: config.path, contents: Data())
        // Each fleet uses the default deployment (the database's own id) unless a test says otherwise.
        var environment = env.filter {
            !$0.key.hasPrefix("AWS_") && $0.key != "DATABASE_URL" && $0.key != "FLOTILLA_DEPLOYMENT"
        }
        environment.merge([
            "PGHOST": server.host, "PGPORT": String(server.port), "PGUSER": server.username, "PGDATABASE": String(name),
            "AWS_REGION": try value("FLOTILLA_TEST_AWS_REGION"),
            "AWS_ENDPOINT_URL": try value("FLOTILLA_TEST_AWS_ENDPOINT"),
            "AWS_ACCESS_KEY_ID": try value("FLOTILLA_TEST_AWS_ACCESS_KEY_ID"),
            "AWS_SECRET_ACCESS_KEY": try value("FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY"),
            "AWS_CONFIG_FILE": config.path, "AWS_SHARED_CREDENTIALS_FILE": config.path,
            "FLOTILLA_SUBNET_ID": try value("FLOTILLA_TEST_SUBNET_ID"),
            "FLOTILLA_AMI": try value("FLOTILLA_TEST_AMI"),
            "FLOTILLA_SSH_USER": try value("FLOTILLA_TEST_SSH_USER"),
            "FLOTILLA_SSH_PORT": try value("FLOTILLA_TEST_SSH_PORT"),
            "FLOTILLA_SSH_ADDRESS": "private",
            "FLOTILLA_INSTALL_SETTINGS": try value("FLOTILLA_TEST_INSTALL_SETTINGS"),
            "FLOTILLA_INSTALLER_URL": try value("FLOTILLA_TEST_INSTALLER_URL"),
            "FLOTILLA_LOG_LEVEL": "warning",
            "FLOTILLA_SSH_DIR": sshDirectory.path,
            // Many workers and janitors run at once: each serves /metrics on a port of its own.
            "FLOTILLA_METRICS_ADDRESS": "127.0.0.1:0", "FLOTILLA_JANITOR_METRICS_ADDRESS": "127.0.0.1:0",
        ]) { $1 }
        self.environment = environment
        self.scratch.withLock { $0 += [sshDirectory, config] }
        self.client = PostgresClient(
            configuration: try server.with(database: String(name)).clientConfiguration(maximumConnections: 4),
            backgroundLogger: Self.logger)
        let migrate = try await self.run(["worker", "migrate"])
        guard migrate.status == 0 else {
            Issue.record("worker migrate failed: \(migrate.output) \(migrate.stderr)")
            throw QueueError(.configuration, "migrate failed")
        }
        // Nobody but `worker migrate` runs as the owner: clients log in as a member of
        // flotilla_client, workers and janitors as a member of flotilla_worker. Logins belong
        // to the server, so every fleet shares these two.
        for (login, role) in [(Self.clientLogin, "flotilla_client"), (Self.workerLogin, "flotilla_worker")] {
            try await self.createLogin(login, in: role)
        }
    }

    /// Logins a test process made already (roles belong to the server, not to a database).
    private static let madeLogins = Mutex<Set<String>>([])

    /// Creates `login` as a member of `role` unless it exists. Roles live in catalogs the
    /// whole server shares, so a creation that collides with another database's migration
    /// ("tuple concurrently updated") is tried again.
    func createLogin(_ login: String, in role: String) async throws {
        if Self.madeLogins.withLock({ $0.contains("\(login) \(role)") }) { return }
        var attempt = 0
        while true {
            do {
                try await self.withTemporaryClient { client in
                    try await client.query(
                        PostgresQuery(
                            unsafeSQL: """
                                DO $$ BEGIN
                                    CREATE ROLE \(login) LOGIN;
                                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                                END $$
                                """), logger: Self.logger)
                    try await client.query(PostgresQuery(unsafeSQL: "GRANT \(role) TO \(login)"), logger: Self.logger)
                }
                Self.madeLogins.withLock { _ = $0.insert("\(login) \(role)") }
                return
            } catch {
                attempt += 1
                if attempt >= 5 { throw error }
                try await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    /// The logins the fleet's processes use (no password: the test server trusts loopback).
    static let clientLogin = "e2e_ci_agent"
    static let workerLogin = "e2e_fleet"

    /// The environment of a process: `client` logs in as the CI agent, `worker run` and
    /// `worker janitor` as the fleet, `worker migrate` as the owner.
    func environment(for arguments: [String], _ extra: [String: String]) -> [String: String] {
        var environment = self.environment
        if arguments.first == "client" {
            environment["PGUSER"] = Self.clientLogin
        } else if arguments.count > 1, ["run", "janitor"].contains(arguments[1]) {
            environment["PGUSER"] = Self.workerLogin
        }
        return environment.merging(extra) { $1 }
    }

    struct Run: Sendable {
        /// The exit status, or 128 + the signal's number when a signal ended the process (as
        /// a shell reports it).
        var status: Int32
        var output: String
        var stderr: String
        /// Whether an uncaught signal ended the process (rather than `exit`).
        var signalled = false
    }

    /// Runs `client …` or `worker …` to completion.
    func run(_ arguments: [String], environment extra: [String: String] = [:]) async throws -> Run {
        let process = Process()
        process.executableURL = self.bin.appendingPathComponent(arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.environment = self.environment(for: arguments, extra)
        process.currentDirectoryURL = FileManager.default.temporaryDirectory
        let run = try await process.runToCompletion()
        return Run(status: run.status, output: run.output, stderr: run.errors, signalled: run.signalled)
    }

    /// Starts a long-running `worker …` process; it is killed when the fleet stops. Its
    /// standard error goes to a file that ``workerLogs(last:)`` reads.
    @discardableResult
    func start(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Process {
        try self.startInBackground(["worker"] + arguments, environment: extra).process
    }

    /// Starts `client …` or `worker …` (the first argument names the executable) without
    /// waiting for it. Standard output and error go to files, read with
    /// ``Background/finish(within:)`` once it ended. It is stopped when the fleet stops.
    /// With `openFiles`, it starts under that soft and hard limit of open files (`prlimit`, which
    /// then becomes it: the same process).
    func startInBackground(
        _ arguments: [String], environment extra: [String: String] = [:], openFiles: (soft: Int, hard: Int)? = nil
    ) throws -> Background {
        let base = FileManager.default.temporaryDirectory
            .appendingPathComponent("flotilla-e2e-\(self.database)-\(arguments[0])-\(Self.shortID())").path
        let stdout = URL(fileURLWithPath: base + ".out")
        let stderr = URL(fileURLWithPath: base + ".err")
        for file in [stdout, stderr] { _ = FileManager.default.createFile(atPath: file.path, contents: Data()) }
        self.scratch.withLock { $0 += [stdout, stderr] }
        let outHandle = try FileHandle(forWritingTo: stdout)
        let errHandle = try FileHandle(forWritingTo: stderr)
        // The child has its own copies once it runs.
        defer {
            try? outHandle.close()
            try? errHandle.close()
        }
        let process = Process()
        let executable = self.bin.appendingPathComponent(arguments[0])
        if let openFiles {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments =
                ["--nofile=\(openFiles.soft):\(openFiles.hard)", "--", executable.path] + arguments.dropFirst()
        } else {
            process.executableURL = executable
            process.arguments = Array(arguments.dropFirst())
        }
        process.environment = self.environment(for: arguments, extra)
        process.currentDirectoryURL = FileManager.default.temporaryDirectory
        process.standardOutput = outHandle
        process.standardError = errHandle
        try process.run()
        let background = Background(process: process, arguments: arguments, stdout: stdout, stderr: stderr)
        self.processes.withLock { $0.append(process) }
        self.started.withLock { $0.append(background) }
        return background
    }

    private let started = Mutex<[Background]>([])

    /// The last `last` characters of the standard error of every `worker` this fleet started,
    /// for failure messages.
    func workerLogs(last: Int = 3000) -> String {
        let workers = self.started.withLock { $0 }.filter { $0.arguments.first == "worker" }
        return workers.map { worker in
            let text = worker.stderrSoFar()
            let name = worker.arguments.dropFirst().prefix(3).joined(separator: " ")
            return "--- worker \(name) (pid \(worker.pid)):\n\(text.suffix(last))"
        }.joined(separator: "\n")
    }

    /// Sends `signal` to a process this fleet started.
    func send(_ signal: Int32, to process: Process) {
        _ = kill(process.processIdentifier, signal)
    }

    /// Sends `signal` (SIGTERM by default) and waits for the exit; records an issue and
    /// returns `nil` when the process still runs after `timeout`.
    @discardableResult
    func stopProcess(
        _ process: Process, signal: Int32 = SIGTERM, timeout: Duration = .seconds(60),
        sourceLocation: SourceLocation = #_sourceLocation
    ) async -> Int32? {
        self.send(signal, to: process)
        let status = await process.exit(within: timeout)
        if status == nil {
            Issue.record(
                "pid \(process.processIdentifier) still runs \(timeout) after signal \(signal)",
                sourceLocation: sourceLocation)
        }
        return status
    }

    /// Makes a fresh fleet, runs `body` with it, and stops the fleet (every process it started
    /// ended and awaited, its folders removed) when `body` returns or throws.
    static func with(_ body: (Fleet) async throws -> Void) async throws {
        let fleet = try await Fleet()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await fleet.client.run() }
            do {
                try await body(fleet)
            } catch {
                await fleet.stop()
                group.cancelAll()
                throw error
            }
            await fleet.stop()
            group.cancelAll()
        }
    }

    /// A file for a process that is not the fleet's child (a command `client run` started) to
    /// write its pid to: when the fleet stops, that process is ended too, and awaited.
    func orphanPIDFile() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("flotilla-e2e-\(self.database)-\(Self.shortID()).pid")
        self.orphans.withLock { $0.append(url) }
        self.scratch.withLock { $0.append(url) }
        return url
    }

    private let orphans = Mutex<[URL]>([])

    /// Stops every started process (SIGTERM, then SIGKILL after a grace period), awaiting each,
    /// ends the processes named in ``orphanPIDFile()``s, and removes the fleet's folders and
    /// output files.
    func stop() async {
        let all = self.processes.withLock { $0 }
        for process in all where process.isRunning { process.terminate() }
        for process in all where await process.exit(within: .seconds(10)) == nil {
            kill(process.processIdentifier, SIGKILL)
            _ = await process.exit(within: .seconds(10))
        }
        for file in self.orphans.withLock({ $0 }) {
            guard let text = try? String(contentsOf: file, encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
            else { continue }
            kill(pid, SIGKILL)
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while kill(pid, 0) == 0, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        }
        for url in self.scratch.withLock({ $0 }) { try? FileManager.default.removeItem(at: url) }
    }

    /// A fresh folder `/tmp/fl-<8 hex digits><suffix>` (mode 0700), removed when the fleet
    /// stops. Short on purpose: SSH control socket paths must stay under 108 bytes.
    func makeScratchDirectory(suffix: String = "") throws -> URL {
        let url = try Self.makeShortDirectory(suffix: suffix)
        self.scratch.withLock { $0.append(url) }
        return url
    }

    static func makeShortDirectory(suffix: String = "") throws -> URL {
        let url = URL(fileURLWithPath: "/tmp/fl-\(Self.shortID())\(suffix)")
        try FileManager.default.createDirectory(
            at: url, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        return url
    }

    /// Eight random lowercase hex digits.
    static func shortID() -> String {
        String(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(8))
    }

    /// Runs `body` with the fleet's own client (see ``client``).
    func withClient<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        try await body(self.client)
    }

    /// A client of its own for the set-up in `init`, before ``client`` runs.
    private func withTemporaryClient<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws
        -> T
    {
        try await DatabaseSettings.fromEnvironment().with(database: self.database)
            .withClient(maximumConnections: 1, logger: Self.logger, body)
    }

    func scalar<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type = T.self) async throws -> T {
        try await self.withClient { client in
            let rows = try await client.query(query, logger: Self.logger)
            for try await value in rows.decode(T.self) { return value }
            throw QueueError(.notFound, "no row")
        }
    }

    /// Runs one statement and ignores what it returns.
    func execute(_ query: PostgresQuery) async throws {
        try await self.withClient { client in
            let rows = try await client.query(query, logger: Self.logger)
            for try await _ in rows {}
        }
    }

    /// Total rows in the tables a request writes.
    func rowCount() async throws -> Int {
        try await self.scalar(
            """
            SELECT ((SELECT count(*) FROM clusters) + (SELECT count(*) FROM jobs)
                    + (SELECT count(*) FROM cluster_secrets))::int
            """)
    }

    /// The cluster's state, or `missing` when no row has this id.
    func state(of clusterID: String) async throws -> String {
        try await self.scalar(
            "SELECT coalesce((SELECT state FROM clusters WHERE id = \(clusterID)), 'missing')", as: String.self)
    }

    /// The kinds of the cluster's events, oldest first.
    func events(of clusterID: String) async throws -> [String] {
        let list = try await self.scalar(
            """
            SELECT coalesce(string_agg(kind, ',' ORDER BY at), '') FROM cluster_events WHERE cluster_id = \(clusterID)
            """, as: String.self)
        return list.isEmpty ? [] : list.split(separator: ",").map(String.init)
    }

    /// The id of the cluster's (first) provision job.
    func provisionJobID(of clusterID: String) async throws -> Int {
        try await self.scalar(
            """
            SELECT id FROM jobs WHERE kind = 'provision' AND cluster_id = \(clusterID) ORDER BY id LIMIT 1
            """, as: Int.self)
    }

    /// A job's state, or `missing`.
    func jobState(_ jobID: Int) async throws -> String {
        try await self.scalar(
            "SELECT coalesce((SELECT state FROM jobs WHERE id = \(jobID)), 'missing')", as: String.self)
    }

    /// One line about the cluster and its jobs, for failure messages; never throws.
    func summary(_ clusterID: String) async -> String {
        do {
            return try await self.scalar(
                """
                SELECT coalesce((SELECT concat_ws(' ', 'state=' || state, 'phase=' || coalesce(phase, '-'),
                                                  'teardown_reason=' || coalesce(teardown_reason, '-'),
                                                  'last_error=' || coalesce(last_error, '-'))
                                 FROM clusters WHERE id = \(clusterID)), 'no cluster row')
                       || ' | jobs: ' || coalesce((SELECT string_agg(kind || ' ' || state || ' attempt ' || attempt
                                                                     || '/' || max_attempts
                                                                     || coalesce(' error: ' || last_error, ''),
                                                                     '; ' ORDER BY id)
                                                   FROM jobs WHERE cluster_id = \(clusterID)), 'none')
                       || ' | events: ' || coalesce((SELECT string_agg(kind, ',' ORDER BY at) FROM cluster_events
                                                     WHERE cluster_id = \(clusterID)), 'none')
                """, as: String.self)
        } catch {
            return "(cannot read the cluster: \(String(reflecting: error)))"
        }
    }

    /// The emulator, through Flotilla's own EC2 client, in the test region or `region`.
    static let http = HTTPClient.makeForAWS(connectTimeout: .seconds(2), connectionsPerHost: 64)

    var region: String { self.environment["AWS_REGION"]! }

    func ec2(region: String? = nil) -> EC2Client {
        let credentials = AWSCredentials(
            accessKeyID: self.environment["AWS_ACCESS_KEY_ID"]!,
            secretAccessKey: self.environment["AWS_SECRET_ACCESS_KEY"]!)
        let configuration = AWSServiceConfiguration(
            region: region ?? self.region, endpoint: URL(string: self.environment["AWS_ENDPOINT_URL"]!)!)
        return EC2Client(
            configuration: configuration,
            credentials: CredentialsCache(provider: StaticCredentialsProvider(credentials), logger: Self.logger),
            httpClient: Self.http, logger: Self.logger)
    }

    /// What the emulator still holds tagged `cluster=<id>`.
    struct Leftovers: Sendable, CustomStringConvertible {
        /// Instances not terminated.
        var instanceIDs: [String] = []
        /// Volumes not deleted.
        var volumeIDs: [String] = []
        var groupIDs: [String] = []
        var keyNames: [String] = []

        var instances: Int { self.instanceIDs.count }
        var volumes: Int { self.volumeIDs.count }
        var groups: Int { self.groupIDs.count }
        var keys: Int { self.keyNames.count }
        var isEmpty: Bool { self.instances + self.volumes + self.groups + self.keys == 0 }

        var description: String {
            isEmpty
                ? "nothing"
                : "instances \(self.instanceIDs), volumes \(self.volumeIDs), security groups \(self.groupIDs), "
                    + "key pairs \(self.keyNames)"
        }
    }

    /// What the emulator still holds for the cluster (in the test region unless `region` is
    /// given): live instances, volumes, security groups, key pairs.
    func remaining(_ clusterID: String, region: String? = nil) async throws -> Leftovers {
        let ec2 = self.ec2(region: region)
        let tagged = [EC2Filter.tag("cluster", clusterID)]
        var left = Leftovers()
        left.instanceIDs = try await ec2.describeInstances(filters: tagged).filter { $0.state != .terminated }.map(
            \.instanceID)
        left.volumeIDs = try await ec2.describeVolumes(filters: tagged).filter { $0.state != "deleted" }.map(\.volumeID)
        left.groupIDs = try await ec2.describeSecurityGroups(filters: tagged).map(\.groupID)
        left.keyNames = try await ec2.describeKeyPairs(filters: tagged).map(\.keyName)
        return left
    }

    /// Records an issue naming everything tagged with the cluster that the emulator still holds.
    func expectNothingLeft(
        _ clusterID: String, region: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let left = try await self.remaining(clusterID, region: region)
        if !left.isEmpty {
            Issue.record(
                "\(clusterID) left in the emulator (\(region ?? self.region)): \(left)", sourceLocation: sourceLocation)
        }
    }

    /// Records an issue naming each secret of the cluster still kept (the private key, the
    /// public key and every lease token hash go at `destroyed`).
    func expectSecretsErased(_ clusterID: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let kept = try await self.scalar(
            """
            SELECT concat_ws(', ',
                   (SELECT concat_ws(', ', CASE WHEN private_key IS NOT NULL THEN 'private_key' END,
                                           CASE WHEN public_key IS NOT NULL THEN 'public_key' END)
                    FROM cluster_secrets WHERE cluster_id = \(clusterID)),
                   CASE WHEN EXISTS (SELECT 1 FROM cluster_tokens WHERE cluster_id = \(clusterID))
                        THEN 'lease token hashes' END)
            """, as: String.self)
        if !kept.isEmpty {
            Issue.record(
                "\(clusterID) is destroyed but cluster_secrets still holds: \(kept)", sourceLocation: sourceLocation)
        }
    }

    /// Waits until no provision job runs, then records an issue naming whatever is left in
    /// this fleet's `FLOTILLA_SSH_DIR` (each provision job removes its folder as it ends).
    func expectSSHDirectoryEmpty(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await eventually("no provision job running", timeout: .seconds(60)) {
            try await self.scalar(
                "SELECT count(*)::int FROM jobs WHERE kind = 'provision' AND state = 'running'", as: Int.self) == 0
        }
        // A handler whose lease ran out on this busy machine may end (and clean up) a moment
        // after its row changed: give it that moment, no more.
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        var entries = (try? FileManager.default.contentsOfDirectory(atPath: self.sshDirectory.path)) ?? []
        while !entries.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            entries = (try? FileManager.default.contentsOfDirectory(atPath: self.sshDirectory.path)) ?? []
        }
        if !entries.isEmpty {
            Issue.record(
                """
                FLOTILLA_SSH_DIR \(self.sshDirectory.path) still holds \(entries.sorted()) \
                after the provision jobs ended
                """,
                sourceLocation: sourceLocation)
        }
    }
}

/// A process a fleet started in the background; its output goes to files.
final class Background: @unchecked Sendable {
    // @unchecked: `process` is only read (its pid, whether it runs, its status), and Process
    // guards its own state.
    let process: Process
    let arguments: [String]
    private let stdout: URL
    private let stderr: URL

    init(process: Process, arguments: [String], stdout: URL, stderr: URL) {
        self.process = process
        self.arguments = arguments
        self.stdout = stdout
        self.stderr = stderr
    }

    var pid: Int32 { self.process.processIdentifier }
    var isRunning: Bool { self.process.isRunning }

    /// Sends a signal: SIGINT (as Ctrl-C does), SIGTERM, SIGKILL, …
    func send(_ signal: Int32) {
        _ = kill(self.pid, signal)
    }

    /// What the process wrote to standard output so far.
    func stdoutSoFar() -> String {
        String(decoding: FileManager.default.contents(atPath: self.stdout.path) ?? Data(), as: UTF8.self)
    }

    /// What the process wrote to standard error so far.
    func stderrSoFar() -> String {
        String(decoding: FileManager.default.contents(atPath: self.stderr.path) ?? Data(), as: UTF8.self)
    }

    /// Waits until the process exits and returns its status and output, or `nil` when it
    /// still runs after `timeout`.
    func finish(within timeout: Duration) async -> Fleet.Run? {
        guard let status = await self.process.exit(within: timeout) else { return nil }
        let output = String(decoding: FileManager.default.contents(atPath: self.stdout.path) ?? Data(), as: UTF8.self)
        return Fleet.Run(
            status: status, output: output, stderr: self.stderrSoFar(),
            signalled: self.process.terminationReason == .uncaughtSignal)
    }
}

/// Parses the one JSON object a `--json` command printed.
func jsonObject(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw QueueError(.invalidInput, "not a JSON object: \(text.prefix(200))")
    }
    return object
}
