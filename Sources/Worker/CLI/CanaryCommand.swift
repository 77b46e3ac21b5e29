import AWSProvisioner
import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Logging
import Queue
import Synchronization

struct CanaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "canary",
        abstract: "Build one small cluster in your AWS account from start to end, then tear it down.",
        discussion: """
            The first run against a real account: it uses this worker's AWS settings (as worker
            run and worker plan do; no database) and goes through every phase once:

              1. plan: the image, subnet, zone and types, with read-only calls; then every call
                 that creates something, sent with DryRun=true (exit 2 when AWS would refuse
                 one: nothing was created)
              2. one master and no agents (and the bootstrap node): key pair, security group,
                 instances; each instance's console output is read back (GetConsoleOutput)
                 until cloud-init says which SSH key it authorized, or that it found none
                 (then the canary stops at once: SSH would never open)
              3. the install, to ready
              4. the teardown, and a check that nothing tagged with the canary is left

            It prints the time of each phase, and writes to --out every AWS answer
            (credentials and key material removed: usable as test fixtures), each console
            output, and the install logs of a failure. Ctrl-C or SIGTERM stops it, and it
            still tears down what it made; once the teardown runs, a second Ctrl-C or SIGTERM
            is reported and does not stop it (nothing sweeps up after a canary).

              worker canary --installer-url https://example.com/dcos/2.2.5/dcos_generate_config.sh

            Exit status: 0 ready, then torn down; 2 refused before anything was created;
            1 failed after creating (torn down); 3 something was left behind (named);
            130 or 143 interrupted (torn down); 64 bad settings.
            """)

    @Option(help: "URL of dcos_generate_config.sh. Default: $FLOTILLA_INSTALLER_URL.") var installerURL: String?
    @Option(help: "EC2 instance type of the master.") var instanceType = "m4.large"
    @Option(help: "CIDR block allowed to reach the cluster's public ports.") var adminLocation = "0.0.0.0/0"
    @Option(help: "Folder for the AWS answers, console outputs and logs (created). Default: ./flotilla-canary-ID.")
    var out: String?
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let logger = self.common.makeLogger()
        guard let installerURL = self.installerURL ?? ProcessInfo.processInfo.environment["FLOTILLA_INSTALLER_URL"],
            !installerURL.isEmpty
        else {
            throw ValidationError("no installer URL: pass --installer-url or set FLOTILLA_INSTALLER_URL")
        }
        let request = ClusterRequest(
            masters: 1, agents: 0, publicAgents: 0, instanceType: self.instanceType, adminLocation: self.adminLocation,
            installerURL: installerURL, lifetimeSeconds: 3600)
        let aws: AWSContext
        do { aws = try AWSContext.fromEnvironment(logger: logger) } catch {
            fail("cannot set up AWS: \(error)", code: 64)
        }
        let id = "canary-" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(10))
        let spec = aws.settings.spec(id: id, request: request, owner: "canary")
        do {
            try aws.settings.requireImage()
            try spec.validate()
        } catch {
            await aws.shutdown()
            fail("\(error)", code: 64)
        }
        let folder = URL(fileURLWithPath: self.out ?? "flotilla-canary-\(id)")
        let recorder: AWSResponseRecorder
        do {
            recorder = try AWSResponseRecorder(folder: folder.appendingPathComponent("aws"))
        } catch {
            await aws.shutdown()
            fail("cannot create \(folder.path): \(error)", code: 64)
        }
        let canary = Canary(
            spec: spec, provisioner: aws.provisioner(region: spec.region, logger: logger), folder: folder)
        let status = await recorder.withRecorder { await canary.run() }
        await aws.shutdown()
        if status != 0 { throw ExitCode(status) }
    }
}

/// One canary run: plan, dry run, provision (watching the consoles), teardown.
struct Canary: Sendable {
    let spec: ClusterSpec
    let provisioner: ClusterProvisioner
    let folder: URL
    /// How often a console is asked again while cloud-init has not printed its keys.
    var consolePoll: Duration = .seconds(5)
    let started = ContinuousClock.now

    func say(_ text: String) {
        let seconds = (ContinuousClock.now - self.started).seconds
        Self.write(String(format: "[canary %6.1fs] ", seconds) + text)
    }

