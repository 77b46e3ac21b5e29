import Foundation
import Synchronization
import TestSupport
import Testing

@testable import AWSProvisioner

/// The detached-step protocol (``RemoteStep``) on this machine's own shell: the commands are
/// the ones a node runs over SSH, here run by `bash -c` with a scratch `HOME` (the SSH path
/// itself is covered end to end by the loopback cluster's tests).
@Suite("Detached remote steps: start, adopt, collect, cut short")
struct RemoteStepTests {
    /// Runs each command with `bash -c` locally, as sshd would on a node.
    struct LocalShell: RemoteShell {
        let home: URL

        func run(_ command: String, on target: SSHTarget, input: Data?, timeout: Duration) async throws
            -> RemoteResult
        {
            let process = Process()
            // sshd starts a session with descriptors 0-2 only and no signal blocked. This process
            // has other descriptors (Foundation's pipes' other ends) and blocked signals, both of
            // which a child inherits: a detached step would hold the pipes open, and `flock -w`
            // (whose timeout is SIGALRM) would never time out. Python resets both, then runs bash.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [
                "-c",
                "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
                    + "signal.signal(signal.SIGPIPE, signal.SIG_DFL); os.closerange(3, 65536); "
                    + "os.execv('/bin/bash', ['bash', '-c', sys.argv[1]])",
                command,
            ]
            process.environment = ["HOME": self.home.path, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]
            let stdin = Pipe()
            process.standardInput = stdin
            let writer = Task.detached {
                try? stdin.fileHandleForWriting.write(contentsOf: input ?? Data())
                try? stdin.fileHandleForWriting.close()
            }
            let output = try await process.runToCompletion()
            await writer.value
            return RemoteResult(
                exitStatus: output.status, stdout: output.output, stderr: output.errors, sshFailed: false)
        }

