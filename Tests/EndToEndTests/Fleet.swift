import AWSProvisioner
import AsyncHTTPClient
import Foundation
import Logging
import PostgresNIO
import Queue
import Synchronization
import Testing

/// A fleet for one test: a fresh database migrated by `worker migrate`, and `worker run`,
/// `worker janitor` and `client` processes pointed at it and at the local stack that
/// `./scripts/test` started (emulator, loopback SSH nodes, stub installer).
final class Fleet: Sendable {
    let database: String
    let environment: [String: String]
    let bin: URL
    private let processes = Mutex<[Process]>([])

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
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-e2e-aws-\(name)")
        FileManager.default.createFile(atPath: config.path, contents: Data())
        var environment = env.filter { !$0.key.hasPrefix("AWS_") && $0.key != "DATABASE_URL" }
        environment.merge([
            "PGHOST": server.host, "PGPORT": String(server.port), "PGUSER": server.username, "PGDATABASE": String(name),
            "AWS_REGION": try value("FLOTILLA_TEST_AWS_REGION"),
            "AWS_ENDPOINT_URL": try value("FLOTILLA_TEST_AWS_ENDPOINT"),
            "AWS_ACCESS_KEY_ID": try value("FLOTILLA_TEST_AWS_ACCESS_KEY_ID"),
            "AWS_SECRET_ACCESS_KEY": try value("FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY"),
            "AWS_CONFIG_FILE": config.path, "AWS_SHARED_CREDENTIALS_FILE": config.path,
            "FLOTILLA_SUBNET_ID": try value("FLOTILLA_TEST_SUBNET_ID"),
            "FLOTILLA_AMI": "ami-0123456789abcdef0",
            "FLOTILLA_SSH_USER": try value("FLOTILLA_TEST_SSH_USER"),
            "FLOTILLA_SSH_PORT": try value("FLOTILLA_TEST_SSH_PORT"),
            "FLOTILLA_SSH_ADDRESS": "private",
            "FLOTILLA_INSTALL_SETTINGS": try value("FLOTILLA_TEST_INSTALL_SETTINGS"),
            "FLOTILLA_INSTALLER_URL": try value("FLOTILLA_TEST_INSTALLER_URL"),
            "FLOTILLA_LOG_LEVEL": "warning",
        ]) { $1 }
        self.environment = environment
        let migrate = try await self.run(["worker", "migrate"])
        guard migrate.status == 0 else {
            Issue.record("worker migrate failed: \(migrate.output)")
            throw QueueError(.configuration, "migrate failed")
        }
    }

    struct Run: Sendable {
        var status: Int32
        var output: String
        var stderr: String
    }

    /// Runs `client …` or `worker …` to completion.
    func run(_ arguments: [String], environment extra: [String: String] = [:]) async throws -> Run {
        let process = Process()
        process.executableURL = self.bin.appendingPathComponent(arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.environment = self.environment.merging(extra) { $1 }
        process.currentDirectoryURL = FileManager.default.temporaryDirectory
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        async let stdout = Task.detached { try out.fileHandleForReading.readToEnd() ?? Data() }.value
        async let stderr = Task.detached { try err.fileHandleForReading.readToEnd() ?? Data() }.value
        let (o, e) = try await (stdout, stderr)
        process.waitUntilExit()
        return Run(status: process.terminationStatus, output: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// Starts a long-running `worker …` process; it is killed when the fleet stops.
    @discardableResult
    func start(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = self.bin.appendingPathComponent("worker")
        process.arguments = arguments
        process.environment = self.environment.merging(extra) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.processes.withLock { $0.append(process) }
        return process
    }

    /// Stops every started process (SIGTERM, then SIGKILL after a grace period).
    func stop() async {
        let all = self.processes.withLock { $0 }
        for process in all where process.isRunning { process.terminate() }
        for process in all {
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    func withClient<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        try await DatabaseSettings.fromEnvironment().with(database: self.database)
            .withClient(maximumConnections: 4, logger: Self.logger, body)
    }

    func scalar<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type = T.self) async throws -> T {
        try await self.withClient { client in
            let rows = try await client.query(query, logger: Self.logger)
            for try await value in rows.decode(T.self) { return value }
            throw QueueError(.notFound, "no row")
        }
    }

    /// Total rows in the tables a request writes.
    func rowCount() async throws -> Int {
        try await self.scalar("SELECT ((SELECT count(*) FROM clusters) + (SELECT count(*) FROM jobs) + (SELECT count(*) FROM cluster_secrets))::int")
    }

    /// The emulator, through Flotilla's own EC2 client.
    static let http = HTTPClient.makeForAWS(connectTimeout: .seconds(2))

    func ec2() -> EC2Client {
        let credentials = AWSCredentials(accessKeyID: self.environment["AWS_ACCESS_KEY_ID"]!, secretAccessKey: self.environment["AWS_SECRET_ACCESS_KEY"]!)
        let configuration = AWSServiceConfiguration(region: self.environment["AWS_REGION"]!, endpoint: URL(string: self.environment["AWS_ENDPOINT_URL"]!)!)
        return EC2Client(configuration: configuration, credentials: CredentialsCache(provider: StaticCredentialsProvider(credentials), logger: Self.logger),
                         httpClient: Self.http, logger: Self.logger)
    }

    /// What the emulator still holds for the cluster: live instances, security groups, key pairs.
    func remaining(_ clusterID: String) async throws -> (instances: Int, groups: Int, keys: Int) {
        let ec2 = self.ec2()
        let instances = try await ec2.describeInstances(filters: [.tag("cluster", clusterID)]).filter { $0.state != .terminated }
        let groups = try await ec2.describeSecurityGroups(filters: [.tag("cluster", clusterID)])
        let keys = try await ec2.describeKeyPairs(filters: [.tag("cluster", clusterID)])
        return (instances.count, groups.count, keys.count)
    }
}

/// Parses the one JSON object a `--json` command printed.
func jsonObject(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw QueueError(.invalidInput, "not a JSON object: \(text.prefix(200))")
    }
    return object
}

/// Awaits `condition` until it holds or `timeout` passes.
@discardableResult
func eventually(_ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    if try await condition() { return true }
    Issue.record("timed out after \(timeout) waiting for: \(what)")
    return false
}
