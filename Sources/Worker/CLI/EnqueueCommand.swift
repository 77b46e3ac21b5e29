import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Queue

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Enqueue a job by hand (operators, demos). Prints the job id.",
        discussion: """
            Example:
              worker enqueue --kind noop --payload '{"note": "hello"}'
            """
    )

    @Option(help: "The job kind (a row of job_kinds: noop, provision, teardown).")
    var kind: String

    @Option(help: "The payload, a JSON object.")
    var payload: String = "{}"

    @Option(help: "Higher runs first; 0 to 32767.")
    var priority: Int = 0

    @Option(help: "Attempts before the job ends failed; 1 to 1000.")
    var maxAttempts: Int = 5

    @Option(help: "Enqueueing the same key again returns the existing job.")
    var idempotencyKey: String?

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let logger = self.common.makeLogger()
        let job = NewJob(
            kind: JobKind(self.kind), payload: self.payload, priority: self.priority,
            maxAttempts: self.maxAttempts, idempotencyKey: self.idempotencyKey)
        do {
            try job.validate()
            let settings = try DatabaseSettings.fromEnvironment()
            let enqueued = try await settings.withClient(maximumConnections: 1, logger: logger) { client in
                try await JobQueue(client: client, logger: logger).enqueue(job)
            }
            print(enqueued.id)
        } catch let error as QueueError {
            fail(error.message)
        }
    }
}
