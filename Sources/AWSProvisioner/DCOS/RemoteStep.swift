import Foundation
import Timing

/// One long remote step (the prerequisites, genconf, serve, preflight, deploy, postflight)
/// that runs detached on its node, so it outlives the worker that started it: a worker that
/// is killed, stopped for a rolling update or cut off from the node leaves the step running,
/// and the worker that resumes the cluster waits for it or collects what it left.
///
/// The node keeps one folder per step, `~/flotilla-steps/<cluster>/<instance>/<step>`:
///
/// - `script`  what runs (copied in by the worker that started it);
/// - `run`     the install run that started it (``ProvisionState/installRuns``);
/// - `boot`    the kernel's boot id when it started (`/proc/sys/kernel/random/boot_id`);
/// - `began`   written by the step's supervising shell once it runs;
/// - `out`, `err`  the script's standard output and error;
/// - `rc`      its exit status, written (atomically) when it ends, also when the node's own
///   time limit killed it (124 or 137);
/// - `lock`    held (`flock`) by the supervising shell for as long as the step runs.
///
/// So a node answers, for each step: never started; running (the lock is held); finished
/// with a status; or cut short (`began` but no `rc` and nobody holds the lock: the node
/// rebooted, when its boot id changed, or the step's processes were killed). Starting is
/// atomic under the lock, so a second copy is never started, whichever worker asks.
struct RemoteStep: Sendable {
    enum Name: String, Sendable {
        case prerequisites
        case nodeSetup = "node-setup"
        case genconf, serve, preflight, deploy, postflight
    }

    let name: Name
    let clusterID: String
    let node: ProvisionState.Node
    /// The install run that starts it, for the record on the node (and in progress lines).
    let run: Int
    /// Runs the script as root (`sudo`, keeping PATH), else as the login user.
    let asRoot: Bool
    /// The node kills the step (and what it started) after this many seconds.
    let timeoutSeconds: Int

    /// Whether a run that was cut short may simply be started again. Every step is safe to
    /// repeat except deploy: DC/OS cannot resume an install that was cut short, and the
    /// installer refuses a node that holds part of one.
    var restartable: Bool { self.name != .deploy }

    /// What a node says about the step.
    enum Status: Equatable, Sendable {
        /// Nothing ran: no folder, or a start that was cut before the step ran.
        case none
        /// Started now, by this call.
        case started
        case running(run: Int)
        case finished(status: Int32, run: Int)
        /// It began and never ended: `rebooted` when the node's boot id changed since.
        case lost(run: Int, rebooted: Bool)
    }

    /// The step's folder on the node, under the login's home.
    var directory: String {
        "flotilla-steps/\(self.clusterID)/\(self.node.instanceID)/\(self.name.rawValue)"
    }

    /// Output kept per stream when a finished step is collected; more is cut from the front.
    static let outputLimit = 1 << 20

    /// Shell functions every step command starts with: `d` is the step's folder, `report`
    /// prints the status line of a step nobody runs.
    private var prelude: String {
        """
        d="$HOME"/\(shellQuote(self.directory))
        run() { cat "$d/run" 2>/dev/null || echo 0; }
        report() {
          r=$(run)
          if [ -s "$d/rc" ]; then echo "flotilla-step finished $(cat "$d/rc") $r"
          elif [ -e "$d/began" ]; then
            if [ "$(cat "$d/boot" 2>/dev/null)" = "$(cat /proc/sys/kernel/random/boot_id)" ]; then
              echo "flotilla-step lost $r killed"
            else
              echo "flotilla-step lost $r rebooted"
            fi
          else echo "flotilla-step none"; fi
        }

        """
    }

