import ArgumentParser
import CommandOptions
import Foundation
import Queue
import Synchronization
import Timing

struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command on one of a cluster's nodes over SSH, and exit with its status.",
        discussion: """
            CMD runs as the cluster's SSH user (root with --sudo), with its arguments as
            given (each one word on the node, as with `client run`; for pipes or globs
            give `sh -c '…'`). Its output is streamed as it comes. Ctrl-C (SIGINT) and
            SIGTERM are passed to the command on the node, and this client waits up to
            10 s for it to end.

            --test-env runs CMD the way dcos-e2e's run_with_test_environment did: after
            sourcing /opt/mesosphere/environment.export, in
            /opt/mesosphere/active/dcos-integration-test, with MASTER_HOSTS,
            PUBLIC_MASTER_HOSTS, SLAVE_HOSTS, PUBLIC_SLAVE_HOSTS (private IPs,
            comma-separated), DCOS_DNS_ADDRESS (http://<the node's private IP>),
            DCOS_NUM_MASTERS and DCOS_NUM_AGENTS set. --env values are set after those
            and win.

            Inside `client run`, FLOTILLA_CLUSTER_ID and FLOTILLA_LEASE_TOKEN are set,
            so the ID and --lease-token can be left out.

            Examples:
              client exec c-0123456789 -- systemctl status dcos-mesos-master
              client exec c-0123456789 --node agent_1 --sudo -- journalctl -n 50
              client exec --test-env -- pytest -x test_networking.py

            Exit codes: CMD's status; 130/143 when it ended on the signal passed on; 255
            when SSH itself failed; 1 refused (no such cluster or node, not the lease
            holder); 64 bad usage.
            """)

    @Argument(help: "The cluster id (default: $FLOTILLA_CLUSTER_ID).") var id: String?
    @Option(help: "The node: master_0 (the default), agent_N, public_agent_N, bootstrap, an IP or an instance id.")
    var node = "master_0"
    @Option(name: .customLong("env"), help: "NAME=VALUE for CMD's environment. Repeatable.") var environment: [String] =
        []
    @Flag(help: "Run CMD in the DC/OS integration-test environment (see below).") var testEnv = false
    @Flag(help: "Run CMD as root (sudo -n on the node).") var sudo = false
    @Flag(help: "Give CMD a terminal on the node (ssh -tt), for interactive programs.") var tty = false
    @OptionGroup var access: NodeAccessOptions
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions
    @Argument(parsing: .postTerminator, help: "The command to run on the node, after --.") var command: [String] = []

    func validate() throws {
        guard !self.command.isEmpty else {
            throw ValidationError("give the command after --, like: client exec c-0123456789 -- hostname")
        }
        for pair in self.environment {
            let name = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            guard pair.contains("="), name.wholeMatch(of: /[A-Za-z_][A-Za-z0-9_]*/) != nil else {
                throw ValidationError("--env takes NAME=VALUE with NAME a variable name, not \(pair.prefix(40))")
            }
        }
        _ = try clusterID(self.id)
    }

    func run() async throws {
        let (id, token, mode) = (try clusterID(self.id), try self.lease.token(), self.access.mode)
        let (reference, command, environment) = (self.node, self.command, self.environment)
        let (testEnv, sudo, tty) = (self.testEnv, self.sudo, self.tty)
        let status = try await withStore(self.options) { store, _ -> Int32 in
            let access = try await NodeAccess.open(store: store, id: id, token: token, mode: mode)
            let node = try access.resolve(reference)
            var variables = testEnv ? access.testEnvironment(on: node) : []
            for pair in environment {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                variables.append((String(parts[0]), String(parts[1])))
            }
            let script = RemoteExec(
                command: command, variables: variables, testEnvironment: testEnv, sudo: sudo,
                token: UUID().uuidString.lowercased())
            return try await script.run(on: node, through: access, tty: tty)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

/// One `client exec` on a node: the script its login shell runs, and how a signal reaches it.
///
/// Without a terminal, closing the SSH connection does not stop a remote command, so `ssh` runs
/// with SIGINT ignored (a Ctrl-C reaches this client only) and the command's shell
/// writes its session id to `/tmp/flotilla-exec-TOKEN`. A signal to this client becomes
/// `pkill -SIG -s SESSION` over a second connection, as a Ctrl-C at a terminal on the node
/// would signal its foreground group; the first connection then ends with the command's own
/// status. With `--tty` the terminal on the node does that itself (`ssh -tt` passes a Ctrl-C
/// as a keystroke), and SIGTERM ends `ssh`, which hangs the node's terminal up.
struct RemoteExec {
    var command: [String]
    var variables: [(String, String)]
    var testEnvironment: Bool
    var sudo: Bool
    var token: String

    var pidFile: String { "/tmp/flotilla-exec-\(self.token)" }

    /// What runs as the user (or root): the environment, the test folder, the command.
    var body: String {
        var text = ""
        if self.testEnvironment {
            text += ". \(DCOSPaths.environment) && cd \(DCOSPaths.testDirectory) && "
        }
        let assignments = self.variables.map { "\($0.0)=\($0.1)" }
        text += Shell.command((assignments.isEmpty ? [] : ["env"] + assignments) + self.command)
        return self.sudo ? Shell.command(["sudo", "-n", "sh", "-c", text]) : text
    }

    /// The login shell's script. Without a terminal it records its session id first (the
    /// file is removed when the shell exits).
    func script(tty: Bool) -> String {
        if tty { return self.body }
        let file = Shell.quote(self.pidFile)
        return "(umask 077; echo $$ > \(file)) && trap 'rm -f \(file)' EXIT && \(self.body)"
    }

    /// Signals the command's session on the node (as root with --sudo).
    func interruptScript(signal: Int32) -> String {
        let name = signal == SIGTERM ? "TERM" : signal == SIGHUP ? "HUP" : "INT"
        let file = Shell.quote(self.pidFile)
        return "[ -s \(file) ] && \(self.sudo ? "sudo -n " : "")pkill -\(name) -s \"$(cat \(file))\""
    }

    func run(on node: NamedNode, through access: NodeAccess, tty: Bool) async throws -> Int32 {
        let passedOn = Atomic<Int32>(0)
        let status = Mutex<Int32?>(nil)
        do {
            // ssh starts inside: SIGINT is then ignored by this process (untilSignalled handles
            // it), and without a terminal on the node ssh inherits that, so a Ctrl-C at the local
            // terminal stops neither ssh nor its reading of the terminal; it is passed on below.
            try await untilSignalled(secondEndsProcess: false) {
                let child: Child
                do {
                    child = try spawnChild(
                        access.ssh(node, tty: tty) + [self.script(tty: tty)],
                        environment: ProcessInfo.processInfo.environment, ignoringInterrupt: !tty)
                } catch {
                    throw QueueError(
                        .invalidInput, "\(error); `client exec` needs OpenSSH's ssh on PATH (`client doctor`)")
                }
                let exit = await withTaskCancellationHandler {
                    await child.wait()
                } onCancel: {
                    let number = lastSignal.load(ordering: .relaxed)
                    let signal = number == 0 ? SIGTERM : number
                    passedOn.store(signal, ordering: .relaxed)
                    Task { await self.passOn(signal, to: child, on: node, through: access, tty: tty) }
                }
                status.withLock { $0 = exit }
            }
        } catch is Signalled {
            // The command's status is in `status`: the wait above went on until ssh ended.
        }
        let exit = status.withLock { $0 } ?? 255
        let number = passedOn.load(ordering: .relaxed)
        if number != 0 { return exit == 255 ? 128 + number : exit }
        if exit == 255 {
            FileHandle.standardError.write(
                Data("client exec: SSH to \(node.name) (\(access.address(of: node))) failed (status 255)\n".utf8))
        }
        return exit
    }

    /// Passes `signal` to the command and waits for `ssh` to end: the signal again every 2 s
    /// while it runs, and after 10 s `ssh` itself is ended.
    private func passOn(_ signal: Int32, to child: Child, on node: NamedNode, through access: NodeAccess, tty: Bool)
        async
    {
        if tty {
            child.signal(signal)
        } else {
            for _ in 0..<5 {
                if child.exit.isFinished { break }
                // Bounded: a node that does not answer must not hold the client for minutes.
                _ = try? await withTimeout(.seconds(3)) {
                    try await access.run(self.interruptScript(signal: signal), on: node)
                }
                for _ in 0..<20 where !child.exit.isFinished { try? await Task.sleep(for: .milliseconds(100)) }
            }
            child.signal(SIGTERM)
        }
    }
}

/// Copies with `cp -R` meaning: DEST, when it is an existing folder, receives SRC inside it;
/// otherwise SRC becomes DEST (a file or a whole folder). Modes and times are kept (tar), the
/// owner is whoever writes (the SSH user, or root with --sudo). The receiving side unpacks
/// into a temporary folder beside DEST and renames, so an interrupted copy leaves no half DEST.
enum Copy {
    /// The receiving side's script, the same on a node and here: a tar stream of one entry
    /// named `name` arrives on standard input.
    static func receive(into destination: String, name: String) -> String {
        let d = Shell.quote(destination)
        let n = Shell.quote(name)
        return """
            set -e
            if [ -d \(d) ]; then exec tar -C \(d) -xpf - --no-same-owner; fi
            p=$(dirname -- \(d)); mkdir -p -- "$p"
            t=$(mktemp -d "$p/.flotilla-copy.XXXXXX"); trap 'rm -rf -- "$t"' EXIT
            tar -C "$t" -xpf - --no-same-owner
            mv -f -- "$t"/\(n) \(d)
            """
    }

    /// The sending side: a tar stream of `path` as one entry named by its last component.
    static func send(_ path: String, excludingCaches: Bool = false) -> [String] {
        let url = URL(fileURLWithPath: path)
        let excludes = excludingCaches ? ["--exclude=__pycache__", "--exclude=*.pyc", "--exclude=.pytest_cache"] : []
        return ["tar"] + excludes + [
            "-C", url.deletingLastPathComponent().path, "-cf", "-", "--", url.lastPathComponent,
        ]
    }

    /// Runs `producer | consumer` and returns both statuses.
    static func pipe(_ producer: [String], into consumer: [String]) async throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        guard Glibc.pipe(&fds) == 0 else {
            throw QueueError(.invalidInput, "cannot make a pipe: \(String(cString: strerror(errno)))")
        }
        defer { for fd in fds { close(fd) } }
        let environment = ProcessInfo.processInfo.environment
        let first: Child
        let second: Child
        do {
            first = try spawnChild(producer, environment: environment, streams: ChildStreams(output: fds[1]))
            do {
                second = try spawnChild(consumer, environment: environment, streams: ChildStreams(input: fds[0]))
            } catch {
                first.signal(SIGTERM)
                _ = await first.wait()
                throw error
            }
        } catch {
            throw QueueError(.invalidInput, "\(error) (`client doctor` checks what the file commands need)")
        }
        close(fds[0])
        close(fds[1])
        fds = []
        return await withTaskCancellationHandler {
            async let a = first.wait()
            async let b = second.wait()
            return await (a, b)
        } onCancel: {
            first.signal(SIGTERM)
            second.signal(SIGTERM)
        }
    }
}

struct SendFileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-file",
        abstract: "Copy a local file or folder to a node.",
        discussion: """
            As `cp -R`: when DEST is an existing folder on the node, SRC goes inside it;
            otherwise SRC becomes DEST (its parent folders are made). Modes and times
            are kept.

            Examples:
              client send-file c-0123456789 ./fixtures /home/centos/fixtures
              client send-file c-0123456789 ca.crt /etc/pki/ca-trust/source/anchors/ --node agent_0 --sudo
            """)

    @Argument(help: "The cluster id.") var id: String
    @Argument(help: "The local file or folder.") var source: String
    @Argument(help: "Where it goes on the node.") var destination: String
    @Option(help: "The node: master_0 (the default), agent_N, public_agent_N, bootstrap, an IP or an instance id.")
    var node = "master_0"
    @Flag(help: "Write as root (sudo -n on the node).") var sudo = false
    @OptionGroup var access: NodeAccessOptions
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard FileManager.default.fileExists(atPath: self.source) else {
            throw ValidationError("\(self.source) does not exist here")
        }
        guard !self.destination.isEmpty else { throw ValidationError("give the path on the node") }
    }

    func run() async throws {
        let (id, token, mode, reference) = (self.id, try self.lease.token(), self.access.mode, self.node)
        let (source, destination, sudo, json) = (self.source, self.destination, self.sudo, self.options.json)
        let options = self.options
        try await endingOnSignal {
            try await withStore(options) { store, _ in
                let access = try await NodeAccess.open(store: store, id: id, token: token, mode: mode)
                let node = try access.resolve(reference)
                let name = URL(fileURLWithPath: source).lastPathComponent
                let receive = Copy.receive(into: destination, name: name)
                let remote = Shell.command(sudo ? ["sudo", "-n", "sh", "-c", receive] : ["sh", "-c", receive])
                let (sent, received) = try await Copy.pipe(Copy.send(source), into: access.ssh(node) + [remote])
                guard sent == 0, received == 0 else {
                    throw QueueError(
                        .conflict,
                        "copying \(source) to \(node.name):\(destination) failed (tar here: status \(sent), "
                            + "on the node: status \(received)); see the messages above")
                }
                printAnswer(
                    json: json, ["id": id, "node": node.name, "source": source, "destination": destination],
                    text: "copied \(source) to \(node.name) (\(access.address(of: node))):\(destination)")
            }
        }
    }
}

