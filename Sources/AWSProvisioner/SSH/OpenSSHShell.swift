import Foundation
import Logging
import Subprocess
import Synchronization
import Telemetry
import Timing

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// ``RemoteShell`` over the system's OpenSSH client.
///
/// Batch mode (never a prompt), only the cluster's own key, no system or user ssh config
/// (`-F /dev/null`), host keys pinned in a per-cluster `known_hosts` (learned once with
/// `accept-new`, then `StrictHostKeyChecking=yes`), a connect timeout, keep-alives, and
/// one multiplexed connection per node (`ControlMaster`), so a node's many commands share
/// one TCP connection and one authentication.
public final class OpenSSHShell: RemoteShell {
    public struct Configuration: Sendable {
        public var connectTimeout: Duration = .seconds(10)
        public var keepAliveInterval: Duration = .seconds(15)
        /// The `ssh` executable.
        public var sshPath: String = "/usr/bin/ssh"
        /// Output kept per stream; more is cut from the front.
        public var outputLimit: Int = 16 << 20

        public init(
            connectTimeout: Duration = .seconds(10), keepAliveInterval: Duration = .seconds(15),
            sshPath: String = "/usr/bin/ssh"
        ) {
            self.connectTimeout = connectTimeout
            self.keepAliveInterval = keepAliveInterval
            self.sshPath = sshPath
        }
    }

    /// Counts, for the provisioner's report.
    public struct Statistics: Sendable, Hashable {
        /// Commands run (including host-key learning).
        public var commands = 0
        /// TCP connections opened (the first command to a node while no master connection exists).
        public var connections = 0
    }

    public let directory: URL
    public let configuration: Configuration
    private let keyFile: URL
    private let knownHosts: URL
    private let state = Mutex<(stats: Statistics, targets: Set<SSHTarget>)>((Statistics(), []))

    /// Writes the private key (0600) and an empty `known_hosts` into `directory`, which
    /// should be private to this cluster and short (it holds the control sockets, whose
    /// paths must stay under 108 bytes).
    public init(privateKeyPEM: String, directory: URL, configuration: Configuration = Configuration()) throws {
        self.directory = directory
        self.configuration = configuration
        self.keyFile = directory.appendingPathComponent("id_ed25519")
        self.knownHosts = directory.appendingPathComponent("known_hosts")
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        FileManager.default.createFile(
            atPath: self.keyFile.path, contents: Data(privateKeyPEM.utf8),
            attributes: [.posixPermissions: 0o600])
        if !FileManager.default.fileExists(atPath: self.knownHosts.path) {
            FileManager.default.createFile(
                atPath: self.knownHosts.path, contents: Data(), attributes: [.posixPermissions: 0o600])
        }
    }

    public var statistics: Statistics { self.state.withLock { $0.stats } }

    private func options(for target: SSHTarget, strict: String) -> [String] {
        [
            "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityFile=\(self.keyFile.path)",
            "-o", "UserKnownHostsFile=\(self.knownHosts.path)",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "HashKnownHosts=no",
            "-o", "StrictHostKeyChecking=\(strict)",
            "-o", "ConnectTimeout=\(Int(self.configuration.connectTimeout.seconds.rounded(.up)))",
            "-o", "ServerAliveInterval=\(Int(self.configuration.keepAliveInterval.seconds.rounded(.up)))",
            "-o", "ServerAliveCountMax=4",
            "-o", "ControlMaster=auto",
            "-o", "ControlPath=\(self.controlPath(for: target))",
            "-o", "ControlPersist=120",
            "-o", "LogLevel=ERROR",
            "-p", String(target.port),
            "-l", target.user,
            target.host,
        ]
    }

    private func controlPath(for target: SSHTarget) -> String {
        self.directory.appendingPathComponent("cm-\(target.host)-\(target.port)").path
    }

    public func run(_ command: String, on target: SSHTarget, input: Data?, timeout: Duration) async throws
        -> RemoteResult
    {
        try await self.ssh(
            self.options(for: target, strict: "yes") + ["--", command], target: target, input: input, timeout: timeout)
    }

    public func learnHostKey(of target: SSHTarget, timeout: Duration) async throws -> String {
        let result = try await self.ssh(
            self.options(for: target, strict: "accept-new") + ["--", "true"],
            target: target, input: nil, timeout: timeout)
        guard result.succeeded else {
            throw ProvisionError(.ssh, "cannot reach \(target) over SSH: \(result.summary)")
        }
        guard let key = try self.recordedHostKey(for: target) else {
            throw ProvisionError(.ssh, "connected to \(target) but no host key was recorded")
        }
        return key
    }

