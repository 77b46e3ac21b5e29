import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing
import Timing

@Suite("Job queue", .timeLimit(.minutes(3)))
struct JobQueueTests {
    @Test("enqueue and claim: claims up to N, in priority order, each job once")
    func claimOrder() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let low = try await queue.enqueue(NewJob(kind: .noop, priority: 0)).id
            let high = try await queue.enqueue(NewJob(kind: .noop, priority: 10)).id
            let mid = try await queue.enqueue(NewJob(kind: .noop, priority: 5)).id
            let first = try await queue.claim(kinds: [.noop], limit: 2, owner: "a")
            #expect(Set(first.map(\.id)) == [high, mid])
            #expect(first.allSatisfy { $0.attempt == 1 })
            let second = try await queue.claim(kinds: [.noop], limit: 5, owner: "b")
            #expect(second.map(\.id) == [low])
            #expect(try await queue.claim(kinds: [.noop], limit: 5, owner: "c").isEmpty)
            // Another kind is not claimed by a noop consumer.
            _ = try await queue.enqueue(NewJob(kind: .teardown))
            #expect(try await queue.claim(kinds: [.noop], limit: 5, owner: "c").isEmpty)
        }
    }

    @Test("a consumer whose lease expired cannot complete, heartbeat, fail or hand back")
    func expiredLeaseIsFenced() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let id = try await queue.enqueue(NewJob(kind: .noop)).id
            let job = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "a").first)
            try await client.query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = \(id)")

            let attempts: [(String, @Sendable () async throws -> Void)] = [
                ("complete", { try await queue.complete(job) }),
                ("heartbeat", { _ = try await queue.heartbeat(job) }),
                ("fail", { try await queue.fail(job, error: "late") }),
                ("release", { try await queue.release(job) }),
            ]
            for (name, action) in attempts {
                let error = await #expect(throws: QueueError.self, "\(name) after expiry") { try await action() }
                #expect(error?.code == .leaseLost, "\(name)")
            }
            let record = try #require(try await queue.job(id: id))
            #expect(record.state == .running)
            #expect(record.attempt == 1)
            #expect(record.lastError == nil)
        }
    }

    @Test("a rescued job is re-run by another consumer; the old holder is fenced out")
    func rescueAndRerun() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let id = try await queue.enqueue(NewJob(kind: .noop, maxAttempts: 3)).id
            let stale = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "dead").first)
            #expect(try await queue.rescueExpiredLeases().requeued.isEmpty, "a live lease is left alone")

            try await client.query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = \(id)")
            let report = try await queue.rescueExpiredLeases()
            #expect(report.requeued == [id])
            let rescued = try #require(try await queue.job(id: id))
            #expect(rescued.state == .queued)
            #expect(rescued.attempt == 1, "the attempt the dead worker used stays counted")
            #expect(rescued.lastError?.contains("lease expired") == true)

            let fresh = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "alive").first)
            #expect(fresh.id == id)
            #expect(fresh.attempt == 2)
            #expect(fresh.leaseToken != stale.leaseToken)
            await #expect(throws: QueueError.self) { try await queue.complete(stale) }
            try await queue.complete(fresh)
            #expect(try await queue.job(id: id)?.state == .succeeded)
        }
    }

    @Test("a lease that expires on the last attempt ends the job failed")
    func rescueOnLastAttemptFails() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let id = try await queue.enqueue(NewJob(kind: .noop, maxAttempts: 1)).id
            _ = try await queue.claim(kinds: [.noop], limit: 1, owner: "dead")
            try await client.query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = \(id)")
            #expect(try await queue.rescueExpiredLeases().failed == [id])
            let record = try #require(try await queue.job(id: id))
            #expect(record.state == .failed)
            #expect(record.finishedAt != nil)
        }
    }

    @Test("cancel: a queued job at once, a running job at its next heartbeat")
    func cancel() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let queued = try await queue.enqueue(NewJob(kind: .noop, priority: 0)).id
            let running = try await queue.enqueue(NewJob(kind: .noop, priority: 9)).id
            let job = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "a").first)
            #expect(job.id == running)

            #expect(try await queue.cancel(id: queued) == .cancelled)
            #expect(
                try await queue.claim(kinds: [.noop], limit: 1, owner: "a").isEmpty, "a cancelled job is never claimed")

            #expect(try await queue.cancel(id: running) == .running)
            #expect(try await queue.heartbeat(job).cancelRequested)
            try await queue.acknowledgeCancel(job)
            #expect(try await queue.job(id: running)?.state == .cancelled)
            #expect(try await queue.cancel(id: running) == .cancelled, "cancelling a finished job changes nothing")

            let error = await #expect(throws: QueueError.self) { try await queue.cancel(id: 987_654) }
            #expect(error?.code == .notFound)
        }
    }

    @Test("failures back off exponentially with jitter, then end failed with the last error kept")
    func backoffSchedule() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let policy = RetryPolicy(base: .seconds(10), maximum: .seconds(25), jitter: 0.5)
            let queue = JobQueue(client: client, configuration: .init(retry: policy), logger: TestDatabase.logger)
            let id = try await queue.enqueue(NewJob(kind: .noop, maxAttempts: 3)).id
            // Ceilings 10 s, 20 s, then capped at 25 s; with jitter 0.5 each delay lies in [ceiling/2, ceiling].
            for (attempt, ceiling) in [(1, 10.0), (2, 20.0)] {
                let job = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "a").first)
                #expect(job.attempt == attempt)
                #expect(try await queue.fail(job, error: "boom \(attempt)") == .queued)
                let wait = try await client.scalar(
                    "SELECT extract(epoch FROM run_after - now())::float8 FROM jobs WHERE id = \(id)", as: Double.self)
                #expect(wait >= ceiling / 2 - 1 && wait <= ceiling + 0.5, "attempt \(attempt) waits \(wait) s")
                #expect(
                    try await queue.claim(kinds: [.noop], limit: 1, owner: "a").isEmpty,
                    "not runnable before its backoff")
                try await client.query("UPDATE jobs SET run_after = now() WHERE id = \(id)")
            }
            let last = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "a").first)
            #expect(last.attempt == 3)
            #expect(try await queue.fail(last, error: "boom 3") == .failed)
            let record = try #require(try await queue.job(id: id))
            #expect(record.state == .failed)
            #expect(record.lastError == "boom 3")
        }
    }

    @Test("a permanent failure ends the job at once, attempts left or not")
    func permanentFailure() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let id = try await queue.enqueue(NewJob(kind: .noop, maxAttempts: 5)).id
            let job = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "a").first)
            #expect(try await queue.fail(job, error: "bad payload", retryable: false) == .failed)
            #expect(try await queue.job(id: id)?.attempt == 1)
        }
    }

    @Test("an idempotency key returns the existing job, also under concurrent enqueues")
    func idempotencyKey() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let first = try await queue.enqueue(NewJob(kind: .noop, idempotencyKey: "req-1"))
            let again = try await queue.enqueue(
                NewJob(kind: .noop, payload: #"{"other": true}"#, idempotencyKey: "req-1"))
            #expect(first.created)
            #expect(!again.created)
            #expect(again.id == first.id)

            let results = try await withThrowingTaskGroup(of: JobQueue.Enqueued.self) { group in
                for _ in 0..<10 {
                    group.addTask { try await queue.enqueue(NewJob(kind: .noop, idempotencyKey: "req-2")) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(results.map(\.id)).count == 1)
            #expect(results.filter(\.created).count == 1)
            #expect(try await client.scalar("SELECT count(*)::int FROM jobs", as: Int.self) == 2)
        }
    }

    @Test("bad input is refused with a clear error and nothing is written")
    func badInput() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let cases: [(NewJob, QueueError.Code, String)] = [
                (NewJob(kind: "no_such_kind"), .unknownKind, "job_kinds"),
                (NewJob(kind: "Bad Kind!"), .invalidInput, "malformed"),
                (NewJob(kind: .noop, priority: -1), .invalidInput, "priority"),
                (NewJob(kind: .noop, payload: "[1, 2]"), .invalidInput, "JSON object"),
                (NewJob(kind: .noop, payload: #""text""#), .invalidInput, "JSON object"),
                (NewJob(kind: .noop, payload: "{not json"), .invalidInput, "JSON object"),
                (NewJob(kind: .noop, maxAttempts: 0), .invalidInput, "max attempts"),
                (NewJob(kind: .noop, idempotencyKey: ""), .invalidInput, "idempotency key"),
            ]
            for (job, code, words) in cases {
                let error = await #expect(throws: QueueError.self) { try await queue.enqueue(job) }
                #expect(error?.code == code, "\(job.kind) \(job.payload)")
                #expect(error?.message.contains(words) == true, "\(error?.message ?? "")")
            }
            let batchError = await #expect(throws: QueueError.self) {
                try await queue.enqueue(batch: [NewJob(kind: .noop), NewJob(kind: .noop, payload: "[]")])
            }
            #expect(batchError?.code == .invalidInput)
            #expect(try await client.scalar("SELECT count(*)::int FROM jobs", as: Int.self) == 0)
        }
    }

    @Test("retention prunes old finished jobs only")
    func retention() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            let ids = try await queue.enqueue(batch: Array(repeating: NewJob(kind: .noop), count: 4))
            let claimed = try await queue.claim(kinds: [.noop], limit: 3, owner: "a")
            #expect(try await queue.complete(batch: claimed).isEmpty)
            // Two finished long ago, one finished now, one still queued.
            try await client.query(
                """
                UPDATE jobs SET finished_at = now() - interval '8 days'
                WHERE id = ANY(\(Array(claimed.map(\.id).prefix(2)))::bigint[])
                """)
            #expect(try await queue.pruneFinished(olderThan: .seconds(7 * 86400), batchSize: 1) == 2)
            let left = try await client.query("SELECT id FROM jobs ORDER BY id").decode(Int64.self).reduce(into: []) {
                $0.append($1)
            }
            #expect(Set(left) == Set(ids).subtracting(claimed.prefix(2).map(\.id)))
        }
    }

    @Test("batch completion reports the jobs whose lease was lost and leaves them alone")
    func batchCompletionFencing() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            _ = try await queue.enqueue(batch: Array(repeating: NewJob(kind: .noop), count: 3))
            let jobs = try await queue.claim(kinds: [.noop], limit: 3, owner: "a")
            let lost = jobs[1]
            try await client.query(
                "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = \(lost.id)")
            #expect(try await queue.complete(batch: jobs) == [lost.id])
            #expect(try await queue.job(id: lost.id)?.state == .running)
            #expect(try await queue.job(id: jobs[0].id)?.state == .succeeded)
        }
    }

    @Test("heartbeats are HOT updates: they add no index entry (migration 0008)")
    func heartbeatsAreHOT() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client async throws in
            let queue = JobQueue(client: client, logger: TestDatabase.logger)
            _ = try await queue.enqueue(NewJob(kind: .noop))
            let job = try #require(try await queue.claim(kinds: [.noop], limit: 1, owner: "a").first)
            for _ in 0..<5 { _ = try await queue.heartbeat(job) }
            // Backends report their table statistics when idle, within about 10 s.
            try await eventually("five HOT updates counted", timeout: .seconds(60)) {
                try await client.scalar(
                    "SELECT n_tup_hot_upd::int FROM pg_stat_user_tables WHERE relname = 'jobs'", as: Int.self) >= 5
            }
            let updates = try await client.scalar(
                "SELECT n_tup_upd::int FROM pg_stat_user_tables WHERE relname = 'jobs'", as: Int.self)
            print("measured: \(updates) updates of jobs, the claim and 5 heartbeats")
        }
    }
}

