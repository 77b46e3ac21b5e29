import ArgumentParser
import CommandOptions
import Foundation
import Logging
import Queue
import Telemetry

@main
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Ask Flotilla for DC/OS clusters and inspect the pool.",
        discussion: """
            The client talks only to PostgreSQL, found through DATABASE_URL
            (postgres://user:password@host:port/database) or the standard PG* variables.

            Exit codes: 0 success; 1 refused, failed or timed out; 64 bad usage (a message says what is accepted).
            """,
        subcommands: [
            RequestCommand.self, RunCommand.self, StatusCommand.self, ListCommand.self, WaitCommand.self,
            ExtendCommand.self, ReleaseCommand.self, KeyCommand.self, LogsCommand.self, JobsCommand.self,
            CostCommand.self, ExecCommand.self, SendFileCommand.self, DownloadFileCommand.self, SyncCommand.self,
            PoolsCommand.self, ImagesCommand.self, DoctorCommand.self, InstallCommand.self,
        ]
    )
}

struct ClientOptions: ParsableArguments {
    @Flag(help: "Print JSON instead of a table.")
    var json = false

    @Flag(name: .shortAndLong, help: "More log detail: -v the driver's notices, -vv its debug lines.")
    var verbose: Int

    @Option(
        help:
            "Log lines (errors of the database driver) as text or json, one object per line. Env: FLOTILLA_LOG_FORMAT.")
    var logFormat: LogFormat =
        ProcessInfo.processInfo.environment["FLOTILLA_LOG_FORMAT"].flatMap(LogFormat.init(rawValue:)) ?? .text

    func validate() throws {
        try LogFormat.validateEnvironment()
    }

    func makeLogger() -> Logger {
        LogFormat.bootstrap(self.logFormat, level: self.verbose >= 2 ? .debug : self.verbose == 1 ? .info : .error)
        return Logger(label: "flotilla.client")
    }
}

/// A command's one answer: `object` as JSON with `--json`, else `text`.
func printAnswer(json: Bool, _ object: @autoclosure () -> Any, text: @autoclosure () -> String) {
    if json { printJSON(object()) } else { print(text()) }
}

func printJSON(_ object: Any) {
    let data =
        (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data("{}".utf8)
    print(String(decoding: data, as: UTF8.self))
}
