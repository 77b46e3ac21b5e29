import Foundation
import Logging
import PostgresNIO
import Queue
import ServiceLifecycle
import Synchronization

/// One LISTEN connection for the whole process (`flotilla_clusters`, `flotilla_jobs`),
/// fanned out in memory to every open page: each subscriber gets a stream that holds at
/// most one pending change, so a burst of notifications becomes one refresh. It reconnects
/// with a backoff when the connection drops; on shutdown every stream ends.
package final class ChangeFeed: Service, Sendable {
    let settings: DatabaseSettings
    let logger: Logger
    private let subscribers = Mutex<(next: Int, all: [Int: AsyncStream<String>.Continuation], closed: Bool)>(
        (0, [:], false))

    package static let channels = ["flotilla_clusters", "flotilla_jobs"]

    package init(settings: DatabaseSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// A stream of change hints (the notification's payload); it ends when the feed stops.
    package func subscribe() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
        let id: Int? = self.subscribers.withLock { state in
            guard !state.closed else { return nil }
            state.next += 1
            state.all[state.next] = continuation
            return state.next
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.all.removeValue(forKey: id) }
        }
        return stream
    }

    package var subscriberCount: Int { self.subscribers.withLock { $0.all.count } }

    func publish(_ payload: String) {
        for continuation in self.subscribers.withLock({ Array($0.all.values) }) {
            continuation.yield(payload)
        }
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            var delay = Duration.milliseconds(250)
            while !Task.isCancelled {
                do {
                    try await self.listenOnce()
                    delay = .milliseconds(250)
                } catch {
                    if Task.isCancelled { break }
                    self.logger.warning(
                        "change feed: LISTEN connection lost; reconnecting", metadata: ["error": "\(error)"])
                }
                // Anything may have changed while no one listened.
                self.publish("reconnected")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
        let all = self.subscribers.withLock { state in
            state.closed = true
            return Array(state.all.values)
        }
        for continuation in all { continuation.finish() }
    }

    private func listenOnce() async throws {
        let connection = try await PostgresConnection.connect(
            configuration: try self.settings.connectionConfiguration(),
            id: 1, logger: self.logger)
        defer { Task { try? await connection.close() } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for channel in Self.channels {
                group.addTask {
                    try await connection.listen(on: channel) { notifications in
                        for try await notification in notifications { self.publish(notification.payload) }
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
