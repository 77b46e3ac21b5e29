import Queue

/// The handlers a worker runs, by job kind. The processor claims only these kinds.
package struct JobHandlers: Sendable {
    package var byKind: [JobKind: JobProcessor.Handler]

    package init(byKind: [JobKind: JobProcessor.Handler]) {
        self.byKind = byKind
    }

    package var kinds: [JobKind] { self.byKind.keys.sorted { $0.rawValue < $1.rawValue } }

    package func handle(_ job: ClaimedJob, _ context: JobContext) async throws {
        guard let handler = self.byKind[job.kind] else {
            throw PermanentJobFailure("this worker has no handler for job kind \(job.kind)")
        }
        try await handler(job, context)
    }

    /// The handlers Flotilla ships: noop always; provision and teardown with AWS.
    package static func standard(store: ClusterStore, aws: AWSContext?) -> JobHandlers {
        var byKind: [JobKind: JobProcessor.Handler] = [
            .noop: { _, context in context.logger.debug("noop job ran") }
        ]
        if let aws {
            let jobs = ClusterJobs(store: store, aws: aws)
            byKind[.provision] = { job, context in try await jobs.provision(job, context) }
            byKind[.teardown] = { job, context in try await jobs.teardown(job, context) }
        }
        return JobHandlers(byKind: byKind)
    }

    package func only(_ kinds: Set<JobKind>) -> JobHandlers {
        JobHandlers(byKind: self.byKind.filter { kinds.contains($0.key) })
    }
}
