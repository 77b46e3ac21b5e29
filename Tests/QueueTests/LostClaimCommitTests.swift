import Foundation
import Logging
import PostgresNIO
import Queue
import TestSupport
import Testing

/// A PostgreSQL server of this test's own, which it may crash (`pg_ctl stop -m immediate`,
/// as a power cut: nothing is written at shutdown) and start again on the same data.
///
/// The WAL writer flushes asynchronous commits every `wal_writer_delay` (10 s here, the
/// most PostgreSQL allows); the background writer (which would flush WAL before writing a
/// page) and autovacuum are off, so an asynchronous commit stays unflushed until the crash.
private final class CrashableServer: Sendable {
    let data: String
    let port: Int
    let bin: String
    let runAs: [String]

    static func start() throws -> CrashableServer {
        let bin = try #require(
            (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted().reversed()
                .map { "/usr/lib/postgresql/\($0)/bin" }
                .first { FileManager.default.isExecutableFile(atPath: "\($0)/initdb") },
            "PostgreSQL's server binaries (./scripts/test installs them)")
        let root = getuid() == 0
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flotilla-crash-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        // initdb refuses root: the server runs as the postgres system user.
        let runAs = root ? ["/usr/sbin/runuser", "-u", "postgres", "--"] : []
        if root { try Self.run(["/bin/chown", "postgres:postgres", data]) }
        do {
            try Self.run(
                runAs + [
                    "\(bin)/initdb", "-D", "\(data)/data", "-A", "trust", "-U", "flotilla", "-E", "UTF8", "--no-sync",
                ])
        } catch {
            try? FileManager.default.removeItem(atPath: data)
            throw error
        }
        var failure: (any Error)?
        for _ in 0..<5 {
            let server = CrashableServer(data: data, port: Int.random(in: 42000...48999), bin: bin, runAs: runAs)
            do {
                try server.startServer()
                return server
            } catch {
                // The port was taken, or the start timed out: stop whatever started, try again.
                _ = try? server.crash()
                failure = error
            }
        }
        try? FileManager.default.removeItem(atPath: data)
        throw failure ?? QueueError(.configuration, "the test server did not start")
    }

    private init(data: String, port: Int, bin: String, runAs: [String]) {
        self.data = data
        self.port = port
        self.bin = bin
        self.runAs = runAs
    }

    var settings: DatabaseSettings {
        DatabaseSettings(host: "127.0.0.1", port: self.port, username: "flotilla", database: "postgres")
    }

    func startServer() throws {
        let options =
            "-c listen_addresses=127.0.0.1 -p \(self.port) -k \(self.data) -c fsync=on -c synchronous_commit=on "
            + "-c wal_writer_delay=10000 -c bgwriter_lru_maxpages=0 -c autovacuum=off -c checkpoint_timeout=3600"
        try Self.run(
            self.runAs + [
                "\(self.bin)/pg_ctl", "-D", "\(self.data)/data", "-l", "\(self.data)/server.log",
                "-w", "-t", "30", "-o", options, "start",
            ])
    }

    /// An immediate stop: every backend is killed, nothing is flushed.
    func crash() throws {
        try Self.run(self.runAs + ["\(self.bin)/pg_ctl", "-D", "\(self.data)/data", "-m", "immediate", "-w", "stop"])
    }

    func remove() {
        _ = try? self.crash()
        try? FileManager.default.removeItem(atPath: self.data)
    }

    /// Runs a command to its end and waits for it with `waitpid`. Not Foundation's
    /// `Process`: it learns of a child's end through a descriptor the child inherits, and
    /// the server `pg_ctl start` leaves running would inherit it too, so the wait would never
    /// end. The command gets /dev/null for input and output, a file for its errors, and no
    /// other descriptor of this process.
    private static func run(_ arguments: [String]) throws {
        let errorPath = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flotilla-crash-\(UUID().uuidString.prefix(8)).err"
        ).path
        defer { try? FileManager.default.removeItem(atPath: errorPath) }
        var files = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&files)
        defer { posix_spawn_file_actions_destroy(&files) }
        posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&files, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&files, 3)
        }
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &files, nil, argv, environ)
        guard spawned == 0 else {
            throw QueueError(.configuration, "cannot run \(arguments[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        guard status == 0 else {
            let message = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
            throw QueueError(
                .configuration, "\(arguments.joined(separator: " ")) failed (wait status \(status)): \(message)")
        }
    }
}

