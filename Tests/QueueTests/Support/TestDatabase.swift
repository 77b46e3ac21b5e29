import Foundation
import Logging
import PostgresNIO
import Queue
import Testing

/// A fresh, migrated database for one test, cloned from a template that is migrated once
/// per test run. Tests run in parallel; each gets its own database, so none sees
/// another's rows.
struct TestDatabase: Sendable {
    let settings: DatabaseSettings
    let name: String

    static let logger: Logger = {
        var logger = Logger(label: "flotilla.tests")
        logger.logLevel =
            ProcessInfo.processInfo.environment["FLOTILLA_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
            ?? .critical
        return logger
    }()

    /// The server `./scripts/test` started. Fails the test (never skips it) when absent.
    static func serverSettings() throws -> DatabaseSettings {
        let environment = ProcessInfo.processInfo.environment
        guard environment["DATABASE_URL"] != nil || environment["PGHOST"] != nil else {
            Issue.record("DATABASE_URL is not set: run the tests through ./scripts/test, which starts PostgreSQL")
            throw QueueError(.configuration, "no database")
        }
        return try DatabaseSettings.fromEnvironment()
    }

    private static let template = TemplateHolder()

    /// A new database migrated to the current schema.
    static func migrated() async throws -> TestDatabase {
        let server = try serverSettings()
        let template = try await Self.template.name(server: server)
        return try await create(server: server, template: template)
    }

    /// A new, empty database (no migrations applied).
    static func empty() async throws -> TestDatabase {
        try await create(server: try serverSettings(), template: "template0")
    }

    private static func create(server: DatabaseSettings, template: String) async throws -> TestDatabase {
        // Identifiers cannot be bound as parameters; this one is made here from hex digits only.
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await server.with(database: "postgres").withClient(maximumConnections: 1, logger: logger) { client in
            try await client.query(
                PostgresQuery(unsafeSQL: "CREATE DATABASE \(name) TEMPLATE \(template)"), logger: logger)
        }
        return TestDatabase(settings: server.with(database: name), name: name)
    }

    /// Runs `body` with a client connected to this database. A server error that escapes it is
    /// rethrown with the server's own words (a PSQLError describes itself only generically), so
    /// a failing test names the statement and SQLSTATE.
    func withClient<T: Sendable>(maximumConnections: Int = 20, _ body: @Sendable (PostgresClient) async throws -> T)
        async throws -> T
    {
        do {
            return try await self.settings.withClient(maximumConnections: maximumConnections, logger: Self.logger, body)
        } catch let error as PSQLError {
            throw DatabaseTestFailure(error)
        }
    }

    /// The migrations folder of this checkout.
    static var migrationsDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("migrations")
    }
}

/// A PSQLError as a test failure should read: its SQLSTATE, the server's message and the query.
struct DatabaseTestFailure: Error, CustomStringConvertible {
    let description: String

    init(_ error: PSQLError) {
        let state = error.serverInfo?[.sqlState] ?? "-"
        let message = error.serverInfo?[.message] ?? "\(error.code)"
        self.description = "PostgreSQL error \(state): \(message) (\(String(reflecting: error)))"
    }
}

/// Migrates the template database once per test process.
private actor TemplateHolder {
    private var task: Task<String, any Error>?

    func name(server: DatabaseSettings) async throws -> String {
        if let task { return try await task.value }
        let task = Task<String, any Error> {
            let name = "flotilla_template_" + String(ProcessInfo.processInfo.processIdentifier)
            let logger = TestDatabase.logger
            try await server.with(database: "postgres").withClient(maximumConnections: 1, logger: logger) { client in
                try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name)"), logger: logger)
                try await client.query(
                    PostgresQuery(unsafeSQL: "CREATE DATABASE \(name) TEMPLATE template0"), logger: logger)
            }
            let migrations = try Migration.load(from: TestDatabase.migrationsDirectory)
            try await server.with(database: name).withClient(maximumConnections: 1, logger: logger) { client in
                try await Migrator(client: client, logger: logger).migrate(migrations)
            }
            return name
        }
        self.task = task
        return try await task.value
    }
}

extension PostgresClient {
    /// The single value of a one-row, one-column query.
    func scalar<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type = T.self) async throws -> T {
        let rows = try await self.query(query, logger: TestDatabase.logger)
        for try await value in rows.decode(T.self) { return value }
        throw QueueError(.notFound, "query returned no row")
    }
}
