import Logging
import PostgresNIO

/// Listens on ``JobQueue/notificationChannel`` over a dedicated connection and hands each
/// notification's kind to `notified`; `notified(nil)` when the connection is (again) up, as
/// jobs may have arrived before `LISTEN` took effect. Reconnects with backoff when the
/// connection drops; polling covers the gap.
struct JobNotificationListener: Sendable {
    let settings: DatabaseSettings
    let logger: Logger
    let notified: @Sendable (String?) -> Void

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
                        self.notified(nil)
                        for try await notification in notifications {
                            self.notified(notification.payload)
                        }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                if Task.isCancelled { return }
                self.logger.warning(
                    "LISTEN connection failed; polling until it is back",
                    metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(10))
        }
    }
}
