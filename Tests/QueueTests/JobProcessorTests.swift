import Foundation
import PostgresNIO
import Queue
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing
import Timing

/// Counts how often a handler ran each job.
final class RunLog: Sendable {
    let runs = Mutex<[Int64: Int]>([:])
    func record(_ id: Int64) { self.runs.withLock { $0[id, default: 0] += 1 } }
    var snapshot: [Int64: Int] { self.runs.withLock { $0 } }
}

@Suite("Job processor", .timeLimit(.minutes(3)))
struct JobProcessorTests {
    static func processor(
        _ queue: JobQueue, _ db: TestDatabase, id: String, concurrency: Int = 4,
        poll: Duration = .milliseconds(200), heartbeat: Duration = .seconds(10),
        grace: Duration = .seconds(30), pollOnly: Bool = false,
        handler: @escaping JobProcessor.Handler
    ) -> JobProcessor {
        JobProcessor(
            queue: queue, settings: db.settings,
            configuration: .init(
                workerID: id, kinds: [.noop], concurrency: concurrency, pollInterval: poll,
                heartbeatInterval: heartbeat, shutdownGracePeriod: grace, pollOnly: pollOnly),
            logger: TestDatabase.logger, handler: handler)
    }

    static func count(_ client: PostgresClient, _ state: JobState) async throws -> Int {
        try await client.scalar("SELECT count(*)::int FROM jobs WHERE state = \(state.rawValue)", as: Int.self)
    }

    @Test("8 concurrent consumers over 2,000 jobs: every job completed exactly once")
    func eightConsumers() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient(maximumConnections: 40) { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let ids = try await queue.enqueue(batch: Array(repeating: NewJob(kind: .noop), count: 2000))
            let log = RunLog()
            let consumers = (0..<8).map { index in
                Self.processor(queue, db, id: "consumer-\(index)") { job, _ in log.record(job.id) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for consumer in consumers { group.addTask { try await consumer.run() } }
                try await eventually("2,000 jobs succeeded", timeout: .seconds(120)) {
                    try await Self.count(client, .succeeded) == 2000
                }
                group.cancelAll()
            }
            let runs = log.snapshot
            #expect(runs.count == 2000)
            #expect(Set(runs.keys) == Set(ids))
            #expect(runs.values.allSatisfy { $0 == 1 }, "a job ran twice")
            let owners = try await client.scalar("SELECT count(DISTINCT lease_owner)::int FROM jobs", as: Int.self)
            #expect(owners > 1, "the work was shared between consumers")
        }
    }

