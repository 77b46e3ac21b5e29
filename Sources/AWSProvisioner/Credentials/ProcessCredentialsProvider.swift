import Foundation
import Logging
import Synchronization
import Timing

/// Credentials from an external command, the shared config's `credential_process`: the
/// command line is run by `/bin/sh -c`, and must print JSON like
/// `{"Version": 1, "AccessKeyId": …, "SecretAccessKey": …, "SessionToken": …, "Expiration": "2026-…Z"}`.
/// Without `Expiration` the credentials are treated as long-term.
///
/// The command line and its output are never logged (either may carry secrets); only
/// the exit status and the first bytes of standard error on failure.
public struct ProcessCredentialsProvider: CredentialsProvider {
    public var command: String
    /// How long the command may run before it is killed.
    public var timeout: Duration

    public init(command: String, timeout: Duration = .seconds(60)) {
        self.command = command
        self.timeout = timeout
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        logger.debug("running credential_process")
        let (status, output, errorOutput) = try await run()
        guard status == 0 else {
            let excerpt = String(decoding: errorOutput.prefix(300), as: UTF8.self)
            throw CredentialsError(.processFailed, "credential_process exited with status \(status): \(excerpt)")
        }
        return try Self.decode(output)
    }

    static func decode(_ output: Data) throws -> AWSCredentials {
        try TemporaryCredentialsJSON.decode(output, source: "credential_process", failure: .processFailed)
    }

    private func run() async throws -> (Int32, Data, Data) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice

        // Both pipes are drained on their own threads while the command runs, so a chatty
        // command cannot block on a full pipe.
        async let outputData = Self.readToEnd(output.fileHandleForReading)
        async let errorData = Self.readToEnd(errors.fileHandleForReading)
        let status: Int32
        do {
            // Past the timeout the command is killed, and its exit is still awaited.
            let started = Mutex(false)
            let finished = try await withTimeout(timeout) {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        // Cancelled before it started: never start it (onCancel already ran).
                        guard !Task.isCancelled else { return continuation.resume(returning: Int32.min) }
                        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
                        do {
                            try process.run()
                            started.withLock { $0 = true }
                            // Cancelled while it started, after onCancel looked.
                            if Task.isCancelled { kill(process.processIdentifier, SIGKILL) }
                        } catch {
                            process.terminationHandler = nil
                            continuation.resume(returning: Int32.min)
                        }
                    }
                } onCancel: {
                    if started.withLock({ $0 }) { kill(process.processIdentifier, SIGKILL) }
                }
            }
            guard let finished else {
                throw CredentialsError(.processFailed, "credential_process did not finish within \(timeout)")
            }
            status = finished
        } catch {
            try? output.fileHandleForWriting.close()
            try? errors.fileHandleForWriting.close()
            _ = await (outputData, errorData)
            throw error
        }
        try? output.fileHandleForWriting.close()
        try? errors.fileHandleForWriting.close()
        if status == Int32.min {
            throw CredentialsError(.processFailed, "credential_process could not be started")
        }
        return (status, await outputData, await errorData)
    }

    private static func readToEnd(_ handle: FileHandle) async -> Data {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let data = (try? handle.readToEnd()) ?? Data()
                continuation.resume(returning: data)
            }
        }
    }
}
