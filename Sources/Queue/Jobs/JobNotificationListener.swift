import Logging
import PostgresNIO

/// Listens on ``JobQueue/notificationChannel`` over a dedicated connection and calls
/// `wake` for every notification whose kind is one of `kinds`. Reconnects with backoff
/// when the connection drops; polling covers the gap.
struct JobNotificationListener: Sendable {
    let settings: DatabaseSettings
    let kinds: Set<String>
    let logger: Logger
    let wake: @Sendable () -> Void

    func run() async {
        var backoff: Duration = .milliseconds(100)
        while !Task.isCancelled {
            do {
                let configuration = try self.settings.connectionConfiguration()
                let connection = try await PostgresConnection.connect(
                    configuration: configuration, id: 0, logger: self.logger)
                do {
                    try await connection.listen(on: JobQueue.notificationChannel) { notifications in
                        backoff = .milliseconds(100)
                        // Jobs may have arrived before LISTEN took effect.
                        self.wake()
                        for try await notification in notifications where self.kinds.contains(notification.payload) {
                            self.wake()
                        }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                if Task.isCancelled { return }
                self.logger.warning("LISTEN connection failed; polling until it is back",
                                    metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(10))
        }
    }
}
