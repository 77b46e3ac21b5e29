import Foundation
import PostgresNIO
import Queue
import Testing

@Suite("Migrations", .timeLimit(.minutes(3)))
struct MigrationTests {
    /// The built `worker` executable (`./scripts/test` builds it and sets FLOTILLA_BIN_DIR).
    static func workerBinary() throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        let directory =
            environment["FLOTILLA_BIN_DIR"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug")
        let binary = directory.appendingPathComponent("worker")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            Issue.record("no worker binary at \(binary.path): run the tests through ./scripts/test")
            throw QueueError(.configuration, "no worker binary")
        }
        return binary
    }

    struct Run: Sendable {
        var status: Int32
        var output: String
    }

    static func runWorker(_ arguments: [String], database: TestDatabase, extraEnvironment: [String: String] = [:])
        async throws -> Run
    {
        let process = Process()
        process.executableURL = try workerBinary()
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["DATABASE_URL"] = nil
        environment["PGHOST"] = database.settings.host
        environment["PGPORT"] = String(database.settings.port)
        environment["PGUSER"] = database.settings.username
        environment["PGDATABASE"] = database.name
        environment.merge(extraEnvironment) { $1 }
        process.environment = environment
        let run = try await process.runToCompletion(mergingStandardError: true)
        return Run(status: run.status, output: run.output)
    }

    @Test("three workers migrating at once end with one consistent schema")
    func concurrentMigrate() async throws {
        let db = try await TestDatabase.empty()
        let directory = TestDatabase.migrationsDirectory.path
        let runs = try await withThrowingTaskGroup(of: Run.self) { group in
            for _ in 0..<3 {
                group.addTask { try await Self.runWorker(["migrate", "--dir", directory], database: db) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for run in runs { #expect(run.status == 0, "\(run.output)") }
        let files = try Migration.load(from: TestDatabase.migrationsDirectory)
        // Exactly one of the three applied each file; the others found it applied.
        let appliedLines = runs.flatMap { $0.output.split(separator: "\n").filter { $0.hasPrefix("applied ") } }
        #expect(appliedLines.count == files.count)
        try await db.withClient { client async throws in
            let rows = try await client.query("SELECT version, checksum FROM schema_migrations ORDER BY version")
            var recorded: [(Int, String)] = []
            for try await row in rows.decode((Int, String).self) { recorded.append(row) }
            #expect(recorded.map(\.0) == files.map(\.version))
            #expect(recorded.map(\.1) == files.map(\.checksum))
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            #expect(try await queue.enqueue(NewJob(kind: .noop)).created)
        }
    }

    @Test("an applied migration that was edited stops the run before anything is applied")
    func changedChecksum() async throws {
        let db = try await TestDatabase.empty()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let first = folder.appendingPathComponent("0001_first.sql")
        try "CREATE TABLE first_table (id int);".write(to: first, atomically: true, encoding: .utf8)
        #expect(try await Self.runWorker(["migrate", "--dir", folder.path], database: db).status == 0)

        try "CREATE TABLE first_table (id bigint);".write(to: first, atomically: true, encoding: .utf8)
        try "CREATE TABLE second_table (id int);".write(
            to: folder.appendingPathComponent("0002_second.sql"), atomically: true, encoding: .utf8)
        let run = try await Self.runWorker(["migrate", "--dir", folder.path], database: db)
        #expect(run.status != 0)
        #expect(run.output.contains("0001_first.sql was changed after it was applied"), "\(run.output)")
        try await db.withClient { client async throws in
            #expect(try await client.scalar("SELECT count(*)::int FROM schema_migrations", as: Int.self) == 1)
            #expect(
                try await client.scalar(
                    "SELECT count(*)::int FROM pg_tables WHERE tablename = 'second_table'", as: Int.self) == 0)
        }
    }

    @Test("a failing migration is rolled back whole and reported")
    func failingMigrationRollsBack() async throws {
        let db = try await TestDatabase.empty()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "CREATE TABLE half_done (id int); SELECT no_such_function();".write(
            to: folder.appendingPathComponent("0001_broken.sql"), atomically: true, encoding: .utf8)
        let run = try await Self.runWorker(["migrate", "--dir", folder.path], database: db)
        #expect(run.status != 0)
        #expect(run.output.contains("0001_broken.sql failed and was rolled back"), "\(run.output)")
        // The statement's own error, not the "transaction is aborted" of whatever ran next.
        #expect(run.output.contains("no_such_function"), "\(run.output)")
        #expect(!run.output.contains("25P02"), "\(run.output)")
        try await db.withClient { client async throws in
            #expect(
                try await client.scalar(
                    "SELECT count(*)::int FROM pg_tables WHERE tablename = 'half_done'", as: Int.self) == 0)
        }
    }

    @Test("a worker refuses to run on a schema that is behind and says what to run")
    func schemaBehind() async throws {
        let db = try await TestDatabase.empty()
        let run = try await Self.runWorker(["run", "--kinds", "noop"], database: db)
        #expect(run.status != 0)
        #expect(run.output.contains("run `worker migrate`"), "\(run.output)")
    }

    @Test("migration files are numbered without gaps and the code's schema version is the last one")
    func versionInStep() throws {
        let files = try Migration.load(from: TestDatabase.migrationsDirectory)
        #expect(files.last?.version == SchemaVersion.required)
    }

    @Test("0010 moves a job's cluster into a column of its own; no function, view, trigger or index reads a payload")
    func jobsClusterColumn() async throws {
        let db = try await TestDatabase.empty()
        let migrations = try Migration.load(from: TestDatabase.migrationsDirectory)
        try await db.withClient(maximumConnections: 1) { client in
            let migrator = Migrator(client: client, logger: TestDatabase.logger)
            _ = try await migrator.migrate(migrations.filter { $0.version < 10 })
            // A cluster with its provision job, and a job of another kind, as 0009 left them.
            try await client.query(
                """
                INSERT INTO clusters (id, owner, masters, agents, public_agents, instance_type, request, lifetime)
                VALUES ('c-00000b0010', 'ci', 1, 0, 0, 'm5.xlarge', '{}', '2 hours')
                """, logger: TestDatabase.logger)
            try await client.query(
                """
                INSERT INTO jobs (kind, payload) VALUES ('provision', '{"cluster_id": "c-00000b0010"}'),
                                                        ('noop', '{"note": "no cluster"}')
                """, logger: TestDatabase.logger)
            _ = try await migrator.migrate(migrations)
            let filled = try await client.scalar(
                """
                SELECT string_agg(kind || '=' || coalesce(cluster_id, 'null'), ',' ORDER BY id) FROM jobs
                """, as: String.self)
            #expect(filled == "provision=c-00000b0010,noop=null")
            // The generic queue's SQL leaves the payload to the job's handler.
            let readers = try await client.scalar(
                """
                SELECT coalesce(string_agg(name, ', ' ORDER BY name), '') FROM (
                    SELECT p.proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'public' AND p.prosrc ~ 'payload\\s*->>'
                    UNION ALL
                    SELECT viewname FROM pg_views WHERE schemaname = 'public' AND definition ~ 'payload\\s*->>'
                    UNION ALL
                    SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexdef ~ 'payload\\s*->>'
                    UNION ALL
                    SELECT tgname FROM pg_trigger WHERE NOT tgisinternal
                      AND pg_get_triggerdef(oid) ~ 'payload\\s*->>'
                ) readers
                """, as: String.self)
            #expect(readers == "", "these still read a job's payload: \(readers)")
            // A job can only name a cluster that exists.
            await #expect(throws: PSQLError.self) {
                try await client.query(
                    "INSERT INTO jobs (kind, cluster_id) VALUES ('teardown', 'c-ffffffffff')",
                    logger: TestDatabase.logger)
            }
        }
    }

    @Test("a misnamed migration file is refused")
    func misnamedFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "SELECT 1;".write(to: folder.appendingPathComponent("1_first.sql"), atomically: true, encoding: .utf8)
        let error = #expect(throws: QueueError.self) { try Migration.load(from: folder) }
        #expect(error?.code == .invalidMigration)
    }
}

