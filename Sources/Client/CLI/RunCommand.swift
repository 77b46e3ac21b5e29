import ArgumentParser
import CommandOptions
import Foundation
import Queue
import Synchronization

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command against a cluster of its own, and always give the cluster back.",
        discussion: """
            Acquires a cluster (from a warm pool when one matches, else a new one), writes its
            key, runs COMMAND with the cluster in its environment, keeps the lease alive while
            COMMAND runs, releases the cluster when COMMAND ends, and exits with COMMAND's status.

            COMMAND's environment adds:
              FLOTILLA_CLUSTER_ID    the cluster id
              FLOTILLA_LEASE_TOKEN   its lease token (`client extend`, `client logs` read it)
              FLOTILLA_MASTER        the first master's address
              FLOTILLA_MASTERS, FLOTILLA_AGENTS, FLOTILLA_PUBLIC_AGENTS
                                     addresses by role, comma-separated (public IP where there is one)
              FLOTILLA_MASTERS_PRIVATE, FLOTILLA_AGENTS_PRIVATE, FLOTILLA_PUBLIC_AGENTS_PRIVATE
                                     private IPs by role
              FLOTILLA_SSH_KEY       the private key file (mode 0600; removed afterwards)
              FLOTILLA_SSH_USER, FLOTILLA_SSH_PORT

            While COMMAND runs the client beats every --heartbeat-timeout/4 and extends the
            cluster when less than 35 minutes are left, by --lifetime, as far as the policy's
            maximum total lifetime allows (expiry warnings are printed if it cannot). The cluster
            is released when COMMAND ends, fails, or this client gets SIGINT or SIGTERM (which
            are passed on to COMMAND first; it has 10 s to end). If this client dies without a
            word (SIGKILL, a lost machine), the janitor releases the cluster once no beat came
            for --heartbeat-timeout: within that plus the janitor's interval (5 s by default).

            \(ClusterShapeOptions.splitHelp)

            Examples:
              client run --nodes 3 -- ./integration-tests.sh
              client run --nodes 1 --lifetime 1h -- sh -c 'ssh -i "$FLOTILLA_SSH_KEY" \
            "$FLOTILLA_SSH_USER@$FLOTILLA_MASTER" true'

            Exit codes: COMMAND's status; 1 when no cluster could be had; 64 bad usage; 127 COMMAND
            not found; 130 interrupted (SIGINT); 143 terminated (SIGTERM).
            """
    )

    @OptionGroup var shape: ClusterShapeOptions
    @Option(help: "How long the cluster lives once ready; extended while COMMAND runs (e.g. 90m, 2h).") var lifetime:
        String = "2h"
    @Option(help: "Free text shown with the cluster.") var label: String?
    @Option(help: "A retried request with the same id returns the same cluster.") var requestID: String?
    @Option(help: "Give up waiting for the cluster after this long (it is then released).") var timeout: String = "60m"
    @Option(help: "auto, wait or never: how a matching warm pool is used (see `client request --help`).") var pool:
        PoolModeOption = .auto
    @Option(help: "Release the cluster when this client sent no heartbeat for this long (2s to 1h).")
    var heartbeatTimeout: String = "60s"
    @Option(
        help: "Where to write the SSH private key (mode 0600). Default: a private temporary file, removed afterwards.")
    var keyOut: String?
    @Argument(parsing: .postTerminator, help: "The command to run, after --.") var command: [String] = []
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard !self.command.isEmpty else {
            throw ValidationError("give the command to run after --, like: client run --nodes 3 -- ./tests.sh")
        }
        guard let beat = ClusterRequest.parseDuration(self.heartbeatTimeout), beat >= .seconds(2),
            beat <= .seconds(3600)
        else {
            throw ValidationError("--heartbeat-timeout must be a duration from 2s to 1h")
        }
        guard ClusterRequest.parseDuration(self.timeout) != nil else {
            throw ValidationError("--timeout must be a duration like 45m")
        }
        if let keyOut { try checkWritable(keyOut, option: "--key-out") }
    }

    func run() async throws {
        guard let lifetime = ClusterRequest.parseDuration(self.lifetime), lifetime > .zero else {
            throw ValidationError("--lifetime must be a duration like 90m or 2h")
        }
        let request = try self.shape.request(lifetimeSeconds: lifetime.seconds)
        let timeout = ClusterRequest.parseDuration(self.timeout)!
        let beat = ClusterRequest.parseDuration(self.heartbeatTimeout)!
        let new = NewCluster(
            requestID: self.requestID ?? "run-" + UUID().uuidString.lowercased(), label: self.label,
            request: String(decoding: try JSONEncoder().encode(request), as: UTF8.self),
            abandonAfter: timeout + .seconds(15), poolMode: self.pool.mode)
        let (command, keyOut) = (self.command, self.keyOut)
        let status = try await withStore(self.options) { store, _ -> Int32 in
            let made = Responsibility()
            let keyFolder = keyOut == nil ? try makePrivateFolder() : nil
            defer { if let keyFolder { try? FileManager.default.removeItem(atPath: keyFolder) } }
            let status: Int32
            do {
                status = try await untilSignalled {
                    let started = ContinuousClock.now
                    let receipt = try await store.request(new)
                    made.set(receipt.id, receipt.leaseToken)
                    let id = receipt.id
                    say("cluster \(id)\(receipt.pool.map { " from warm pool \($0)" } ?? " requested")")
                    return try await withThrowingTaskGroup(of: Int32?.self) { group in
                        group.addTask {
                            await keepAlive(
                                id: id, token: receipt.leaseToken, store: store, timeout: beat, extendBy: lifetime)
                            return nil
                        }
                        defer { group.cancelAll() }
                        let cluster = try await waitForCluster(id, store: store, timeout: timeout)
                        guard cluster.state == .ready else {
                            let reason = cluster.lastError.map { ": \($0)" } ?? ""
                            throw QueueError(
                                .conflict,
                                "cluster \(id) did not become ready (it is \(cluster.state)\(reason)); "
                                    + "install logs: client logs \(id) --lease-token …")
                        }
                        let nodes = try await store.nodes(clusterID: id)
                        let keyPath = keyOut ?? keyFolder! + "/\(id).key"
                        try writeKey(
                            try await store.privateKey(clusterID: id, leaseToken: receipt.leaseToken), to: keyPath)
                        let waited = ClusterRequest.format(seconds: (ContinuousClock.now - started).seconds)
                        say("cluster \(id) ready after \(waited); running \(command.joined(separator: " "))")
                        let environment = clusterEnvironment(
                            cluster, nodes: nodes, token: receipt.leaseToken, keyPath: keyPath)
                        return try await runChild(command, environment: environment)
                    }
                }
            } catch {
                let (code, why) = givingUp(error)
                if let (id, token) = made.current {
                    await releaseAfterGivingUp(id, token, why: why, store: store)
                } else {
                    FileHandle.standardError.write(Data("client: \(why); nothing was recorded\n".utf8))
                }
                return code
            }
            if let (id, token) = made.current {
                await releaseAfterGivingUp(id, token, why: "the command exited with status \(status)", store: store)
            }
            return status
        }
        if status != 0 { throw ExitCode(status) }
    }
}