    public func pinHostKey(_ key: String, for target: SSHTarget) async throws {
        if try self.recordedHostKey(for: target) == key { return }
        let line = "\(self.hostPattern(for: target)) \(key)\n"
        try self.state.withLock { _ in
            let handle = try FileHandle(forWritingTo: self.knownHosts)
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(line.utf8))
        }
    }

    /// Closes every master connection this shell opened and removes the shell's folder
    /// (the private key, known hosts and control sockets).
    ///
    /// The key goes first. A master answers `-O exit` before it unlinks its socket, so the
    /// folder is removed only once each socket is gone (or after 5 s), and removal is tried
    /// again while something still changes in it: a single try could meet an entry that
    /// vanished under it and give up with the folder left behind. Runs to the end also when
    /// the caller was cancelled.
    public func close() async {
        await Task { await self.closeUncancelled() }.value
    }

    private func closeUncancelled() async {
        try? FileManager.default.removeItem(at: self.keyFile)
        let targets = self.state.withLock { $0.targets }
        await withTaskGroup(of: Void.self) { group in
            for target in targets {
                group.addTask {
                    _ = try? await self.ssh(
                        self.options(for: target, strict: "yes").dropLast() + ["-O", "exit", target.host],
                        target: target, input: nil, timeout: .seconds(5), count: false)
                }
            }
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while ContinuousClock.now < deadline {
            let sockets = targets.filter { FileManager.default.fileExists(atPath: self.controlPath(for: $0)) }
            if sockets.isEmpty { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        for _ in 0..<20 {
            do {
                try FileManager.default.removeItem(at: self.directory)
                return
            } catch {
                if !FileManager.default.fileExists(atPath: self.directory.path) { return }
                try? await Task.sleep(for: .milliseconds(25))
            }
        }
        Self.logger.warning(
            "could not remove an SSH shell folder; a worker removes it when it next starts",
            metadata: ["folder": "\(self.directory.lastPathComponent)"])
    }

    private func hostPattern(for target: SSHTarget) -> String {
        target.port == 22 ? target.host : "[\(target.host)]:\(target.port)"
    }

    private func recordedHostKey(for target: SSHTarget) throws -> String? {
        let pattern = self.hostPattern(for: target)
        let text = (try? String(contentsOf: self.knownHosts, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 2)
            if fields.count == 3, fields[0].split(separator: ",").contains(Substring(pattern)) {
                return "\(fields[1]) \(fields[2])"
            }
        }
        return nil
    }

    private func ssh(_ arguments: [String], target: SSHTarget, input: Data?, timeout: Duration, count: Bool = true)
        async throws -> RemoteResult
    {
        if count {
            let opensConnection = !FileManager.default.fileExists(atPath: self.controlPath(for: target))
            self.state.withLock { state in
                state.stats.commands += 1
                if opensConnection { state.stats.connections += 1 }
                state.targets.insert(target)
            }
            if opensConnection { FlotillaMetric.increment(FlotillaMetric.sshConnections) }
        }
        let started = ContinuousClock.now
        let result = try await self.runSSH(arguments, input: input, timeout: timeout)
        let elapsed = ContinuousClock.now - started
        let outcome =
            result.timedOut ? "timeout" : result.sshFailed ? "ssh_failed" : result.exitStatus == 0 ? "ok" : "failed"
        FlotillaMetric.increment(FlotillaMetric.sshCommands, [("outcome", outcome)])
        var logger = Self.logger
        logger[metadataKey: MetadataKey.sshHost] = "\(target.host)"
        logger[metadataKey: MetadataKey.sshPort] = "\(target.port)"
        logger.debug(
            "ssh command finished",
            metadata: [
                "outcome": "\(outcome)", "exit_status": "\(result.exitStatus.map(String.init) ?? "none")",
                "duration_ms": "\(Int((elapsed.seconds * 1000).rounded()))",
            ])
        return result
    }

    private static let logger = Logger(label: "flotilla.ssh")

    private func runSSH(_ arguments: [String], input: Data?, timeout: Duration) async throws -> RemoteResult {
        let executable = Executable.path(FilePath(self.configuration.sshPath))
        let limit = self.configuration.outputLimit
        let inputBytes = Array(input ?? Data())
        let answer = try await withTimeout(timeout) {
            let result = try await Subprocess.run(
                executable, arguments: Arguments(arguments),
                input: .array(inputBytes),
                output: .string(limit: limit), error: .string(limit: limit))
            switch result.terminationStatus {
            case .exited(let code):
                return RemoteResult(
                    exitStatus: code == 255 ? nil : code,
                    stdout: result.standardOutput ?? "", stderr: result.standardError ?? "", sshFailed: code == 255)
            case .signaled(let signal):
                // The client itself was killed: what the command did on the node is unknown.
                return RemoteResult(
                    exitStatus: nil, stdout: result.standardOutput ?? "",
                    stderr: (result.standardError ?? "") + "ssh was ended by signal \(signal)", sshFailed: true)
            }
        }
        return answer
            ?? RemoteResult(
                exitStatus: nil, stdout: "", stderr: "no answer within \(timeout)", sshFailed: false, timedOut: true)
    }
}