    /// Starts the step unless the node already has it, reading the script from standard
    /// input; prints the status line. The supervising shell (`flotilla-step FOLDER` in `ps`,
    /// its own session) inherits the lock (descriptor 9)
    /// from the starting command, so there is no moment when the step runs unlocked; the
    /// script itself does not get it (a server it starts must not hold the step open).
    ///
    /// The script must arrive whole (`scriptBytes` of it): when the connection is cut while it
    /// is sent, sshd closes the command's input and the shell would otherwise go on with the
    /// part that came. A short script is thrown away and nothing starts (the status says none).
    ///
    /// With `waitSeconds`, a step it started is then waited for in the same command, as
    /// ``waitCommand(seconds:)`` does: a second status line (and the output) follows when the
    /// step ended in that time. A step that ends within the slice costs one round trip, not two.
    func startCommand(scriptBytes: Int, waitSeconds: Int? = nil) -> String {
        let runner = self.asRoot ? #"sudo env PATH="$PATH" bash"# : "bash"
        let supervise =
            #"d=$1; : > "$d/began"; timeout --kill-after=10 \#(self.timeoutSeconds) \#(runner) "$d/script" "#
            + #"</dev/null >"$d/out" 2>"$d/err" 9>&-; echo $? > "$d/rc.new"; mv -f "$d/rc.new" "$d/rc""#
        return self.prelude
            + """
            mkdir -p "$d" && exec 9>>"$d/lock" || { echo "flotilla-step: cannot create $d" >&2; exit 97; }
            if ! flock -n 9; then cat >/dev/null; echo "flotilla-step running $(run)"; exit 0; fi
            s=$(report)
            if [ "$s" != "flotilla-step none" ]; then cat >/dev/null; echo "$s"; exit 0; fi
            cat > "$d/script.new" || { echo "flotilla-step: cannot write $d" >&2; exit 97; }
            if [ "$(wc -c < "$d/script.new")" -ne \(scriptBytes) ]; then
              rm -f "$d/script.new"; echo "flotilla-step none"
              echo "flotilla-step: the script arrived cut short (the connection was cut); nothing started" >&2; exit 0
            fi
            mv -f "$d/script.new" "$d/script" && echo \(self.run) > "$d/run" \
              && cat /proc/sys/kernel/random/boot_id > "$d/boot" \
              || { echo "flotilla-step: cannot write $d" >&2; exit 97; }
            setsid bash -c \(shellQuote(supervise)) flotilla-step "$d" </dev/null >/dev/null 2>&1 &
            echo "flotilla-step started"

            """
            + (waitSeconds.map {
                // The supervisor holds the lock through the descriptor it inherited; this
                // command lets its own go and waits on a descriptor of its own.
                "exec 9>&-\n" + self.waitBody(seconds: $0, status: "exit 0")
            } ?? "")
    }

    /// Waits up to `seconds` for the step to end; prints the status line and, when it
    /// finished, the end of its output (standard output after the status line, standard
    /// error on standard error).
    func waitCommand(seconds: Int) -> String {
        self.prelude
            + """
            [ -d "$d" ] || { echo "flotilla-step none"; exit 0; }

            """
            + self.waitBody(seconds: seconds, status: #"echo "flotilla-step running $(run)"; exit 0"#)
    }

    /// Waits for the step's lock; `whenRunning` runs when it is still held after `seconds`.
    private func waitBody(seconds: Int, status whenRunning: String) -> String {
        """
        exec 9>>"$d/lock" || exit 97
        if ! flock -s -w \(max(1, seconds)) 9; then \(whenRunning); fi
        report
        if [ -s "$d/rc" ]; then
          tail -c \(Self.outputLimit) "$d/out" 2>/dev/null
          tail -c \(Self.outputLimit) "$d/err" >&2 2>/dev/null
        fi
        exit 0
        """
    }

    /// Moves a run that was cut short, or that failed in an earlier install run, aside (kept as
    /// `<step>.lost-<time>` for people), so the step can start again; only while nobody holds
    /// its lock.
    func discardCommand() -> String {
        self.prelude
            + """
            [ -d "$d" ] || exit 0
            exec 9>>"$d/lock" || exit 97
            flock -n 9 || { echo "flotilla-step: $d is running again" >&2; exit 98; }
            mv "$d" "$d.lost-$(date +%s%N)"
            """
    }

    /// Parses the first line a step command printed.
    static func status(from stdout: String) -> Status? {
        guard let line = stdout.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first
        else { return nil }
        let fields = line.split(separator: " ")
        guard fields.first == "flotilla-step", fields.count >= 2 else { return nil }
        let number = { (index: Int) in fields.count > index ? Int(fields[index]) : nil }
        switch fields[1] {
        case "none": return Status.none
        case "started": return .started
        case "running": return .running(run: number(2) ?? 0)
        case "finished":
            guard let status = number(2).flatMap({ Int32(exactly: $0) }) else { return nil }
            return .finished(status: status, run: number(3) ?? 0)
        case "lost":
            return .lost(run: number(2) ?? 0, rebooted: fields.count > 3 && fields[3] == "rebooted")
        default: return nil
        }
    }

    /// The output after the status line.
    static func output(from stdout: String) -> String {
        guard let newline = stdout.firstIndex(of: "\n") else { return "" }
        return String(stdout[stdout.index(after: newline)...])
    }
}

/// Runs ``RemoteStep``s over a ``RemoteShell``: start or adopt, wait, collect. A lost SSH
/// connection is not the step's failure: the step goes on running on the node, and the
/// runner reconnects and asks again until the step's own time is up.
struct RemoteStepRunner: Sendable {
    let shell: any RemoteShell
    let target: @Sendable (ProvisionState.Node) -> SSHTarget
    let observer: any ProvisionObserver
    /// The longest one wait command blocks on the node before answering "still running".
    var waitSlice: Int = 60
    /// The pause before asking again after SSH failed.
    var reconnectPause: Duration = .seconds(1)