    @Test("a NOTIFY wakes an idle consumer long before its next poll")
    func notifyWakesConsumer() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let log = RunLog()
            let consumer = Self.processor(queue, db, id: "listener", poll: .seconds(3600)) { job, _ in
                log.record(job.id)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run() }
                // The first wake-up after LISTEN claims nothing; then every enqueue must
                // be picked up through its notification alone.
                for round in 1...3 {
                    let id = try await queue.enqueue(NewJob(kind: .noop)).id
                    try await eventually("job \(round) picked up by notification", timeout: .seconds(10)) {
                        log.snapshot[id] == 1
                    }
                }
                group.cancelAll()
            }
        }
    }

    @Test("8 idle consumers sharing one JobWakeups: a job wakes one of them, not all; the jobs go round the idle ones")
    func wakeOne() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient(maximumConnections: 20) { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let log = RunLog()
            let wakeups = JobWakeups(settings: db.settings, logger: TestDatabase.logger)
            let consumers = (0..<8).map { index in
                JobProcessor(
                    queue: queue, settings: db.settings,
                    configuration: .init(
                        workerID: "idle-\(index)", kinds: [.noop], concurrency: 1,
                        pollInterval: .seconds(3600)),
                    wakeups: wakeups, logger: TestDatabase.logger
                ) { job, _ in log.record(job.id) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for consumer in consumers { group.addTask { try await consumer.run() } }
                try await eventually("every consumer made its first claim") { consumers.allSatisfy { $0.claims >= 1 } }
                // Picked up only once the LISTEN connection is up (polls are an hour apart),
                // and that connection's wake-everyone came before.
                let first = try await queue.enqueue(NewJob(kind: .noop)).id
                try await eventually("the first job picked up") { log.snapshot[first] == 1 }
                try await eventually("first job written") { consumers.allSatisfy { $0.inFlight == 0 } }
                let before = consumers.map(\.claims).reduce(0, +)
                let jobs = 10
                for round in 1...jobs {
                    // Every consumer idle first: the last job's consumer has made its follow-up
                    // claim, so the job goes to the one woken, not to a claim already on its way.
                    try await eventually("all 8 idle before job \(round)") { wakeups.idleCount == 8 }
                    let id = try await queue.enqueue(NewJob(kind: .noop)).id
                    try await eventually("job \(round) picked up", timeout: .seconds(10)) { log.snapshot[id] == 1 }
                }
                try await eventually("every job written") { try await Self.count(client, .succeeded) == jobs + 1 }
                let claims = consumers.map(\.claims).reduce(0, +) - before
                // Each job: the woken consumer's claim, and one more because its one slot was
                // filled; at most 8 late claims from the connection's wake-everyone, and a third
                // per job for slack. Waking every idle consumer would take at least 8 per job:
                // 80 here.
                #expect(claims <= 3 * jobs + 8, "\(claims) claim statements for \(jobs) jobs")
                print("measured: \(claims) claim statements for \(jobs) jobs with 8 idle consumers")
                // The longest idle is woken each time, and a consumer goes to the back of the line
                // when it turns idle again: 11 jobs go round all 8.
                let owners = try await client.scalar("SELECT count(DISTINCT lease_owner)::int FROM jobs", as: Int.self)
                #expect(owners == 8, "jobs went round the idle consumers: \(owners) owners")
                #expect(try await Self.listeners(client) == 1, "one LISTEN connection for the 8")
                group.cancelAll()
            }
            // Every processor returned: the last one closed the shared LISTEN connection.
            try await eventually("the LISTEN connection closed") { try await Self.listeners(client) == 0 }
        }
    }

    /// Sessions of this database whose last statement was a LISTEN or an UNLISTEN (the
    /// listener sends UNLISTEN before it closes; the session must be gone, not only quiet).
    static func listeners(_ client: PostgresClient) async throws -> Int {
        try await client.scalar(
            """
            SELECT count(*)::int FROM pg_stat_activity
            WHERE datname = current_database() AND (query ILIKE 'LISTEN%' OR query ILIKE 'UNLISTEN%')
              AND pid <> pg_backend_pid()
            """, as: Int.self)
    }

    @Test("poll-only mode picks jobs up by polling")
    func pollOnly() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let log = RunLog()
            let consumer = Self.processor(queue, db, id: "poller", poll: .milliseconds(50), pollOnly: true) { job, _ in
                log.record(job.id)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run() }
                let id = try await queue.enqueue(NewJob(kind: .noop)).id
                try await eventually("job picked up by polling") { log.snapshot[id] == 1 }
                group.cancelAll()
            }
        }
    }

    @Test("a handler that throws is retried, then ends failed with its error")
    func failingHandler() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(
                client: client,
                configuration: .init(retry: RetryPolicy(base: .milliseconds(10), maximum: .milliseconds(20))),
                logger: TestDatabase.logger)
            let log = RunLog()
            struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }
            let consumer = Self.processor(queue, db, id: "failer", poll: .milliseconds(20)) { job, _ in
                log.record(job.id)
                throw Boom()
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run() }
                let id = try await queue.enqueue(NewJob(kind: .noop, maxAttempts: 3)).id
                try await eventually("job failed for good") { try await queue.job(id: id)?.state == .failed }
                group.cancelAll()
                let record = try #require(try await queue.job(id: id))
                #expect(record.attempt == 3)
                #expect(record.lastError == "boom")
                #expect(log.snapshot[id] == 3)
            }
        }
    }

    @Test("cancelling a running job stops its handler at the next heartbeat")
    func cancelRunning() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let started = RunLog()
            let stopped = RunLog()
            let consumer = Self.processor(
                queue, db, id: "worker", poll: .milliseconds(50), heartbeat: .milliseconds(100)
            ) { job, _ in
                started.record(job.id)
                do {
                    try await Task.sleep(for: .seconds(3600))
                } catch {
                    stopped.record(job.id)
                    throw error
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run() }
                let id = try await queue.enqueue(NewJob(kind: .noop)).id
                try await eventually("job started") { started.snapshot[id] == 1 }
                #expect(try await queue.cancel(id: id) == .running)
                try await eventually("job cancelled") { try await queue.job(id: id)?.state == .cancelled }
                #expect(stopped.snapshot[id] == 1, "the handler was stopped")
                group.cancelAll()
            }
        }
    }

    @Test("a worker whose lease is lost stops the handler and writes nothing")
    func leaseLostStopsHandler() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let started = RunLog()
            let stopped = RunLog()
            let consumer = Self.processor(queue, db, id: "slow", poll: .milliseconds(50), heartbeat: .milliseconds(100))
            { job, _ in
                started.record(job.id)
                do { try await Task.sleep(for: .seconds(3600)) } catch {
                    stopped.record(job.id)
                    throw error
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await consumer.run() }
                let id = try await queue.enqueue(NewJob(kind: .noop)).id
                try await eventually("job started") { started.snapshot[id] == 1 }
                // Another worker takes over, as after a rescue and a new claim: a new token
                // and owner. (Done in SQL so this worker's own poll cannot claim it first.)
                try await client.query(
                    """
                    UPDATE jobs SET lease_token = gen_random_uuid(), lease_owner = 'other',
                                    attempt = attempt + 1, lease_expires_at = now() + interval '1 hour'
                    WHERE id = \(id)
                    """)
                try await eventually("old handler stopped") { stopped.snapshot[id] == 1 }
                let record = try #require(try await queue.job(id: id))
                #expect(record.state == .running)
                #expect(record.leaseOwner == "other")
                #expect(record.lastError == nil, "the worker that lost the lease wrote nothing")
                group.cancelAll()
            }
        }
    }

    @Test("graceful shutdown: stops claiming, lets short jobs finish, hands long ones back without using an attempt")
    func gracefulShutdown() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let started = RunLog()
            let release = Mutex(false)
            // The grace period is long enough for the short job to finish on a loaded CI
            // machine (500 ms was not: a job still ending after it is handed back); the
            // long one is handed back when it ends.
            let consumer = Self.processor(
                queue, db, id: "stopping", concurrency: 2, poll: .milliseconds(50),
                grace: .seconds(5)
            ) { job, _ in
                started.record(job.id)
                let payload = try job.decodePayload([String: Bool].self)
                if payload["long"] == true {
                    try await Task.sleep(for: .seconds(3600))
                } else {
                    // Finishes once shutdown has begun, within the grace period.
                    while !release.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
                }
            }
            let short = try await queue.enqueue(NewJob(kind: .noop, payload: #"{"long": false}"#)).id
            let long = try await queue.enqueue(NewJob(kind: .noop, payload: #"{"long": true}"#)).id
            let group = ServiceGroup(
                configuration: .init(services: [.init(service: consumer)], logger: TestDatabase.logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                try await eventually("both jobs running") { started.snapshot.count == 2 }
                await group.triggerGracefulShutdown()
                // The service group tells the processor on its own time: wait until it has.
                try await eventually("the processor saw the shutdown") { consumer.isStopping }
                let late = try await queue.enqueue(NewJob(kind: .noop)).id
                release.withLock { $0 = true }
                try await tasks.waitForAll()
                #expect(try await queue.job(id: short)?.state == .succeeded)
                let handedBack = try #require(try await queue.job(id: long))
                #expect(handedBack.state == .queued)
                #expect(handedBack.attempt == 0, "a hand-back does not use up an attempt")
                #expect(try await queue.job(id: late)?.state == .queued, "nothing is claimed after shutdown began")
                #expect(started.snapshot[late] == nil)
            }
        }
    }

    @Test("maintenance rescues a dead worker's job promptly and another worker finishes it")
    func maintenanceRescues() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let shortLease = JobQueue(
                client: client, configuration: .init(leaseDuration: .milliseconds(300)), logger: TestDatabase.logger)
            let id = try await shortLease.enqueue(NewJob(kind: .noop)).id
            // A worker claims and dies: no heartbeat, no completion.
            _ = try #require(try await shortLease.claim(kinds: [.noop], limit: 1, owner: "dead").first)
            let log = RunLog()
            // The survivor's own claims last longer: on a busy machine a 300 ms lease could
            // run out under it too, and the job would (rightly) run a third time.
            let survivorQueue = JobQueue(
                client: client, configuration: .init(leaseDuration: .seconds(5)), logger: TestDatabase.logger)
            let survivor = Self.processor(
                survivorQueue, db, id: "survivor", poll: .milliseconds(50), heartbeat: .milliseconds(100)
            ) { job, _ in log.record(job.id) }
            let maintenance = QueueMaintenance(
                queue: shortLease, configuration: .init(rescueInterval: .milliseconds(100)), logger: TestDatabase.logger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await survivor.run() }
                group.addTask { try await maintenance.run() }
                try await eventually("rescued job re-run and succeeded", timeout: .seconds(10)) {
                    try await shortLease.job(id: id)?.state == .succeeded
                }
                group.cancelAll()
            }
            let record = try #require(try await shortLease.job(id: id))
            #expect(record.attempt == 2)
            #expect(record.leaseOwner == "survivor")
            #expect(log.snapshot[id] == 1)
        }
    }
}
