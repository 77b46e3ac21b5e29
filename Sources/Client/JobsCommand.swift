import ArgumentParser
import Foundation
import Queue

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Queue depth by state and the age of the oldest runnable job (operators).",
        discussion: """
            Example:
              client jobs
              client jobs --json
            """
    )

    @OptionGroup var options: ClientOptions

    func run() async throws {
        let logger = self.options.makeLogger()
        do {
            let settings = try DatabaseSettings.fromEnvironment()
            let stats = try await settings.withClient(maximumConnections: 1, logger: logger) { client in
                try await JobQueue(client: client, logger: logger).stats()
            }
            let age = stats.oldestRunnableAge.map { String(format: "%.1f", $0.seconds) }
            if self.options.json {
                var counts: [String: Int] = [:]
                for state in JobState.all { counts[state.rawValue] = stats.countByState[state, default: 0] }
                printJSON(["jobs_by_state": counts, "oldest_runnable_age_seconds": stats.oldestRunnableAge.map { $0.seconds } as Any])
            } else {
                for state in JobState.all {
                    print("\(state.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(stats.countByState[state, default: 0])")
                }
                print("oldest runnable job waiting: \(age.map { "\($0) s" } ?? "none")")
            }
        } catch let error as QueueError {
            fail(error.message)
        }
    }
}