private func say(_ message: String) {
    FileHandle.standardError.write(Data("client run: \(message)\n".utf8))
}

/// A folder only this user can read, for the key.
private func makePrivateFolder() throws -> String {
    var template = Array(
        FileManager.default.temporaryDirectory.appendingPathComponent("flotilla-run.XXXXXX").path.utf8CString)
    guard let made = mkdtemp(&template) else {
        throw QueueError(.invalidInput, "cannot create a private temporary folder for the key")
    }
    return String(cString: made)
}

/// The environment COMMAND runs in: this one plus the cluster's addresses, key and user.
func clusterEnvironment(_ cluster: ClusterRecord, nodes: [NodeRecord], token: String, keyPath: String) -> [String:
    String]
{
    var environment = ProcessInfo.processInfo.environment
    func addresses(_ role: String, publicFirst: Bool) -> String {
        nodes.filter { $0.role == role }.map { publicFirst ? ($0.publicIP ?? $0.privateIP) : $0.privateIP }.joined(
            separator: ",")
    }
    environment["FLOTILLA_CLUSTER_ID"] = cluster.id
    environment["FLOTILLA_LEASE_TOKEN"] = token
    environment["FLOTILLA_MASTERS"] = addresses("master", publicFirst: true)
    environment["FLOTILLA_AGENTS"] = addresses("slave", publicFirst: true)
    environment["FLOTILLA_PUBLIC_AGENTS"] = addresses("slave_public", publicFirst: true)
    environment["FLOTILLA_MASTERS_PRIVATE"] = addresses("master", publicFirst: false)
    environment["FLOTILLA_AGENTS_PRIVATE"] = addresses("slave", publicFirst: false)
    environment["FLOTILLA_PUBLIC_AGENTS_PRIVATE"] = addresses("slave_public", publicFirst: false)
    environment["FLOTILLA_MASTER"] = environment["FLOTILLA_MASTERS"]?.split(separator: ",").first.map(String.init) ?? ""
    environment["FLOTILLA_SSH_KEY"] = keyPath
    environment["FLOTILLA_SSH_USER"] = cluster.sshUser ?? ""
    environment["FLOTILLA_SSH_PORT"] = cluster.sshPort.map(String.init) ?? "22"
    return environment
}

