import Synchronization

/// Group commit for completions: jobs that finish while a completion statement is in
/// flight are completed together by the next one. A lone job is written at once (no
/// timer), and under load one transaction completes many jobs, which is what lifts
/// throughput past one-commit-per-job.
///
/// One per ``JobQueue``, so the processors sharing a queue share its batches. A job's
/// result waits at most for the statement in flight and its own, and a statement carries
/// at most ``maximumBatch`` jobs, so that wait stays a few milliseconds however large the
/// load.
final class CompletionBatcher: Sendable {
    static let maximumBatch = 500

    private typealias Waiter = (job: ClaimedJob, continuation: CheckedContinuation<Bool, any Error>)
    private struct State {
        var pending: [Waiter] = []
        var flushing = false
    }

    private let state = Mutex(State())

    /// Completes `job` through `queue`; returns `false` when its lease was lost (nothing was written).
    func complete(_ job: ClaimedJob, queue: JobQueue) async throws -> Bool {
        try await withCheckedThrowingContinuation { continuation in
            let startFlusher = self.state.withLock { state -> Bool in
                state.pending.append((job, continuation))
                if state.flushing { return false }
                state.flushing = true
                return true
            }
            // The flusher is not a child of the caller: a worker shutting down must still
            // get its finished jobs written.
            if startFlusher { Task { await self.flush(queue) } }
        }
    }

    private func flush(_ queue: JobQueue) async {
        // Jobs that finish together (the handlers of one claim) are about to ask too: let
        // them, so the first statement completes them all. A yield, not a timer: a lone
        // job is still written at once.
        await Task.yield()
        while true {
            let batch = self.state.withLock { state -> [Waiter] in
                let batch = Array(state.pending.prefix(Self.maximumBatch))
                state.pending.removeFirst(batch.count)
                if batch.isEmpty { state.flushing = false }
                return batch
            }
            if batch.isEmpty { return }
            do {
                let lost = Set(try await queue.complete(batch: batch.map(\.job)))
                for waiter in batch { waiter.continuation.resume(returning: !lost.contains(waiter.job.id)) }
            } catch {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}
