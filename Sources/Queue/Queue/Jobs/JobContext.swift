import Foundation
import Logging
import Synchronization

/// What a job handler gets besides the job: a logger with the job's metadata, and the
/// lease fence to check before every side effect outside the database.
public final class JobContext: Sendable {
    public let job: ClaimedJob
    public let logger: Logger
    let queue: JobQueue
    let stop: Mutex<JobStopReason?>

    init(job: ClaimedJob, logger: Logger, queue: JobQueue) {
        self.job = job
        self.logger = logger
        self.queue = queue
        self.stop = Mutex(nil)
    }

    /// Whether the job was told to stop (cancel requested, or its lease lost).
    public var isStopping: Bool { self.stop.withLock { $0 != nil } }

    /// Renews the lease now and throws ``QueueError/Code/leaseLost`` when this worker no
    /// longer holds it (or `CancellationError` when the job was cancelled). Call it before
    /// each call that changes something outside the database: a worker that lost its lease
    /// must stop touching the job's resources.
    public func ensureLease() async throws {
        if let reason = self.stop.withLock({ $0 }) { throw reason.error(for: self.job) }
        let beat: JobQueue.Heartbeat
        do {
            beat = try await self.queue.heartbeat(self.job)
        } catch let error as QueueError where error.code == .leaseLost {
            self.stop.withLock { $0 = .leaseLost }
            throw error
        }
        if beat.cancelRequested {
            self.stop.withLock { $0 = $0 ?? .cancelRequested }
            throw CancellationError()
        }
    }

    /// `true` once the worker knows it must stop (lease lost or cancel requested).
    public var shouldStop: Bool { self.stop.withLock { $0 != nil } }
}

/// Why a worker stopped a job before its handler returned.
enum JobStopReason: Sendable {
    case leaseLost
    case cancelRequested

    func error(for job: ClaimedJob) -> any Error {
        switch self {
        case .leaseLost:
            return QueueError(.leaseLost, "job \(job.id): this worker no longer holds the lease")
        case .cancelRequested:
            return CancellationError()
        }
    }
}

/// Thrown by a handler for a failure that a retry cannot fix (bad payload, refused
/// credentials): the job ends `failed` at once.
public struct PermanentJobFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// A short word for what failed (for metrics), when the thrower knows one.
    public var reason: String?
    public init(_ message: String, reason: String? = nil) {
        self.message = message
        self.reason = reason
    }
    public var description: String { self.message }
}

/// Throw from a handler to put the job back for later without spending an attempt: the
/// job cannot run yet (another job still holds what it needs), which is not a failure.
public struct JobSnooze: Error, CustomStringConvertible, Sendable {
    public var delay: Duration
    public var reason: String
    public init(for delay: Duration, _ reason: String) {
        self.delay = delay
        self.reason = reason
    }
    public var description: String { "not yet (\(self.reason)); again in \(self.delay)" }
}
