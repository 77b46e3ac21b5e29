import ArgumentParser
import CommandOptions
import Foundation
import Queue

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Queue depth by state, the oldest runnable job's age, running jobs and failed jobs (operators).",
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
            let settings = try DatabaseSettings.fromEnvironment(defaultSSLMode: .prefer)
            // Through the client API (api_job_counts, api_jobs): a client login reads no table.
            let (countByState, oldestRunnableAge, running, failed) = try await settings.withClient(
                maximumConnections: 1, logger: logger
            ) { client in
                try await ClusterAPI(client: client, logger: logger).jobs()
            }
            func describe(_ job: JobQueue.JobSummary) -> [String: Any] {
                [
                    "id": job.id, "kind": job.kind, "cluster_id": job.clusterID as Any, "attempt": job.attempt,
                    "worker": job.worker as Any, "heartbeat_age_seconds": job.heartbeatAge as Any,
                    "last_error": job.lastError as Any,
                ]
            }
            let age = oldestRunnableAge.map { String(format: "%.1f", $0.seconds) }
            if self.options.json {
                var counts: [String: Int] = [:]
                for state in JobState.all { counts[state.rawValue] = countByState[state, default: 0] }
                printJSON([
                    "jobs_by_state": counts, "oldest_runnable_age_seconds": oldestRunnableAge.map { $0.seconds } as Any,
                    "running": running.map(describe), "failed": failed.map(describe),
                ])
            } else {
                for state in JobState.all {
                    let label = state.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                    print("\(label) \(countByState[state, default: 0])")
                }
                print("oldest runnable job waiting: \(age.map { "\($0) s" } ?? "none")")
                if !running.isEmpty {
                    print("\nrunning:")
                    for job in running {
                        let heartbeat = String(format: "%.1f", job.heartbeatAge ?? 0)
                        print(
                            "  job \(job.id) \(job.kind) \(job.clusterID ?? "") attempt \(job.attempt) "
                                + "on \(job.worker ?? "?"), last heartbeat \(heartbeat) s ago")
                    }
                }
                if !failed.isEmpty {
                    print("\nfailed (most recent first):")
                    for job in failed {
                        print(
                            "  job \(job.id) \(job.kind) \(job.clusterID ?? "") after \(job.attempt) attempts: "
                                + (job.lastError ?? "-"))
                    }
                }
            }
        } catch let error as QueueError {
            fail(error.message)
        }
    }
}
