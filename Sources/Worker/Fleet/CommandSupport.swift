import ArgumentParser
import Foundation
import Logging

/// Options every subcommand shares.
public struct CommonOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical. Env: FLOTILLA_LOG_LEVEL.")
    public var logLevel: String = ProcessInfo.processInfo.environment["FLOTILLA_LOG_LEVEL"] ?? "info"

    public func validate() throws {
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Bootstraps logging once and returns the executable's root logger.
    public func makeLogger(label: String = "flotilla.worker") -> Logger {
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
public func environmentValue<T: LosslessStringConvertible>(_ name: String, default value: T) -> T {
    ProcessInfo.processInfo.environment[name].flatMap(T.init) ?? value
}

/// Prints a refusal for a person and exits non-zero.
public func fail(_ message: String, code: Int32 = 1) -> Never {
    let program = URL(fileURLWithPath: CommandLine.arguments.first ?? "worker").lastPathComponent
    FileHandle.standardError.write(Data("\(program): \(message)\n".utf8))
    exit(code)
}
