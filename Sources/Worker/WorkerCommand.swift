import ArgumentParser
import Foundation
import Logging

@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Flotilla's worker: applies migrations, runs jobs, keeps the pool clean.",
        discussion: """
            Every part of Flotilla shares one PostgreSQL database, found through DATABASE_URL
            (postgres://user:password@host:port/database) or the standard PGHOST, PGPORT, PGUSER,
            PGPASSWORD and PGDATABASE variables.

            Typical start:
              worker migrate            apply pending migrations (safe to run from many workers at once)
              worker run --concurrency 4
            """,
        subcommands: [MigrateCommand.self, RunCommand.self, JanitorCommand.self, EnqueueCommand.self, BenchQueueCommand.self]
    )
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical. Env: FLOTILLA_LOG_LEVEL.")
    var logLevel: String = ProcessInfo.processInfo.environment["FLOTILLA_LOG_LEVEL"] ?? "info"

    func validate() throws {
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Bootstraps logging once and returns the executable's root logger.
    func makeLogger(label: String = "flotilla.worker") -> Logger {
        let level = Logger.Level(rawValue: self.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

/// Reads a numeric setting from the environment, for option defaults.
func environmentValue<T: LosslessStringConvertible>(_ name: String, default value: T) -> T {
    ProcessInfo.processInfo.environment[name].flatMap(T.init) ?? value
}

/// Prints a refusal for a person and exits non-zero.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("worker: \(message)\n".utf8))
    exit(code)
}
