import Queue

/// The handlers a worker runs, by job kind. The processor claims only these kinds.
struct JobHandlers: Sendable {
    var byKind: [JobKind: JobProcessor.Handler]

    var kinds: [JobKind] { self.byKind.keys.sorted { $0.rawValue < $1.rawValue } }

    func handle(_ job: ClaimedJob, _ context: JobContext) async throws {
        guard let handler = self.byKind[job.kind] else {
            throw PermanentJobFailure("this worker has no handler for job kind \(job.kind)")
        }
        try await handler(job, context)
    }

    static var standard: JobHandlers {
        JobHandlers(byKind: [
            .noop: { _, context in context.logger.debug("noop job ran") },
        ])
    }
}
