import Logging
import PostgresNIO

extension DatabaseSettings {
    /// Runs `body` with a running `PostgresClient`, then shuts the client down. For
    /// short-lived commands (`worker migrate`, `client …`); long-lived processes put the
    /// client in their `ServiceGroup` instead. With `idleTimeout`, a connection left unused
    /// that long is closed (and no keep-alive query runs): a command that mostly waits holds
    /// no connection between its queries.
    public func withClient<T: Sendable>(
        maximumConnections: Int = 4,
        idleTimeout: Duration? = nil,
        connectPatience: Duration = .zero,
        logger: Logger,
        _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        // The pool's own warnings (such as a lease asked for a moment before `run()` starts)
        // are noise for a short-lived command; its failures still reach `body` as errors.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .error)
        // The pool retries a refused connection for ever; a person wants to hear at once
        // (unless the server is only full, for at most `connectPatience`).
        try await self.checkReachable(logger: logger, patience: connectPatience)
        var configuration = try self.clientConfiguration(maximumConnections: maximumConnections)
        if let idleTimeout {
            configuration.options.connectionIdleTimeout = idleTimeout
            configuration.options.keepAliveBehavior = nil
        }
        let client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
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

extension DatabaseSettings {
    /// Opens one connection and closes it again; throws a ``QueueError`` that says why the
    /// database cannot be reached ("cannot connect to 127.0.0.1:5432: connection refused",
    /// an authentication failure, a database that does not exist).
    ///
    /// A server at its connection limit ("too many connections", for the server or for this
    /// login's `CONNECTION LIMIT`) is tried again for up to `patience`, after pauses that grow
    /// from 0.2 s to 5 s, jittered: a crowd of agents started together then spreads out
    /// instead of failing.
    public func checkReachable(logger: Logger, patience: Duration = .zero) async throws {
        let deadline = ContinuousClock.now + patience
        var pause = Duration.milliseconds(200)
        var told = false
        while true {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try self.connectionConfiguration(), id: 0, logger: logger)
                try? await connection.close()
                return
            } catch let error as QueueError {
                throw error
            } catch let error as PSQLError
                where error.serverInfo?[.sqlState] == "53300" && ContinuousClock.now + pause < deadline
            {
                if !told {
                    logger.warning(
                        "the database is at its connection limit; trying again",
                        metadata: ["for at most": "\(Int(patience.seconds)) s"])
                    told = true
                }
                try await Task.sleep(for: pause * Double.random(in: 0.5...1.5))
                pause = min(pause * 2, .seconds(5))
            } catch {
                throw QueueError(
                    .database, DatabaseErrorDescription.describe(error, host: self.host, port: self.port),
                    underlying: error)
            }
        }
    }
}