    /// One line on standard output, unbuffered (a log file or CI sees it at once).
    static func write(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    func run() async -> Int32 {
        self.say("cluster \(self.spec.clusterID) in \(self.spec.region); writing to \(self.folder.path)")
        // 1. The plan and the dry run: nothing exists yet, so a refusal ends the run here.
        let planStart = ContinuousClock.now
        let plan: ClusterPlan
        do {
            plan = try await self.provisioner.plan(self.spec)
        } catch {
            self.say("plan refused: \((error as? ProvisionError)?.message ?? "\(error)"); nothing was created")
            return 2
        }
        Self.write(PlanCommand.render(plan, spec: self.spec, scripts: false))
        let outcomes = await self.provisioner.dryRun(plan, spec: self.spec)
        for outcome in outcomes { self.say("dry run: \(outcome)") }
        let refused = outcomes.filter { !$0.allowed }
        guard refused.isEmpty else {
            self.say("\(refused.count) of \(outcomes.count) calls would be refused; nothing was created")
            return 2
        }
        self.say("dry run: every call would be allowed")
        var phases: [(String, Duration)] = [("plan and dry run", ContinuousClock.now - planStart)]

        // 2 and 3. Provisioning, with the consoles watched beside it.
        let observer = CanaryObserver(canary: self)
        var status: Int32 = 0
        do {
            let state = try await untilSignalled(secondEndsProcess: false) { try await self.provision(observer) }
            // A fast install can end before a console was read: read what is left once.
            try await self.watchConsoles(observer, once: true)
            self.say(
                "ready: "
                    + state.nodes.map { "\($0.role.rawValue) \($0.privateIP)/\($0.publicIP ?? "-")" }.joined(
                        separator: ", "))
        } catch let signalled as Signalled {
            self.say("\(signalled.signal == SIGINT ? "interrupted" : "terminated"); tearing down what was made")
            status = 128 + signalled.signal
        } catch let error as ProvisionError {
            self.say("failed: \(error.message)")
            self.keep(logs: error.logs)
            status = 1
        } catch let error as NoSSHKey {
            self.say("stopped: \(error)")
            status = 1
        } catch {
            self.say("failed: \(error)")
            status = 1
        }
        phases += observer.phases()

        // 4. The teardown, whatever happened. Nothing sweeps up after a canary, so a second
        // Ctrl-C (or a SIGTERM) does not cut it short: it is reported and the teardown goes on.
        let teardownStart = ContinuousClock.now
        let cluster = self.spec.clusterID
        let note: @Sendable (Int32) -> Void = { number in
            self.say(
                "\(number == SIGINT ? "interrupted" : "terminated") again: the teardown goes on (SIGKILL would leave "
                    + "what is tagged cluster=\(cluster))")
        }
        await shieldedFromSignals(note: note) {
            do {
                let report = try await self.provisioner.teardown(
                    self.spec, state: observer.latest, observer: observer)
                phases.append(("teardown", ContinuousClock.now - teardownStart))
                self.say(
                    "torn down: \(report.terminatedInstances.count) instances, security group "
                        + "\(report.deletedSecurityGroup ?? "none"); nothing tagged \(cluster) is left"
                )
            } catch let error as ProvisionError where error.code == .leftovers {
                self.say("LEFT BEHIND: \(error.message)")
                status = 3
            } catch {
                self.say("teardown failed: \(error); look for resources tagged cluster=\(cluster)")
                status = 3
            }
        }
        Self.write("Phases:")
        for (name, took) in phases + [("total", ContinuousClock.now - self.started)] {
            Self.write(
                "  " + name.padding(toLength: 22, withPad: " ", startingAt: 0) + String(format: "%8.1f s", took.seconds)
            )
        }
        return status
    }

    /// Provisions while a second task reads each instance's console; a console that says
    /// cloud-init authorized no key ends both (``NoSSHKey``).
    func provision(_ observer: CanaryObserver) async throws -> ProvisionState {
        try await withThrowingTaskGroup(of: ProvisionState?.self) { group in
            group.addTask { try await self.provisioner.provision(self.spec, observer: observer) }
            group.addTask {
                try await self.watchConsoles(observer)
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let state = result { return state }
            }
            throw CancellationError()
        }
    }

    /// Reads each instance's console until cloud-init has printed what it did with the SSH
    /// key (or, `once`, reads each not yet reported one time); writes each to the folder and
    /// says whether the key is the cluster's.
    func watchConsoles(_ observer: CanaryObserver, once: Bool = false) async throws {
        while true {
            let reported = observer.consolesReported
            let state = observer.latest
            let instances = state.map { $0.step >= .instancesRunning ? $0.instanceIDs : [] } ?? []
            for instance in instances where !reported.contains(instance) {
                let text: String
                do {
                    text = try await self.provisioner.ec2.consoleOutput(instanceID: instance)
                } catch let error as EC2Error {
                    self.say("console of \(instance): \(error.code) (\(error.message))")
                    observer.reportedConsole(of: instance)
                    continue
                }
                let console = CloudInitConsole(text)
                switch console.keys {
                case .notYet:
                    continue
                case .none:
                    try? Data(text.utf8).write(to: self.folder.appendingPathComponent("console-\(instance).txt"))
                    throw NoSSHKey(instance: instance, warnings: console.warnings)
                case .authorized(let fingerprints):
                    try? Data(text.utf8).write(to: self.folder.appendingPathComponent("console-\(instance).txt"))
                    let ours = state?.publicKeyLine.flatMap(CloudInitConsole.fingerprint(ofPublicKeyLine:))
                    let verdict =
                        ours.map { fingerprints.contains($0) ? "the cluster's key" : "NOT the cluster's key \($0)" }
                        ?? "the cluster's key is not known here"
                    self.say(
                        "console of \(instance): cloud-init authorized "
                            + "\(fingerprints.joined(separator: ", ")) (\(verdict))"
                    )
                    observer.reportedConsole(of: instance)
                }
            }
            let done = observer.consolesReported
            if once || (state.map { $0.step >= .instancesRunning && done.isSuperset(of: $0.instanceIDs) } ?? false) {
                return
            }
            // Until the instances run, a checkpoint may come any moment; then cloud-init takes a while.
            try await Task.sleep(for: instances.isEmpty ? .seconds(1) : self.consolePoll)
        }
    }

    /// Writes the install logs of a failure to the folder.
    func keep(logs: [String: String]) {
        guard !logs.isEmpty else { return }
        let directory = self.folder.appendingPathComponent("logs")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for (name, text) in logs {
            let safe = name.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
            try? Data(text.utf8).write(to: directory.appendingPathComponent(String(safe)))
        }
        self.say("install logs: \(directory.path) (\(logs.keys.sorted().joined(separator: ", ")))")
    }
}

/// cloud-init on an instance authorized no SSH key: SSH will never open.
struct NoSSHKey: Error, CustomStringConvertible {
    var instance: String
    var warnings: [String]
    var description: String {
        "cloud-init on \(instance) authorized no SSH key, so SSH will never open"
            + (self.warnings.isEmpty ? "" : "; it said: " + self.warnings.joined(separator: " | "))
            + ". An image whose cloud-init predates 19.4 reads the key only without a token: "
            + "leave FLOTILLA_METADATA_TOKENS at image, or use a newer image"
    }
}

/// Prints progress with the time since the start, keeps the latest checkpoint (for the
/// teardown) and when each step ended (for the phase times).
final class CanaryObserver: ProvisionObserver, Sendable {
    let canary: Canary
    private let state = Mutex<
        (latest: ProvisionState?, ends: [(String, ContinuousClock.Instant)], consoles: Set<String>)
    >(
        (nil, [], []))
    private let began = ContinuousClock.now

    init(canary: Canary) {
        self.canary = canary
    }

    var latest: ProvisionState? { self.state.withLock { $0.latest } }

    /// The instances whose console was read to its verdict (or could not be read).
    var consolesReported: Set<String> { self.state.withLock { $0.consoles } }
    func reportedConsole(of instance: String) { _ = self.state.withLock { $0.consoles.insert(instance) } }

    func checkpoint(_ checkpoint: ProvisionState, moment: CheckpointMoment, step: String) async throws {
        self.state.withLock { state in
            state.latest = checkpoint
            if moment == .after { state.ends.append((step, .now)) }
        }
    }

    func progress(_ message: String) async {
        self.canary.say(message)
    }

    /// Each step's time: from the end of the one before (or the start) to its own end.
    func phases() -> [(String, Duration)] {
        let ends = self.state.withLock { $0.ends }
        var previous = self.began
        return ends.map { step, end in
            defer { previous = end }
            return (step, end - previous)
        }
    }
}
