import Logging
import PostgresNIO
import ServiceLifecycle

/// Checks the schema version once the PostgreSQL client runs, then runs `services` side by
/// side in a nested `ServiceGroup` (which passes graceful shutdown on to each). A schema
/// that is behind stops the process with a message saying to run `worker migrate`;
/// `precondition` may refuse to start for a reason of its own (`worker web`: a login that
/// could read a secret).
public struct SchemaCheckedServices: Service {
    let client: PostgresClient
    let settings: DatabaseSettings
    let services: [any Service]
    let precondition: @Sendable (PostgresClient) async throws -> Void
    let logger: Logger

    public init(
        client: PostgresClient, settings: DatabaseSettings, services: [any Service], logger: Logger,
        precondition: @escaping @Sendable (PostgresClient) async throws -> Void = { _ in }
    ) {
        self.client = client
        self.settings = settings
        self.services = services
        self.precondition = precondition
        self.logger = logger
    }

    public func run() async throws {
        try await self.settings.checkReachable(logger: self.logger)
        try await Migrator.checkSchema(client: self.client, logger: self.logger)
        try await self.precondition(self.client)
        let group = ServiceGroup(
            configuration: .init(
                services: self.services.map { .init(service: $0) }, logger: self.logger))
        try await group.run()
    }
}
