import AWSProvisioner
import Fleet
import Foundation
import Logging
import PostgresNIO
import Queue
import Testing

/// A fresh, migrated database and the loopback stack `./scripts/test` started (emulator with
/// signature checking, SSH nodes, stub installer), for one test of the fleet library.
struct FleetStack: Sendable {
    let database: DatabaseSettings
    let environment: [String: String]

    static let logger: Logger = {
        var logger = Logger(label: "flotilla.tests.fleet")
        logger.logLevel =
            ProcessInfo.processInfo.environment["FLOTILLA_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
            ?? .critical
        return logger
    }()

    /// Fails the test (never skips it) when the stack is not there.
    static func make(sshDirectory: String) async throws -> FleetStack {
        let env = ProcessInfo.processInfo.environment
        func value(_ name: String) throws -> String {
            guard let value = env[name], !value.isEmpty else {
                Issue.record("\(name) is not set: run the tests through ./scripts/test")
                throw QueueError(.configuration, "missing \(name)")
            }
            return value
        }
        let server = try DatabaseSettings.fromEnvironment()
        // Identifiers cannot be bound; this one is made here from hex digits only.
        let name = "f_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await server.with(database: "postgres").withClient(maximumConnections: 1, logger: logger) { client in
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        let database = server.with(database: name)
        let migrations = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("migrations")
        try await database.withClient(maximumConnections: 2, logger: logger) { client in
            _ = try await Migrator(client: client, logger: logger).migrate(try Migration.load(from: migrations))
        }
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-fleet-aws-\(name)")
        FileManager.default.createFile(atPath: config.path, contents: Data())
        let environment = [
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
            "FLOTILLA_SSH_DIR": sshDirectory,
        ]
        return FleetStack(database: database, environment: environment)
    }

    /// A cluster request as `client request` records it.
    static func newCluster(masters: Int = 1, agents: Int = 0, publicAgents: Int = 0, installerURL: String) throws
        -> NewCluster
    {
        let request = ClusterRequest(
            masters: masters, agents: agents, publicAgents: publicAgents, instanceType: "m4.large",
            adminLocation: "0.0.0.0/0", installerURL: installerURL, dcosConfig: nil, genconfFiles: [],
            lifetimeSeconds: 3600)
        return try NewCluster(label: "fleet-tests", request: request)
    }
}
