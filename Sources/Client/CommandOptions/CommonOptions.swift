import ArgumentParser
import Foundation
import Logging
import Queue
import Telemetry

/// Options every subcommand shares.
package struct CommonOptions: ParsableArguments, Sendable {
    package init() {}

    @Option(
        name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical. Env: FLOTILLA_LOG_LEVEL.")
    package var logLevel: String = ProcessInfo.processInfo.environment["FLOTILLA_LOG_LEVEL"] ?? "info"

    @Option(
        help: """
            Log lines as text, for people, or json, one object per line with dotted keys (cluster.id, job.id, \
            aws.action, ssh.host, …). Env: FLOTILLA_LOG_FORMAT.
            """
    )
    package var logFormat: LogFormat =
        ProcessInfo.processInfo.environment["FLOTILLA_LOG_FORMAT"].flatMap(LogFormat.init(rawValue:)) ?? .text

    package func validate() throws {
        try LogFormat.validateEnvironment()
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Bootstraps logging once and returns the executable's root logger.
    package func makeLogger(label: String = "flotilla.worker") -> Logger {
        LogFormat.bootstrap(self.logFormat, level: Logger.Level(rawValue: self.logLevel) ?? .info)
        return Logger(label: label)
    }
}

/// Reads a numeric setting from the environment, for option defaults.
package func environmentValue<T: LosslessStringConvertible>(_ name: String, default value: T) -> T {
    ProcessInfo.processInfo.environment[name].flatMap(T.init) ?? value
}

/// Prints a refusal for a person (`PROGRAM: message` on standard error) and exits with
/// `code`. Only the executables call it; the libraries throw.
package func fail(_ message: String, code: Int32 = 1) -> Never {
    let program = URL(fileURLWithPath: CommandLine.arguments.first ?? "worker").lastPathComponent
    FileHandle.standardError.write(Data("\(program): \(message)\n".utf8))
    exit(code)
}

extension LogFormat: ExpressibleByArgument {
    /// A `FLOTILLA_LOG_FORMAT` that names no format is refused, not ignored.
    package static func validateEnvironment() throws {
        if let raw = ProcessInfo.processInfo.environment["FLOTILLA_LOG_FORMAT"], LogFormat(rawValue: raw) == nil {
            throw ValidationError("FLOTILLA_LOG_FORMAT must be text or json, not \(raw)")
        }
    }
}
