import Foundation

/// Where a command runs: an address, a port and a login user.
public struct SSHTarget: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String

    public init(host: String, port: Int = 22, user: String) {
        self.host = host
        self.port = port
        self.user = user
    }

    public var description: String { "\(self.user)@\(self.host):\(self.port)" }
}

/// What a remote command did. `sshFailed` separates "SSH could not run the command"
/// (connection refused, host key mismatch, authentication) from the command's own failure.
public struct RemoteResult: Sendable, Hashable {
    /// The command's exit status, or `nil` when SSH failed or the command was killed.
    public var exitStatus: Int32?
    public var stdout: String
    public var stderr: String
    public var sshFailed: Bool
    public var timedOut: Bool
    /// A detached step that began and never ended (its node rebooted, or its processes were
    /// killed); `stderr` says which.
    public var cutShort: Bool

    public init(
        exitStatus: Int32?, stdout: String, stderr: String, sshFailed: Bool, timedOut: Bool = false,
        cutShort: Bool = false
    ) {
        self.exitStatus = exitStatus
        self.stdout = stdout
        self.stderr = stderr
        self.sshFailed = sshFailed
        self.timedOut = timedOut
        self.cutShort = cutShort
    }

    /// A command's result, or an SSH failure when running it threw.
    public init(_ result: Result<RemoteResult, any Error>) {
        switch result {
        case .success(let value): self = value
        case .failure(let error): self.init(exitStatus: nil, stdout: "", stderr: "\(error)", sshFailed: true)
        }
    }

    /// `true` when the command ran and exited 0.
    public var succeeded: Bool { self.exitStatus == 0 && !self.sshFailed && !self.timedOut }

    /// A short account for error messages: status and the last lines of stderr.
    public var summary: String {
        let tail = self.stderr.split(separator: "\n").suffix(5).joined(separator: "\n")
        let what =
            self.timedOut
            ? "timed out"
            : self.sshFailed
                ? "ssh failed"
                : self.cutShort ? "cut short" : "exit status \(self.exitStatus.map(String.init) ?? "none")"
        return tail.isEmpty ? what : "\(what): \(tail)"
    }
}

/// Runs commands on cluster nodes. The provisioner knows only this protocol; the
/// OpenSSH client is one implementation, a recording fake another (for pure logic tests).
public protocol RemoteShell: Sendable {
    /// Runs `command` (a shell command line) on `target`, feeding `input` to its standard
    /// input, and gives up after `timeout`.
    func run(_ command: String, on target: SSHTarget, input: Data?, timeout: Duration) async throws -> RemoteResult

    /// Connects to `target` for the first time, records its host key, and pins it for every
    /// later command. Returns the host key line (`type base64`).
    func learnHostKey(of target: SSHTarget, timeout: Duration) async throws -> String

    /// Pins a host key recorded earlier (a resumed provisioning on another worker).
    func pinHostKey(_ key: String, for target: SSHTarget) async throws
}