    /// Runs `step` with `script` to its end (or adopts the run the node already has) and
    /// returns its exit status and output. Throws only when cancelled (the step keeps
    /// running on the node).
    func run(_ step: RemoteStep, script: String) async throws -> RemoteResult {
        let target = self.target(step.node)
        let deadline = ContinuousClock.now.advanced(by: .seconds(step.timeoutSeconds + 30))
        let what = "\(step.name.rawValue) on \(step.node.privateIP)"
        var restarted = false
        var lastSSHFailure: RemoteResult?
        // Ask to start first (the node says what it already has); then wait, in slices.
        var starting = true
        let input = Data(script.utf8)
        while ContinuousClock.now < deadline {
            let remaining = Int((deadline - ContinuousClock.now).seconds.rounded(.up))
            let slice = min(self.waitSlice, max(1, remaining))
            let command =
                starting
                ? step.startCommand(scriptBytes: input.count, waitSeconds: slice) : step.waitCommand(seconds: slice)
            let result: RemoteResult
            do {
                result = try await self.shell.run(
                    command, on: target, input: starting ? input : nil, timeout: .seconds(slice + 30))
            } catch let error as CancellationError {
                throw error
            } catch {
                result = RemoteResult(Result<RemoteResult, any Error>.failure(error))
            }
            try Task.checkCancellation()
            if result.sshFailed || result.timedOut {
                if lastSSHFailure == nil {
                    await self.observer.progress(
                        "\(what): the connection failed (\(result.summary)); the step goes on on the node, reconnecting"
                    )
                }
                lastSSHFailure = result
                try await Task.sleep(for: self.reconnectPause)
                continue
            }
            guard var status = RemoteStep.status(from: result.stdout) else {
                // The node answered, but not with a status: the step machinery itself failed.
                return RemoteResult(
                    exitStatus: result.exitStatus ?? 1, stdout: result.stdout,
                    stderr: "the node did not run the step supervisor for \(what): \(result.stderr)", sshFailed: false)
            }
            if lastSSHFailure != nil {
                await self.observer.progress("\(what): reconnected")
                lastSSHFailure = nil
            }
            var answer = result.stdout
            if status == .started {
                // Started, and waited for in the same command: what the wait found follows.
                starting = false
                let waited = RemoteStep.output(from: result.stdout)
                guard let after = RemoteStep.status(from: waited) else { continue }
                status = after
                answer = waited
            }
            switch status {
            case .started:
                starting = false
            case .none:
                // A wait: the folder is gone (the node was rebuilt). A start: the script did not
                // arrive whole, or the supervisor never began. Either way, start afresh, after a
                // pause (a node that cannot start it would otherwise be asked in a tight loop).
                try await Task.sleep(for: self.reconnectPause)
                starting = true
            case .running(let run):
                if starting {
                    await self.observer.progress(
                        "\(what): already running (started by install run \(run)); waiting for it")
                    starting = false
                }
            case .finished(let code, let run)
            where starting && code != 0 && run < step.run && step.restartable && !restarted:
                // An earlier install run's failure, which that run reported (or its worker died
                // first): this run tries the step again, once, rather than failing on its record.
                await self.observer.progress(
                    "\(what) failed in install run \(run) (exit status \(code)); starting it again")
                if try await self.discard(step, on: target) {
                    restarted = true
                } else {
                    starting = false
                }
            case .finished(let code, let run):
                if starting {
                    // The wait command collects the output of a finished step.
                    await self.observer.progress(
                        "\(what): already finished (install run \(run), exit status \(code)); collecting it")
                    starting = false
                    continue
                }
                return RemoteResult(
                    exitStatus: code, stdout: RemoteStep.output(from: answer), stderr: result.stderr, sshFailed: false)
            case .lost(let run, let rebooted):
                let why =
                    rebooted
                    ? "the node rebooted while it ran (started by install run \(run))"
                    : "its processes were killed before it ended (started by install run \(run))"
                guard step.restartable, !restarted else {
                    let hint = step.restartable ? "" : "; DC/OS cannot resume an install that was cut short"
                    return RemoteResult(
                        exitStatus: nil, stdout: "", stderr: "\(what) was cut short: \(why)\(hint)", sshFailed: false,
                        cutShort: true)
                }
                await self.observer.progress("\(what) was cut short (\(why)); starting it again")
                if try await self.discard(step, on: target) {
                    restarted = true
                    starting = true
                } else {
                    try await Task.sleep(for: self.reconnectPause)
                }
            }
        }
        return lastSSHFailure
            ?? RemoteResult(
                exitStatus: nil, stdout: "", stderr: "\(what) did not end within \(step.timeoutSeconds + 30) s",
                sshFailed: false, timedOut: true)
    }

    /// Moves the step's last run aside so it can start again; false when the node did not (it
    /// is running again, or the command failed: the caller asks the node again).
    private func discard(_ step: RemoteStep, on target: SSHTarget) async throws -> Bool {
        try await self.shell.run(step.discardCommand(), on: target, input: nil, timeout: .seconds(30)).succeeded
    }
}