/// Beats until cancelled; extends the cluster when less than 35 minutes are left, and prints
/// the janitor's expiry warnings and a refused extension once each. Never throws: a beat that
/// fails is tried again at the next one.
func keepAlive(id: String, token: String, store: ClusterAPI, timeout: Duration, extendBy: Duration) async {
    let every = max(Duration.milliseconds(500), timeout / 4)
    var lastEvent: Int64 = 0
    var refused: String?
    var failing = false
    while !Task.isCancelled {
        do {
            let expiry = try await store.heartbeat(clusterID: id, leaseToken: token, timeout: timeout)
            failing = false
            if let expiry, expiry.timeIntervalSinceNow < 35 * 60, refused == nil {
                do {
                    let moved = try await store.extend(clusterID: id, leaseToken: token, by: extendBy)
                    say("extended cluster \(id) to \(moved.formatted(.iso8601))")
                } catch let error as QueueError {
                    refused = error.message
                    say("cannot extend cluster \(id): \(error.message)")
                }
            }
            for event in try await store.events(clusterID: id, after: lastEvent) {
                lastEvent = event.id
                if let warning = ExpiryWarning(event) { say("warning: \(warning.text(id: id))") }
            }
        } catch is CancellationError {
            return
        } catch {
            if !failing { say("heartbeat failed (\(givingUp(error).why)); trying again") }
            failing = true
        }
        try? await Task.sleep(for: every)
    }
}

/// Runs `command` (found through PATH) with the terminal's standard streams (and no other
/// descriptor of this process) and returns its exit status (128 + the signal for a signal, 127 when it is not
/// found). SIGINT and SIGTERM are set back to their defaults in the child (this process ignores them to handle them).
/// Cancelled, it gives the child the signal this client received (SIGTERM if none), SIGKILL
/// after 10 s, and still waits for it to end.
func runChild(_ command: [String], environment: [String: String]) async throws -> Int32 {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for number in [SIGINT, SIGTERM, SIGPIPE, SIGQUIT, SIGHUP] { sigaddset(&defaults, number) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    // COMMAND gets the standard streams and nothing else of this process: no database
    // socket, and no descriptor a parent watches to learn that this client ended (a command
    // left running would keep it open).
    var files = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&files)
    defer { posix_spawn_file_actions_destroy(&files) }
    closeInheritedDescriptors(&files)

    let argv = command.map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for pointer in argv + envp { free(pointer) } }
    var pid: pid_t = 0
    // PATH for the lookup is this process's own, as a shell's would be.
    let spawned = posix_spawnp(&pid, command[0], &files, &attributes, argv, envp)
    guard spawned == 0 else {
        FileHandle.standardError.write(
            Data("client run: cannot run \(command[0]): \(String(cString: strerror(spawned)))\n".utf8))
        return spawned == ENOENT ? 127 : 126
    }
    let exit = ChildExit()
    let child = pid
    Thread.detachNewThread {
        var status: Int32 = 0
        while waitpid(child, &status, 0) == -1 && errno == EINTR {}
        let signal = status & 0x7f
        exit.finish(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
    }
    return await withTaskCancellationHandler {
        await exit.wait()
    } onCancel: {
        let number = lastSignal.load(ordering: .relaxed)
        kill(child, number == 0 ? SIGTERM : number)
        DispatchQueue.global().asyncAfter(deadline: .now() + 10) {
            if !exit.isFinished { kill(child, SIGKILL) }
        }
    }
}

/// Adds "close every descriptor from 3 on" to `files`: glibc's closefrom action where it has
/// one (2.34+; Swift's Glibc module does not import it), else a close for each open one.
private func closeInheritedDescriptors(_ files: inout posix_spawn_file_actions_t) {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&files, 3)
        return
    }
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        if let fd = Int32(name), fd > 2 { posix_spawn_file_actions_addclose(&files, fd) }
    }
}

/// A child's exit status, awaited without regard to cancellation (a child is always reaped).
final class ChildExit: Sendable {
    private let state = Mutex<(status: Int32?, waiter: CheckedContinuation<Int32, Never>?)>((nil, nil))

    func finish(_ status: Int32) {
        let waiter = self.state.withLock { state -> CheckedContinuation<Int32, Never>? in
            state.status = status
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: status)
    }

    var isFinished: Bool { self.state.withLock { $0.status != nil } }

    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let done = self.state.withLock { state -> Int32? in
                if let status = state.status { return status }
                state.waiter = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}
