import CommandOptions
import Foundation
import Synchronization

/// A process this client started: its pid and its exit, awaited without regard to
/// cancellation (a child is always reaped).
struct Child: Sendable {
    let pid: pid_t
    let exit: ChildExit

    /// The exit status: 128 + the signal's number when a signal ended it, as a shell reports it.
    func wait() async -> Int32 { await self.exit.wait() }

    func signal(_ number: Int32) { if !self.exit.isFinished { kill(self.pid, number) } }
}

/// What a child's standard streams are: this process's own (`nil`), or a descriptor.
struct ChildStreams {
    var input: Int32? = nil
    var output: Int32? = nil
    var error: Int32? = nil
}

/// Starts `command` (found through this process's PATH, as a shell would) with `environment`,
/// and no descriptor of this process but the standard streams (`streams` may replace them):
/// no database socket, and nothing a parent watches to learn that this client ended. SIGINT,
/// SIGTERM, SIGPIPE, SIGQUIT and SIGHUP are set back to their defaults (this process ignores
/// some to handle them), except SIGINT with `ignoringInterrupt`: the child then inherits this
/// process's SIG_IGN, so a Ctrl-C at the terminal reaches this client only, which decides what
/// to pass on, while the child stays in the terminal's foreground group and may read it.
func spawnChild(
    _ command: [String], environment: [String: String], streams: ChildStreams = ChildStreams(),
    ignoringInterrupt: Bool = false
) throws(SpawnError) -> Child {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for number in [SIGTERM, SIGPIPE, SIGQUIT, SIGHUP] + (ignoringInterrupt ? [] : [SIGINT]) {
        sigaddset(&defaults, number)
    }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    var files = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&files)
    defer { posix_spawn_file_actions_destroy(&files) }
    for (descriptor, target) in [(streams.input, 0), (streams.output, 1), (streams.error, 2)] {
        if let descriptor { posix_spawn_file_actions_adddup2(&files, descriptor, Int32(target)) }
    }
    closeInheritedDescriptors(&files)

    let argv = command.map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for pointer in argv + envp { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawnp(&pid, command[0], &files, &attributes, argv, envp)
    guard spawned == 0 else { throw SpawnError(command: command[0], code: spawned) }
    let exit = ChildExit()
    let child = pid
    Thread.detachNewThread {
        var status: Int32 = 0
        while waitpid(child, &status, 0) == -1 && errno == EINTR {}
        let signal = status & 0x7f
        exit.finish(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
    }
    return Child(pid: child, exit: exit)
}

/// A command that could not be started: 127 when it was not found, else 126 (as a shell).
struct SpawnError: Error, CustomStringConvertible {
    var command: String
    var code: Int32
    var status: Int32 { self.code == ENOENT ? 127 : 126 }
    var description: String { "cannot run \(self.command): \(String(cString: strerror(self.code)))" }
}

/// Runs `command` with the terminal's standard streams and returns its exit status (127 when
/// it is not found). Cancelled, it gives the child the signal this client received (SIGTERM if
/// none), SIGKILL after 10 s, and still waits for it to end.
func runChild(_ command: [String], environment: [String: String]) async throws -> Int32 {
    let child: Child
    do {
        child = try spawnChild(command, environment: environment)
    } catch {
        FileHandle.standardError.write(Data("client run: \(error)\n".utf8))
        return error.status
    }
    return await withTaskCancellationHandler {
        await child.wait()
    } onCancel: {
        let number = lastSignal.load(ordering: .relaxed)
        child.signal(number == 0 ? SIGTERM : number)
        DispatchQueue.global().asyncAfter(deadline: .now() + 10) { child.signal(SIGKILL) }
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

/// A child's exit status, awaited without regard to cancellation.
final class ChildExit: Sendable {
    private let state = Mutex<(status: Int32?, waiters: [CheckedContinuation<Int32, Never>])>((nil, []))

    func finish(_ status: Int32) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Int32, Never>] in
            state.status = status
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    var isFinished: Bool { self.state.withLock { $0.status != nil } }

    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let done = self.state.withLock { state -> Int32? in
                if let status = state.status { return status }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}