@Suite("Database settings", .timeLimit(.minutes(3)))
struct DatabaseSettingsTests {
    @Test("DATABASE_URL wins over PG* variables; the PG* variables fill in otherwise")
    func environment() throws {
        let url = try DatabaseSettings.fromEnvironment([
            "DATABASE_URL": "postgres://alice:s%40cret@db.internal:6543/flotilla?sslmode=require", "PGHOST": "ignored",
        ])
        #expect(
            url
                == DatabaseSettings(
                    host: "db.internal", port: 6543, username: "alice", password: "s@cret", database: "flotilla",
                    sslMode: .require))
        let pg = try DatabaseSettings.fromEnvironment([
            "PGHOST": "127.0.0.1", "PGPORT": "5433", "PGUSER": "bob", "PGDATABASE": "jobs",
        ])
        #expect(pg == DatabaseSettings(host: "127.0.0.1", port: 5433, username: "bob", password: nil, database: "jobs"))
        // sslmode as libpq picks it: the URL's, else PGSSLMODE, else the caller's default.
        let plainURL = "postgres://alice@db.internal/flotilla"
        #expect(try DatabaseSettings.fromEnvironment(["DATABASE_URL": plainURL]).sslMode == .disable)
        #expect(
            try DatabaseSettings.fromEnvironment(["DATABASE_URL": plainURL], defaultSSLMode: .prefer).sslMode == .prefer
        )
        #expect(
            try DatabaseSettings.fromEnvironment(
                ["DATABASE_URL": plainURL, "PGSSLMODE": "require"], defaultSSLMode: .prefer
            ).sslMode == .require)
        #expect(
            try DatabaseSettings.fromEnvironment(["PGHOST": "db.internal"], defaultSSLMode: .prefer).sslMode == .prefer)
    }

    @Test("the fleet's pools run with a statement timeout and a lock timeout; a client's pool without")
    func fleetSessionLimits() async throws {
        let db = try await TestDatabase.migrated()
        func limits(_ configuration: PostgresClient.Configuration) async throws -> String {
            let client = PostgresClient(configuration: configuration, backgroundLogger: TestDatabase.logger)
            return try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask {
                    await client.run()
                    return nil
                }
                defer { group.cancelAll() }
                return try await client.scalar(
                    "SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')")
            }
        }
        #expect(try await limits(db.settings.fleetClientConfiguration(maximumConnections: 1)) == "1min 10s")
        #expect(try await limits(db.settings.leaseClientConfiguration(maximumConnections: 1)) == "1min 10s")
        #expect(try await limits(db.settings.clientConfiguration(maximumConnections: 1)) == "0 0")
    }

    @Test("a bad URL or port is refused without repeating the password")
    func refused() {
        let error = #expect(throws: QueueError.self) { try DatabaseSettings(url: "mysql://u:hunter2@h/db") }
        #expect(error?.message.contains("hunter2") == false)
        #expect(throws: QueueError.self) { try DatabaseSettings.fromEnvironment(["PGPORT": "99999"]) }
    }
}