        func learnHostKey(of target: SSHTarget, timeout: Duration) async throws -> String { "" }
        func pinHostKey(_ key: String, for target: SSHTarget) async throws {}
    }

    final class Progress: ProvisionObserver {
        let lines = Mutex<[String]>([])
        func checkpoint(_ state: ProvisionState, moment: CheckpointMoment, step: String) async throws {}
        func progress(_ message: String) async { self.lines.withLock { $0.append(message) } }
    }

    let home: URL
    let node = ProvisionState.Node(
        role: .master, instanceID: "i-0123456789abcdef0", privateIP: "127.0.1.9", publicIP: nil, hostKey: nil)

    init() throws {
        self.home = URL(fileURLWithPath: "/tmp/fl-step-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: self.home, withIntermediateDirectories: true)
    }

    func runner(_ progress: Progress = Progress()) -> RemoteStepRunner {
        var runner = RemoteStepRunner(
            shell: LocalShell(home: self.home), target: { SSHTarget(host: $0.privateIP, user: "nobody") },
            observer: progress)
        runner.waitSlice = 1
        return runner
    }

    func step(_ name: RemoteStep.Name, run: Int = 1) -> RemoteStep {
        RemoteStep(name: name, clusterID: "c-steps", node: self.node, run: run, asRoot: false, timeoutSeconds: 60)
    }

    var folder: URL { self.home.appendingPathComponent("flotilla-steps/c-steps/\(self.node.instanceID)") }

    @Test("a step runs detached to its end; its exit status and both streams come back")
    func runsToItsEnd() async throws {
        defer { try? FileManager.default.removeItem(at: self.home) }
        let result = try await self.runner().run(self.step(.genconf), script: "echo out; echo err >&2; exit 3")
        #expect(result.exitStatus == 3 && result.stdout == "out\n" && result.stderr == "err\n", "\(result)")
        let recorded = try String(contentsOf: self.folder.appendingPathComponent("genconf/rc"), encoding: .utf8)
        #expect(recorded == "3\n")
    }

    @Test("a runner that dies mid-step leaves it running; the next one adopts it and never starts a second copy")
    func adoptsARunningStep() async throws {
        defer { try? FileManager.default.removeItem(at: self.home) }
        let gate = self.home.appendingPathComponent("gate")
        let script = """
            echo started >> "$HOME/starts"
            until [ -e \(gate.path) ]; do sleep 0.05; done
            echo "first copy"
            """
        let first = Task { try await self.runner().run(self.step(.deploy), script: script) }
        try await eventually("the step started") {
            FileManager.default.fileExists(atPath: self.home.appendingPathComponent("starts").path)
        }
        first.cancel()
        _ = await first.result
        let progress = Progress()
        let second = Task {
            try await self.runner(progress).run(self.step(.deploy, run: 2), script: "echo second copy")
        }
        try await eventually("the second runner adopted it") {
            progress.lines.withLock { $0.contains { $0.contains("already running (started by install run 1)") } }
        }
        FileManager.default.createFile(atPath: gate.path, contents: Data())
        let result = try await second.value
        #expect(result.exitStatus == 0 && result.stdout == "first copy\n", "\(result)")
        let starts = try String(contentsOf: self.home.appendingPathComponent("starts"), encoding: .utf8)
        #expect(starts == "started\n", "one copy only")

        // A third runner collects the finished step without running anything.
        let third = Progress()
        let again = try await self.runner(third).run(self.step(.deploy, run: 3), script: "echo third copy")
        #expect(again.stdout == "first copy\n")
        #expect(third.lines.withLock { $0.contains { $0.contains("already finished (install run 1, exit status 0)") } })
    }

    @Test("a step whose supervisor was killed is cut short: a deploy says so, a preflight starts again once")
    func cutShort() async throws {
        defer { try? FileManager.default.removeItem(at: self.home) }
        for name in [RemoteStep.Name.deploy, .preflight] {
            let script = "echo started >> \"$HOME/\(name.rawValue)-starts\"; sleep 60"
            let first = Task { try await self.runner().run(self.step(name), script: script) }
            let starts = self.home.appendingPathComponent("\(name.rawValue)-starts")
            try await eventually("\(name) started") { FileManager.default.fileExists(atPath: starts.path) }
            first.cancel()
            _ = await first.result
            // The supervisor's session, as a reboot or the OOM killer would end it.
            let stepFolder = self.folder.appendingPathComponent(name.rawValue).path
            #expect(try await killStepSession(folder: stepFolder))

            let result = try await self.runner().run(self.step(name, run: 2), script: "echo again")
            if name == .deploy {
                #expect(result.cutShort && !result.succeeded, "\(result)")
                #expect(result.stderr.contains("deploy on 127.0.1.9 was cut short: its processes were killed"))
                #expect(result.stderr.contains("cannot resume"))
                #expect(result.summary.hasPrefix("cut short"))
            } else {
                #expect(result.succeeded && result.stdout == "again\n", "\(result)")
                let kept = try FileManager.default.contentsOfDirectory(atPath: self.folder.path)
                #expect(kept.contains { $0.hasPrefix("preflight.lost-") }, "the cut-short run is kept aside: \(kept)")
            }
        }
    }

    @Test("a script cut short on its way (the connection dropped while it was sent) never starts")
    func scriptCutOnItsWay() async throws {
        defer { try? FileManager.default.removeItem(at: self.home) }
        let step = self.step(.prerequisites)
        let script = "echo whole; echo done >> \"$HOME/ran\"\n"
        let shell = LocalShell(home: self.home)
        let target = SSHTarget(host: self.node.privateIP, user: "nobody")
        // What sshd hands the command when the worker is killed halfway through sending it.
        let part = Data(script.utf8.prefix(12))
        let cut = try await shell.run(
            step.startCommand(scriptBytes: script.utf8.count), on: target, input: part, timeout: .seconds(30))
        #expect(RemoteStep.status(from: cut.stdout) == RemoteStep.Status.none, "\(cut)")
        #expect(cut.stderr.contains("the script arrived cut short"), "\(cut)")
        let folder = self.folder.appendingPathComponent("prerequisites").path
        #expect(!FileManager.default.fileExists(atPath: folder + "/script"))
        #expect(!FileManager.default.fileExists(atPath: folder + "/began"))
        #expect(!FileManager.default.fileExists(atPath: self.home.appendingPathComponent("ran").path))

        // The next start, with the whole script, runs it once.
        let result = try await self.runner().run(step, script: script)
        #expect(result.exitStatus == 0 && result.stdout == "whole\n", "\(result)")
        let ran = try String(contentsOf: self.home.appendingPathComponent("ran"), encoding: .utf8)
        #expect(ran == "done\n")
    }

    @Test("a step that failed in an earlier install run runs again in the next; a failed deploy is only collected")
    func earlierFailureRunsAgain() async throws {
        defer { try? FileManager.default.removeItem(at: self.home) }
        for name in [RemoteStep.Name.preflight, .deploy] {
            let failed = try await self.runner().run(self.step(name), script: "echo first; exit 4")
            #expect(failed.exitStatus == 4)
            // The same run asking again collects its own failure.
            let same = try await self.runner().run(self.step(name), script: "echo again")
            #expect(same.exitStatus == 4 && same.stdout == "first\n", "\(same)")

            let progress = Progress()
            let next = try await self.runner(progress).run(self.step(name, run: 2), script: "echo again")
            if name == .deploy {
                #expect(next.exitStatus == 4 && next.stdout == "first\n", "\(next)")
            } else {
                #expect(next.exitStatus == 0 && next.stdout == "again\n", "\(next)")
                #expect(
                    progress.lines.withLock {
                        $0.contains { $0.contains("failed in install run 1 (exit status 4); starting it again") }
                    })
            }
        }
    }

    @Test("a deploy whose node rebooted under it is named as cut short by a reboot, at once")
    func rebootedNode() async throws {
        defer { try? FileManager.default.removeItem(at: self.home) }
        let script = "echo started >> \"$HOME/deploy-starts\"; sleep 60"
        let first = Task { try await self.runner().run(self.step(.deploy), script: script) }
        let starts = self.home.appendingPathComponent("deploy-starts")
        try await eventually("deploy started") { FileManager.default.fileExists(atPath: starts.path) }
        first.cancel()
        _ = await first.result
        // A reboot ends every process and gives the kernel a new boot id: the step's record says
        // it began under another boot, and nothing holds its lock.
        let folder = self.folder.appendingPathComponent("deploy")
        #expect(try await killStepSession(folder: folder.path))
        try Data("00000000-0000-4000-8000-000000000000\n".utf8).write(to: folder.appendingPathComponent("boot"))

        let started = ContinuousClock.now
        let result = try await self.runner().run(self.step(.deploy, run: 2), script: "echo again")
        #expect(ContinuousClock.now - started < .seconds(30), "named at once, not after the step's time")
        #expect(result.cutShort && !result.succeeded, "\(result)")
        #expect(
            result.stderr.contains("deploy on 127.0.1.9 was cut short: the node rebooted while it ran"), "\(result)")
        #expect(result.stderr.contains("cannot resume"))
        let again = try String(contentsOf: starts, encoding: .utf8)
        #expect(again == "started\n", "never started a second time")
    }

    @Test("status lines parse; anything else is not a status")
    func parsesStatus() {
        #expect(RemoteStep.status(from: "flotilla-step started\n") == .started)
        #expect(RemoteStep.status(from: "flotilla-step running 2") == .running(run: 2))
        #expect(RemoteStep.status(from: "flotilla-step finished 137 1\nout") == .finished(status: 137, run: 1))
        #expect(RemoteStep.status(from: "flotilla-step lost 1 rebooted") == .lost(run: 1, rebooted: true))
        #expect(RemoteStep.status(from: "flotilla-step lost 1 killed") == .lost(run: 1, rebooted: false))
        #expect(RemoteStep.status(from: "flotilla-step none") == RemoteStep.Status.none)
        #expect(RemoteStep.status(from: "bash: flock: command not found") == nil)
        #expect(RemoteStep.status(from: "flotilla-step finished x 1") == nil)
        #expect(RemoteStep.output(from: "flotilla-step finished 0 1\nline 1\nline 2\n") == "line 1\nline 2\n")
    }
}