@Suite("Retry policy", .timeLimit(.minutes(3)))
struct RetryPolicyTests {
    @Test("ceilings double from the base and stop at the maximum")
    func ceilings() {
        let policy = RetryPolicy(base: .seconds(5), maximum: .seconds(60), jitter: 1)
        #expect(
            (1...6).map { policy.ceiling(afterAttempt: $0) } == [
                .seconds(5), .seconds(10), .seconds(20), .seconds(40), .seconds(60), .seconds(60),
            ])
        #expect(policy.ceiling(afterAttempt: 500) == .seconds(60))
    }

    @Test("jitter spreads each delay between (1 - jitter)·ceiling and the ceiling")
    func jitterBounds() {
        let policy = RetryPolicy(base: .seconds(8), maximum: .seconds(600), jitter: 0.25)
        #expect(policy.delay(afterAttempt: 2, random: 0) == .seconds(16))
        #expect(policy.delay(afterAttempt: 2, random: 1) == .seconds(12))
        let full = RetryPolicy(base: .seconds(8), maximum: .seconds(600), jitter: 1)
        #expect(full.delay(afterAttempt: 1, random: 1) == .zero)
        let spread = Set((0..<200).map { _ in full.delay(afterAttempt: 3) })
        #expect(spread.count > 50, "random delays differ")
        #expect(spread.allSatisfy { $0 >= .zero && $0 <= .seconds(32) })
    }
}
