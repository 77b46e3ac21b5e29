import Logging
import PostgresNIO
import Queue

/// `worker web` serves only as an operator: a member of flotilla_operator that can read
/// neither the key nor the token tables. A login that could read a secret (the owner, a
/// superuser, a worker) is refused, so nothing the page serves can ever hold one.
package enum OperatorLogin {
    package static func require(_ client: PostgresClient, logger: Logger) async throws {
        do {
            let rows = try await client.query(
                """
                SELECT current_user::text,
                       pg_has_role(current_user, 'flotilla_operator', 'MEMBER'),
                       has_table_privilege(current_user, 'cluster_secrets', 'SELECT')
                           OR has_table_privilege(current_user, 'cluster_tokens', 'SELECT')
                           OR has_column_privilege(current_user, 'cluster_secrets', 'private_key', 'SELECT')
                """, logger: logger)
            for try await (login, isOperator, readsSecrets) in rows.decode((String, Bool, Bool).self) {
                if readsSecrets {
                    throw QueueError(
                        .configuration,
                        """
                        worker web refuses login \(login): it can read cluster secrets (keys, tokens). Log in as a \
                        member of flotilla_operator only: CREATE ROLE fleet_page LOGIN IN ROLE flotilla_operator
                        """)
                }
                if !isOperator {
                    throw QueueError(
                        .configuration,
                        "worker web refuses login \(login): it is not a member of flotilla_operator "
                            + "(GRANT flotilla_operator TO \(login))")
                }
            }
        } catch let error as PSQLError {
            throw QueueError(
                .database, "worker web cannot check its login: \(DatabaseErrorDescription.describe(error))",
                underlying: error)
        }
    }
}
