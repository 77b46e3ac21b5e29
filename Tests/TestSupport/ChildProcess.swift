import Foundation

/// Runs blocking work (a pipe read, waiting for a process to exit) on a thread of its own, so it
/// never holds one of the threads of Swift's cooperative pool (two on this machine), which
/// every other test running at the same time needs to make progress.
package func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// What a child process left when it ended.
package struct ChildOutput: Sendable {
    /// The exit status as a shell reports it: 128 + the signal's number when a signal ended it.
    package var status: Int32
    /// Whether an uncaught signal ended the process (rather than `exit`).
    package var signalled: Bool
    package var standardOutput: Data
    /// Empty when the process was run with `mergingStandardError`.
    package var standardError: Data

    package var output: String { String(decoding: self.standardOutput, as: UTF8.self) }
    package var errors: String { String(decoding: self.standardError, as: UTF8.self) }
}

extension Process {
    /// The exit status as a shell reports it, and whether a signal ended the process.
    package var shellStatus: (status: Int32, signalled: Bool) {
        self.terminationReason == .uncaughtSignal
            ? (128 + self.terminationStatus, true) : (self.terminationStatus, false)
    }

    /// Starts the process (configured by the caller: executable, arguments, environment),
    /// collects its standard output and error, and awaits its exit, all off the cooperative
    /// pool. With `mergingStandardError` both streams go to `standardOutput`, interleaved as
    /// the process wrote them.
    package func runToCompletion(mergingStandardError: Bool = false) async throws -> ChildOutput {
        let out = Pipe()
        let err = mergingStandardError ? out : Pipe()
        self.standardOutput = out
        self.standardError = err
        try self.run()
        let outHandle = out.fileHandleForReading
        let errHandle = err.fileHandleForReading
        async let stdout = offPool { try outHandle.readToEnd() ?? Data() }
        async let stderr = offPool { mergingStandardError ? Data() : try errHandle.readToEnd() ?? Data() }
        let (o, e) = try await (stdout, stderr)
        try await offPool { self.waitUntilExit() }
        let (status, signalled) = self.shellStatus
        return ChildOutput(status: status, signalled: signalled, standardOutput: o, standardError: e)
    }

    /// Awaits the exit of a process started elsewhere (off the pool), up to `timeout`; `nil`
    /// when it still runs then.
    package func exit(within timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while self.isRunning {
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return self.shellStatus.status
    }

    /// Ends a process this test started (SIGTERM, then SIGKILL after `grace`) and awaits its exit.
    package func stop(grace: Duration = .seconds(10)) async {
        guard self.isRunning else { return }
        self.terminate()
        if await self.exit(within: grace) == nil {
            kill(self.processIdentifier, SIGKILL)
            _ = await self.exit(within: grace)
        }
    }
}

/// Ends a detached remote step the way a reboot or the OOM killer would: every process of the
/// session its supervisor leads (`flotilla-step FOLDER`, see RemoteStep.swift), at once, with
/// SIGKILL. `folder` is the step's folder, or its path's tail. Returns whether one was found.
/// (The supervisor may stay a zombie where PID 1 does not reap: its lock is what tells.)
package func killStepSession(folder: String) async throws -> Bool {
    func run(_ tool: String, _ arguments: [String]) async throws -> ChildOutput {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        return try await process.runToCompletion()
    }
    let found = try await run("/usr/bin/pgrep", ["-f", "flotilla-step [^ ]*\(folder)$"])
    guard let session = Int32(found.output.trimmingCharacters(in: .whitespacesAndNewlines)) else { return false }
    // The supervisor first: killed after its script, it could still write the script's status
    // (137) in between, and the step would read as finished rather than cut short.
    guard kill(session, SIGKILL) == 0 else { return false }
    _ = try await run("/usr/bin/pkill", ["-KILL", "-s", String(session)])
    return true
}