struct DownloadFileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download-file",
        abstract: "Copy a file or folder from a node to here.",
        discussion: """
            As `cp -R`: when DEST is an existing folder here, SRC goes inside it;
            otherwise SRC becomes DEST. Modes and times are kept.

            Example:
              client download-file c-0123456789 /var/lib/dcos/cluster-id ./cluster-id
            """)

    @Argument(help: "The cluster id.") var id: String
    @Argument(help: "The file or folder on the node.") var source: String
    @Argument(help: "Where it goes here.") var destination: String
    @Option(help: "The node: master_0 (the default), agent_N, public_agent_N, bootstrap, an IP or an instance id.")
    var node = "master_0"
    @Flag(help: "Read as root (sudo -n on the node).") var sudo = false
    @OptionGroup var access: NodeAccessOptions
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (id, token, mode, reference) = (self.id, try self.lease.token(), self.access.mode, self.node)
        let (source, destination, sudo, json) = (self.source, self.destination, self.sudo, self.options.json)
        let options = self.options
        try await endingOnSignal {
            try await withStore(options) { store, _ in
                let access = try await NodeAccess.open(store: store, id: id, token: token, mode: mode)
                let node = try access.resolve(reference)
                let url = URL(fileURLWithPath: source)
                let name = url.lastPathComponent
                let parent = url.deletingLastPathComponent().path
                let q = Shell.quote(source)
                let send =
                    "[ -e \(q) ] || { echo \"no such file or folder on \(node.name): \"\(q) >&2; exit 3; }; "
                    + "exec tar -C \(Shell.quote(parent)) -cf - -- \(Shell.quote(name))"
                let remote = Shell.command(sudo ? ["sudo", "-n", "sh", "-c", send] : ["sh", "-c", send])
                let (sent, received) = try await Copy.pipe(
                    access.ssh(node) + [remote], into: ["sh", "-c", Copy.receive(into: destination, name: name)])
                guard sent == 0, received == 0 else {
                    throw QueueError(
                        .conflict,
                        "copying \(node.name):\(source) to \(destination) failed (on the node: status \(sent), "
                            + "tar here: status \(received)); see the messages above")
                }
                printAnswer(
                    json: json, ["id": id, "node": node.name, "source": source, "destination": destination],
                    text: "copied \(node.name) (\(access.address(of: node))):\(source) to \(destination)")
            }
        }
    }
}

struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Copy a DC/OS checkout's integration tests to every master, as `minidcos aws sync` did.",
        discussion: """
            DIR is a clone of dcos/dcos (or DC/OS Enterprise). On every master, as root:
            the top-level *.py files of /opt/mesosphere/active/dcos-integration-test are
            removed and DIR/packages/dcos-integration-test/extra is unpacked over that
            folder; when DIR has packages/bootstrap/extra/dcos_internal_utils, it is
            unpacked into the node's bootstrap site-packages (its Python version read
            from /opt/mesosphere/active/bootstrap/lib). __pycache__ folders and *.pyc
            files are left out.

            Example:
              client sync c-0123456789 ~/src/dcos && client exec c-0123456789 --test-env -- pytest -x test_auth.py
            """)

    @Argument(help: "The cluster id.") var id: String
    @Argument(help: "The DC/OS checkout (default: $DCOS_CHECKOUT_DIR).") var checkout: String?
    @OptionGroup var access: NodeAccessOptions
    @OptionGroup var lease: LeaseOptions
    @OptionGroup var options: ClientOptions

    var checkoutPath: String? { self.checkout ?? ProcessInfo.processInfo.environment["DCOS_CHECKOUT_DIR"] }

    static let testFolder = "packages/dcos-integration-test/extra"
    static let bootstrapFolder = "packages/bootstrap/extra/dcos_internal_utils"

    func validate() throws {
        guard let path = self.checkoutPath else {
            throw ValidationError("give the DC/OS checkout folder (or set DCOS_CHECKOUT_DIR)")
        }
        var folder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path + "/" + Self.testFolder, isDirectory: &folder),
            folder.boolValue
        else {
            throw ValidationError("\(path) has no \(Self.testFolder): give a clone of dcos/dcos (a DC/OS checkout)")
        }
    }

    func run() async throws {
        let (id, token, mode, json) = (self.id, try self.lease.token(), self.access.mode, self.options.json)
        let checkout = self.checkoutPath!
        let tests = checkout + "/" + Self.testFolder
        let bootstrap = checkout + "/" + Self.bootstrapFolder
        let hasBootstrap = FileManager.default.fileExists(atPath: bootstrap)
        let options = self.options
        try await endingOnSignal {
            try await withStore(options) { store, _ in
                let access = try await NodeAccess.open(store: store, id: id, token: token, mode: mode)
                let masters = access.masters
                let failures = try await withThrowingTaskGroup(of: String?.self) { group in
                    for master in masters {
                        group.addTask {
                            try await Self.sync(master, tests: tests, bootstrap: hasBootstrap ? bootstrap : nil, access)
                        }
                    }
                    return try await group.reduce(into: [String]()) { if let failure = $1 { $0.append(failure) } }
                }
                guard failures.isEmpty else {
                    throw QueueError(.conflict, "sync failed: \(failures.joined(separator: "; "))")
                }
                printAnswer(
                    json: json, ["id": id, "masters": masters.map(\.name), "bootstrap": hasBootstrap],
                    text: "synced \(tests) to \(masters.map(\.name).joined(separator: ", "))"
                        + (hasBootstrap ? " (and dcos_internal_utils)" : ""))
            }
        }
    }

    /// One master; nil when it worked, else what failed.
    static func sync(_ master: NamedNode, tests: String, bootstrap: String?, _ access: NodeAccess) async throws
        -> String?
    {
        // The folder's contents, not the folder: `tar -C extra .`.
        let testsUnpack =
            "set -e; cd \(DCOSPaths.testDirectory); rm -rf ./*.py; exec tar -xpf - --no-same-owner"
        let (sent, received) = try await Copy.pipe(
            ["tar", "--exclude=__pycache__", "--exclude=*.pyc", "-C", tests, "-cf", "-", "."],
            into: access.ssh(master) + [Shell.command(["sudo", "-n", "sh", "-c", testsUnpack])])
        guard sent == 0, received == 0 else {
            return "\(master.name): the tests (tar here \(sent), on the node \(received))"
        }
        guard let bootstrap else { return nil }
        let lib = DCOSPaths.bootstrapLib
        let bootstrapUnpack = """
            set -e; v=$(ls \(lib) | head -n 1); [ -n "$v" ] || { echo "no Python under \(lib)" >&2; exit 3; }
            d=\(lib)/$v/site-packages/dcos_internal_utils; mkdir -p "$d"; exec tar -C "$d" -xpf - --no-same-owner
            """
        let (bootstrapSent, bootstrapReceived) = try await Copy.pipe(
            ["tar", "--exclude=__pycache__", "--exclude=*.pyc", "-C", bootstrap, "-cf", "-", "."],
            into: access.ssh(master) + [Shell.command(["sudo", "-n", "sh", "-c", bootstrapUnpack])])
        guard bootstrapSent == 0, bootstrapReceived == 0 else {
            return "\(master.name): dcos_internal_utils (tar here \(bootstrapSent), on the node \(bootstrapReceived))"
        }
        return nil
    }
}
