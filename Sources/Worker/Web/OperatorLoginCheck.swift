import Logging
import PostgresNIO
import Queue
import ServiceLifecycle

/// Runs `services` once the login is known to be an operator's: a member of
/// flotilla_operator that can read neither the key nor the token tables, and the schema is
/// current. A login that could read a secret (the owner, a superuser, a worker) is refused,
/// so nothing the page serves can ever hold one.
public struct OperatorLoginCheck: Service {
    let client: PostgresClient
    let settings: DatabaseSettings
    let services: [any Service]
    let logger: Logger

    public init(client: PostgresClient, settings: DatabaseSettings, services: [any Service], logger: Logger) {
        self.client = client
        self.settings = settings
        self.services = services
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await self.check()
        } catch let error as PSQLError {
            throw QueueError(.database, "worker web cannot start: \(DatabaseErrorDescription.describe(error))", underlying: error)
        }
        try await ServiceGroup(configuration: .init(services: self.services.map { .init(service: $0) }, logger: self.logger)).run()
    }

    private func check() async throws {
        try await self.settings.checkReachable(logger: self.logger)
        try await Migrator.checkSchema(client: self.client, logger: self.logger)
        let rows = try await self.client.query("""
            SELECT current_user::text,
                   pg_has_role(current_user, 'flotilla_operator', 'MEMBER'),
                   has_table_privilege(current_user, 'cluster_secrets', 'SELECT')
                       OR has_table_privilege(current_user, 'cluster_tokens', 'SELECT')
                       OR has_column_privilege(current_user, 'cluster_secrets', 'private_key', 'SELECT')
            """, logger: self.logger)
        for try await (login, isOperator, readsSecrets) in rows.decode((String, Bool, Bool).self) {
            if readsSecrets {
                throw QueueError(.configuration, "worker web refuses login \(login): it can read cluster secrets (keys, tokens). Log in as a member of flotilla_operator only: CREATE ROLE fleet_page LOGIN IN ROLE flotilla_operator")
            }
            if !isOperator {
                throw QueueError(.configuration, "worker web refuses login \(login): it is not a member of flotilla_operator (GRANT flotilla_operator TO \(login))")
            }
        }
    }
}