@Suite("A claim whose commit was lost", .timeLimit(.minutes(3)))
struct LostClaimCommitTests {
    @Test(
        "a consumer whose async claim commit a crash lost cannot complete, heartbeat or fail the re-claimed job"
    )
    func lostClaimIsFenced() async throws {
        let server = try CrashableServer.start()
        defer { server.remove() }
        let logger = TestDatabase.logger
        let migrations = try Migration.load(from: TestDatabase.migrationsDirectory)
        let jobID = try await server.settings.withClient(maximumConnections: 2, logger: logger) { client in
            try await Migrator(client: client, logger: logger).migrate(migrations)
            return try await JobQueue(client: client, logger: logger).enqueue(NewJob(kind: .noop)).id
        }

        // Consumer A claims on the lease pool `worker run` uses by default (its sessions
        // start with synchronous_commit = off); the test checks the setting took.
        let asynchronous = try server.settings.leaseClientConfiguration(maximumConnections: 2)
        let clientA = PostgresClient(configuration: asynchronous, backgroundLogger: logger)
        let claimedByA: ClaimedJob = try await withThrowingTaskGroup(of: ClaimedJob?.self) { group in
            group.addTask {
                await clientA.run()
                return nil
            }
            defer { group.cancelAll() }
            // An asynchronous commit first, waited until flushed: the WAL writer flushed
            // just now, so it next flushes only wal_writer_delay (10 s) later.
            #expect(try await clientA.scalar("SHOW synchronous_commit", as: String.self) == "off")
            let warmUp = try await clientA.scalar(
                "SELECT txid_current()::text || pg_current_wal_insert_lsn()::text", as: String.self)
            #expect(!warmUp.isEmpty)
            try await eventually("the warm-up commit flushed", timeout: .seconds(30)) {
                try await clientA.scalar(
                    "SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()", as: Bool.self)
            }
            let claimed = try await JobQueue(client: clientA, leaseClient: clientA, logger: logger).claim(
                kinds: [.noop], limit: 1, owner: "consumer-a")
            let job = try #require(claimed.first)
            #expect(job.id == jobID)
            // Not even written to the kernel: an immediate stop keeps what was written.
            let unwritten = try await clientA.scalar(
                "SELECT pg_current_wal_lsn() < pg_current_wal_insert_lsn()", as: Bool.self)
            #expect(unwritten, "the claim's commit is still only in PostgreSQL's WAL buffers")
            return job
        }
        await Task.yield()
        try server.crash()
        try server.startServer()

        try await server.settings.withClient(maximumConnections: 4, logger: logger) { client in
            let queue = JobQueue(client: client, logger: logger)
            let state = try await client.scalar("SELECT state::text FROM jobs WHERE id = \(jobID)", as: String.self)
            #expect(state == "queued", "the claim was lost with the crash")

            let claimedByB = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "consumer-b").first)
            #expect(claimedByB.id == jobID && claimedByB.leaseToken != claimedByA.leaseToken)

            // A still believes it holds the job: every fenced change is refused.
            let attempts: [(String, @Sendable () async throws -> Void)] = [
                ("complete", { try await queue.complete(claimedByA) }),
                ("heartbeat", { _ = try await queue.heartbeat(claimedByA) }),
                ("fail", { _ = try await queue.fail(claimedByA, error: "from a lost claim") }),
            ]
            for (action, attempt) in attempts {
                do {
                    try await attempt()
                    Issue.record("\(action) with the lost claim's token was accepted")
                } catch let error as QueueError {
                    #expect(error.code == .leaseLost, "\(action): \(error)")
                }
            }
            #expect(try await queue.complete(batch: [claimedByA]) == [jobID], "the batch completion refuses it too")
            let owner = try await client.scalar(
                "SELECT lease_owner || ' ' || state::text FROM jobs WHERE id = \(jobID)", as: String.self)
            #expect(owner == "consumer-b running")

            try await queue.complete(claimedByB)
            let finished = try await client.scalar("SELECT state::text FROM jobs WHERE id = \(jobID)", as: String.self)
            #expect(finished == "succeeded")
        }
    }
}
