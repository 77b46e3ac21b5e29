import Dispatch
import Foundation
import Logging
import Synchronization

/// Bounds how long a process takes to stop once it is told to (SIGTERM or SIGINT), whatever
/// it waits for: a database or a node that no longer answers must not hold a `docker stop` or
/// a rolling update past its grace period. The service group shuts down gracefully first and
/// escalates to cancellation; if the process is still there `deadline` after the signal, this
/// says so and exits with status 1. Nothing is lost by that: a job the process held is claimed
/// again when its lease runs out, and the job's remote steps go on on the nodes meanwhile.
///
/// `@unchecked Sendable`: `sources` is written once, by `watch()`, before any signal can be
/// handled, and only kept (the sources must live as long as the process).
final class ShutdownDeadline: @unchecked Sendable {
    private let deadline: Duration
    private let logger: Logger
    private let armed = Atomic<Bool>(false)
    private let queue = DispatchQueue(label: "flotilla.shutdown-deadline")
    private var sources: [any DispatchSourceSignal] = []

    init(deadline: Duration, logger: Logger) {
        self.deadline = deadline
        self.logger = logger
    }

    /// Starts watching for the signals (the service group handles them too).
    func watch() {
        self.sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: self.queue)
            source.setEventHandler { [self] in self.signalled() }
            source.resume()
            return source
        }
    }

    private func signalled() {
        guard !self.armed.exchange(true, ordering: .relaxed) else { return }
        let seconds = Double(self.deadline.components.seconds) + Double(self.deadline.components.attoseconds) / 1e18
        self.queue.asyncAfter(deadline: .now() + seconds) { [self] in
            self.logger.error(
                "shutdown did not finish in time; exiting now (held jobs are claimed again when their leases run out)",
                metadata: ["deadline_seconds": "\(seconds)"])
            exit(1)
        }
    }
}
