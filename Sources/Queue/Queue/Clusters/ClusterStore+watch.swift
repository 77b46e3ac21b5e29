import Logging
import PostgresNIO

extension ClusterStore {
    /// Calls `changed` each time cluster `id` changes (state, phase, expiry, release), on
    /// its own connection, until the task is cancelled or the connection fails. NOTIFY is
    /// a hint: callers poll as well, so a listener that cannot connect returns quietly.
    public static func watch(
        _ id: String, settings: DatabaseSettings, logger: Logger,
        changed: @escaping @Sendable () -> Void
    ) async {
        guard let configuration = try? settings.connectionConfiguration(),
            let connection = try? await PostgresConnection.connect(configuration: configuration, id: 9, logger: logger)
        else { return }
        _ = try? await connection.listen(on: Self.notificationChannel) { notifications in
            for try await notification in notifications where notification.payload == id { changed() }
        }
        try? await connection.close()
    }
}
