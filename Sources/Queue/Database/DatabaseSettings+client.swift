import Logging
import PostgresNIO

extension DatabaseSettings {
    /// Runs `body` with a running `PostgresClient`, then shuts the client down. For
    /// short-lived commands (`worker migrate`, `client …`); long-lived processes put the
    /// client in their `ServiceGroup` instead.
    public func withClient<T: Sendable>(
        maximumConnections: Int = 4,
        logger: Logger,
        _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        // The pool's own warnings (such as a lease asked for a moment before `run()` starts)
        // are noise for a short-lived command; its failures still reach `body` as errors.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .error)
        let client = PostgresClient(configuration: try self.clientConfiguration(maximumConnections: maximumConnections),
                                    backgroundLogger: poolLogger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }
}
