import Logging
import PostgresNIO

/// Applies numbered migrations, each in its own transaction, under a session advisory
/// lock so that any number of workers starting at once apply each file exactly once.
///
/// Applied files are recorded in `schema_migrations` with their checksum; an applied file
/// whose checksum changed stops the run before anything is applied.
public struct Migrator: Sendable {
    /// The advisory lock key every migrator takes (`hashtext('flotilla.migrate')` would do
    /// as well; a constant keeps it readable in `pg_locks`).
    static let lockKey: Int64 = 0x466C_6F74_696C_6C61 // "Flotilla"

    public let client: PostgresClient
    public let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// What a run did.
    public struct Report: Sendable {
        public var applied: [Migration]
        public var alreadyApplied: Int
    }

    /// Applies the pending migrations in order and returns what it applied.
    @discardableResult
    public func migrate(_ migrations: [Migration]) async throws -> Report {
        try await self.client.withConnection { connection in
            for try await _ in try await connection.query(
                "SELECT pg_advisory_lock(\(Self.lockKey))", logger: self.logger)
            {}
            do {
                let report = try await self.migrateLocked(migrations, on: connection)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: self.logger)
                return report
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: self.logger)
                throw error
            }
        }
    }

    /// Refuses to migrate while any role but the owner (and superusers) may create objects in
    /// schema public: the default of PostgreSQL 14 and older, kept by a database upgraded from
    /// one. A login could plant a function or an operator there that a SECURITY DEFINER
    /// function then resolves, and runs as the owner.
    static func requireOwnedPublicSchema(on connection: PostgresConnection, logger: Logger) async throws {
        let rows = try await connection.query(
            """
            SELECT coalesce(string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,
                                       ', '), '')
            FROM pg_namespace n
            CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
            LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE n.nspname = 'public' AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
              AND (a.grantee = 0 OR NOT pg_has_role(current_user, a.grantee, 'MEMBER'))
              AND NOT coalesce(r.rolsuper, false)
            """, logger: logger)
        var writers = ""
        for try await value in rows.decode(String.self) { writers = value }
        guard writers.isEmpty else {
            throw QueueError(
                .invalidInput,
                "schema public lets \(writers) create objects, where a login could plant a function that Flotilla's "
                    + "SECURITY DEFINER functions would run as the owner (PostgreSQL 14 and older allow it by "
                    + "default): run REVOKE CREATE ON SCHEMA public FROM \(writers); then migrate again (if this "
                    + "login could create there only through them, first make it the schema's owner: "
                    + "ALTER SCHEMA public OWNER TO it)")
        }
    }

    private func migrateLocked(_ migrations: [Migration], on connection: PostgresConnection) async throws -> Report {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: self.logger)
        // A multi-statement file cannot go through the extended protocol; a temporary
        // function runs it with EXECUTE, which accepts several statements, and lets the
        // file's text travel as a bound parameter.
        try await connection.query(
            """
            CREATE OR REPLACE FUNCTION pg_temp.flotilla_run_migration(sql text) RETURNS void
            LANGUAGE plpgsql AS $$ BEGIN EXECUTE sql; END $$
            """, logger: self.logger)

        let applied = try await Self.appliedVersions(on: connection, logger: self.logger)
        try Self.verify(applied: applied, against: migrations)
        try await Self.requireOwnedPublicSchema(on: connection, logger: self.logger)

        var report = Report(applied: [], alreadyApplied: applied.count)
        for migration in migrations where applied[migration.version] == nil {
            self.logger.info(
                "applying migration",
                metadata: ["migration": "\(String(format: "%04d", migration.version))_\(migration.name)"])
            // Roles and their grants live in catalogs the whole server shares: two databases
            // migrated at the same moment can collide there ("tuple concurrently updated").
            // Such a collision rolls back cleanly, and the migration is tried again.
            var attempt = 1
            while true {
                do {
                    try await connection.withTransaction(logger: self.logger) { connection in
                        // A SELECT answers with its row description before it runs: its error
                        // arrives with the rows, so they are read, or the error would surface
                        // only as "transaction is aborted" on the next statement.
                        let rows = try await connection.query(
                            "SELECT pg_temp.flotilla_run_migration(\(migration.sql))", logger: self.logger)
                        for try await _ in rows {}
                        try await connection.query(
                            """
                            INSERT INTO schema_migrations (version, name, checksum)
                            VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                            """, logger: self.logger)
                    }
                    break
                } catch {
                    let text = Self.describe(error)
                    if attempt < 5, Self.collidedOnSharedCatalog(text) {
                        attempt += 1
                        try await Task.sleep(for: .milliseconds(100 * attempt))
                        continue
                    }
                    throw QueueError(
                        .invalidMigration,
                        "migration \(String(format: "%04d", migration.version))_\(migration.name).sql failed and was "
                            + "rolled back: \(text)",
                        underlying: error)
                }
            }
            report.applied.append(migration)
        }
        return report
    }

    static func appliedVersions(on connection: PostgresConnection, logger: Logger) async throws -> [Int: (
        name: String, checksum: String
    )] {
        var applied: [Int: (name: String, checksum: String)] = [:]
        let rows = try await connection.query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version", logger: logger)
        for try await (version, name, checksum) in rows.decode((Int, String, String).self) {
            applied[version] = (name, checksum)
        }
        return applied
    }

    static func verify(applied: [Int: (name: String, checksum: String)], against migrations: [Migration]) throws {
        let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.version, $0) })
        for (version, record) in applied.sorted(by: { $0.key < $1.key }) {
            guard let migration = known[version] else {
                throw QueueError(
                    .schemaAhead,
                    "the database has migration \(String(format: "%04d", version))_\(record.name) applied, which this "
                        + "build does not have; run a newer worker")
            }
            guard migration.checksum == record.checksum else {
                throw QueueError(
                    .migrationChanged,
                    """
                    migration \(String(format: "%04d", version))_\(migration.name).sql was changed after it was \
                    applied (checksum \(record.checksum.prefix(12))… recorded, \(migration.checksum.prefix(12))… now); \
                    restore the file and put the change in a new migration
                    """)
            }
        }
    }

    /// The schema version (highest applied migration), or 0 when none is applied.
    public static func currentVersion(client: PostgresClient, logger: Logger) async throws -> Int {
        do {
            let rows = try await client.query("SELECT coalesce(max(version), 0) FROM schema_migrations", logger: logger)
            for try await version in rows.decode(Int.self) { return version }
            return 0
        } catch let error as PSQLError where error.sqlState == SQLState.undefinedTable {
            return 0
        }
    }

    /// Throws a clear error when the database's schema is not the one this binary was
    /// built for. Workers call it at start.
    public static func checkSchema(client: PostgresClient, required: Int = SchemaVersion.required, logger: Logger)
        async throws
    {
        let current = try await currentVersion(client: client, logger: logger)
        if current < required {
            throw QueueError(
                .schemaBehind,
                "the database schema is at version \(current) but this worker needs \(required): "
                    + "run `worker migrate` first")
        }
        if current > required {
            throw QueueError(
                .schemaAhead,
                "the database schema is at version \(current), newer than this worker's \(required): "
                    + "deploy a newer worker")
        }
    }

    /// Roles are the server's, not the database's: two databases creating the same role at once
    /// collide on pg_authid (a unique violation), grants on the same role collide as "tuple
    /// concurrently updated". Both roll back cleanly and succeed when tried again.
    static func collidedOnSharedCatalog(_ text: String) -> Bool {
        text.contains("tuple concurrently updated") || text.contains("deadlock detected")
            || text.contains("pg_authid_rolname_index")
    }

    static func describe(_ error: any Error) -> String {
        DatabaseErrorDescription.describe(error)
    }
}

/// The schema version this build of Flotilla was written against: the number of the last
/// file in `migrations/`. A test keeps the two in step.
public enum SchemaVersion {
    public static let required = 24
}
