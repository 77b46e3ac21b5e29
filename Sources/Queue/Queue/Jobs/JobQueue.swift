import Foundation
import Logging
import PostgresNIO
import Timing

/// The PostgreSQL job queue: enqueue, claim, heartbeat, complete, fail, cancel, hand back.
///
/// Every change to a running job is fenced on the claim's `leaseToken` and on the lease
/// being unexpired (`WHERE id = $1 AND lease_token = $2 AND state = 'running' AND
/// lease_expires_at > now()`): a caller whose lease expired, was rescued or was handed to
/// another worker changes nothing and gets ``QueueError/Code/leaseLost``. A lease that
/// expired is never renewed, even before the rescuer gets to it.
public struct JobQueue: Sendable {
    /// Lease and retry settings.
    public struct Configuration: Sendable {
        /// How long a claim holds without a heartbeat. A dead worker's job is rescued
        /// about this long after its last heartbeat.
        public var leaseDuration: Duration = .seconds(45)
        /// The backoff between failed attempts.
        public var retry: RetryPolicy = RetryPolicy()
        /// Claim statements the processors sharing this queue run at once (see ``ClaimGate``).
        /// On the 2-core benchmark machine, drain with 4, 8 and 16 processors in one process:
        /// 1 at a time capped it (7,900 jobs/s), no limit let 16 claimers slow each other
        /// (−16 % from 4 to 16), 3 gave the most with −7 % (BENCHMARKS.md, section 1).
        public var concurrentClaims: Int = 3

        public init(
            leaseDuration: Duration = .seconds(45), retry: RetryPolicy = RetryPolicy(), concurrentClaims: Int = 3
        ) {
            self.leaseDuration = leaseDuration
            self.retry = retry
            self.concurrentClaims = max(1, concurrentClaims)
        }
    }

    /// The channel `jobs_notify()` sends on; the payload is the job's kind.
    public static let notificationChannel = "flotilla_jobs"

    public let client: PostgresClient
    /// Where claims and heartbeats go: `client`, or a client whose connections run with
    /// `synchronous_commit = off` (see ``DatabaseSettings/leaseClientConfiguration(maximumConnections:)``).
    /// Losing such a commit in a crash costs only a re-claim: the job is queued again (or its
    /// lease runs out sooner), and every later change is fenced on the lease token the lost
    /// commit never made durable. Completions, failures and hand-backs stay durable on `client`.
    public let leaseClient: PostgresClient
    public let configuration: Configuration
    public let logger: Logger
    /// Group commit for the completions of every processor that shares this queue.
    let completions: CompletionBatcher
    /// One claim statement at a time for the processors that share this queue.
    let claims: ClaimGate

    public init(
        client: PostgresClient, leaseClient: PostgresClient? = nil,
        configuration: Configuration = Configuration(), logger: Logger
    ) {
        self.client = client
        self.leaseClient = leaseClient ?? client
        self.configuration = configuration
        self.logger = logger
        self.completions = CompletionBatcher()
        self.claims = ClaimGate(width: configuration.concurrentClaims)
    }

    // MARK: Enqueue

    /// The job an enqueue produced, and whether this call created it (`false` when the
    /// idempotency key was already taken and the existing job is returned).
    public struct Enqueued: Sendable, Hashable {
        public var id: Int64
        public var created: Bool
    }

    /// Enqueues one job. Bad input is refused before anything is written.
    ///
    /// Trigger `jobs_notify_insert` sends `NOTIFY flotilla_jobs` (the kind) in the same
    /// transaction when the job is runnable now (schema/current.sql).
    @discardableResult
    public func enqueue(_ job: NewJob) async throws -> Enqueued {
        try job.validate()
        let inserted: Int64? = try await self.mapErrors {
            // Prepared: an enqueue is the first part of every job's pickup latency, and
            // parsing and planning the INSERT cost about as much as running it.
            let rows = try await self.client.execute(EnqueueStatement(job: job), logger: self.logger)
            return try await rows.collect().first
        }
        if let inserted { return Enqueued(id: inserted, created: true) }
        // The key was taken. A second statement sees the row even when the competing
        // insert committed after this statement's snapshot was taken.
        guard let key = job.idempotencyKey else {
            throw QueueError(.database, "enqueue returned no row")
        }
        let rows = try await self.client.query(
            "SELECT id FROM jobs WHERE idempotency_key = \(key)", logger: self.logger)
        guard let existing = try await rows.decode(Int64.self).first(where: { _ in true }) else {
            throw QueueError(.database, "the job holding this idempotency key vanished while enqueueing; try again")
        }
        return Enqueued(id: existing, created: false)
    }

    /// Enqueues many jobs in one statement (no idempotency keys). Returns their ids in order.
    @discardableResult
    public func enqueue(batch jobs: [NewJob]) async throws -> [Int64] {
        guard !jobs.isEmpty else { return [] }
        for job in jobs {
            try job.validate()
            guard job.idempotencyKey == nil else {
                throw QueueError(
                    .invalidInput, "batch enqueue does not take idempotency keys; enqueue such jobs one at a time")
            }
        }
        let kinds = jobs.map(\.kind.rawValue)
        let payloads = jobs.map(\.payload)
        let priorities = jobs.map(\.priority)
        let attempts = jobs.map(\.maxAttempts)
        return try await self.mapErrors {
            let rows = try await self.client.query(
                """
                INSERT INTO jobs (kind, payload, priority, max_attempts)
                SELECT k, p::jsonb, pr, ma
                FROM unnest(\(kinds)::text[], \(payloads)::text[], \(priorities)::int[], \(attempts)::int[])
                     WITH ORDINALITY AS n(k, p, pr, ma, ord)
                ORDER BY ord
                RETURNING id
                """, logger: self.logger)
            return try await rows.decode(Int64.self).collect()
        }
    }

    // MARK: Claim

    /// Claims up to `limit` runnable jobs of the given kinds for `owner`, in priority order.
    ///
    /// One statement: the inner `SELECT … FOR UPDATE SKIP LOCKED` walks `jobs_claim_idx`
    /// (runnable rows only, in claim order) and skips rows another claimer holds, so
    /// concurrent claimers never wait on each other or get the same row; the outer
    /// `UPDATE` starts the lease with a fresh token and counts the attempt.
    public func claim(kinds: [JobKind], limit: Int, owner: String) async throws -> [ClaimedJob] {
        guard limit > 0 else { return [] }
        let kindNames = kinds.map(\.rawValue)
        let lease = self.configuration.leaseDuration.seconds
        return try await self.mapErrors {
            // A prepared statement: each pooled connection parses and plans it once, not on
            // every claim (planning cost more than executing it).
            let rows = try await self.leaseClient.execute(
                ClaimStatement(kinds: kindNames, limit: limit, owner: owner, leaseSeconds: lease),
                logger: self.logger)
            var claimed: [ClaimedJob] = []
            for try await (id, kind, payload, attempt, maxAttempts, token, expires, created, waited) in rows {
                claimed.append(
                    ClaimedJob(
                        id: id, kind: JobKind(kind), payload: payload, attempt: attempt,
                        maxAttempts: maxAttempts, leaseToken: token,
                        leaseExpiresAt: expires, createdAt: created, waitedSeconds: waited))
            }
            return claimed
        }
    }

    // MARK: Fenced state changes

    /// What a heartbeat learned.
    public struct Heartbeat: Sendable, Hashable {
        public var leaseExpiresAt: Date
        /// Someone asked to cancel the job: stop and call ``acknowledgeCancel(_:)``.
        public var cancelRequested: Bool
    }

    /// Renews the lease. Throws ``QueueError/Code/leaseLost`` when the caller no longer holds it.
    public func heartbeat(_ job: ClaimedJob) async throws -> Heartbeat {
        let lease = self.configuration.leaseDuration.seconds
        return try await self.fenced(job, "heartbeat") {
            let rows = try await self.leaseClient.query(
                """
                UPDATE jobs SET lease_expires_at = now() + make_interval(secs => \(lease)),
                                heartbeat_at = now(), updated_at = now()
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                  AND lease_expires_at > now()
                RETURNING lease_expires_at, cancel_requested
                """, logger: self.logger)
            return try await rows.decode((Date, Bool).self).first { _ in true }
                .map { Heartbeat(leaseExpiresAt: $0.0, cancelRequested: $0.1) }
        }
    }

    /// Marks the job succeeded.
    public func complete(_ job: ClaimedJob) async throws {
        try await self.fenced(job, "complete") {
            let rows = try await self.client.query(
                """
                UPDATE jobs SET state = 'succeeded', finished_at = now(), updated_at = now(),
                                lease_token = NULL, lease_expires_at = NULL, last_error = NULL
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                  AND lease_expires_at > now()
                RETURNING id
                """, logger: self.logger)
            return try await rows.decode(Int64.self).first { _ in true }
        }
    }

    /// Marks many jobs succeeded in one statement. Returns the ids whose lease was lost
    /// (those rows were left as they were).
    public func complete(batch jobs: [ClaimedJob]) async throws -> [Int64] {
        guard !jobs.isEmpty else { return [] }
        let ids = jobs.map(\.id)
        let tokens = jobs.map(\.leaseToken)
        let completed: Set<Int64> = try await self.mapErrors {
            let rows = try await self.client.execute(
                CompleteBatchStatement(ids: ids, tokens: tokens), logger: self.logger)
            return Set(try await rows.collect())
        }
        return ids.filter { !completed.contains($0) }
    }

    /// Records a failed attempt. With attempts left and `retryable`, the job is queued
    /// again after the retry policy's backoff; otherwise it ends `failed` (or `cancelled`
    /// when a cancel was requested meanwhile: a cancelled job never runs again). Either way
    /// `error` is kept as the job's last error. Returns the state the job is now in.
    ///
    /// Behind it, trigger `jobs_cluster_outcome`: a provision job that ends `failed` or
    /// `cancelled` fails its cluster (if still requested or provisioning), records the event and
    /// queues the teardown; a teardown job that ends `failed` moves its cluster to
    /// `teardown_failed`. A retry fires `jobs_notify_requeue` (schema/current.sql).
    @discardableResult
    public func fail(_ job: ClaimedJob, error message: String, retryable: Bool = true) async throws -> JobState {
        let delay = self.configuration.retry.delay(afterAttempt: job.attempt).seconds
        let retry = retryable && job.attempt < job.maxAttempts
        let text = String(message.prefix(4000))
        let state: String = try await self.fenced(job, "fail") {
            let rows = try await self.client.query(
                """
                UPDATE jobs SET
                    state = CASE WHEN cancel_requested THEN 'cancelled' WHEN \(retry) THEN 'queued' ELSE 'failed' END,
                    run_after = CASE WHEN \(retry) AND NOT cancel_requested THEN now() + make_interval(secs => \(delay))
                                ELSE run_after END,
                    finished_at = CASE WHEN \(retry) AND NOT cancel_requested THEN NULL ELSE now() END,
                    last_error = \(text),
                    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                  AND lease_expires_at > now()
                RETURNING state
                """, logger: self.logger)
            return try await rows.decode(String.self).first { _ in true }
        }
        return JobState(rawValue: state) ?? .failed
    }

    /// Ends a running job whose cancellation the worker has seen. Trigger
    /// `jobs_cluster_outcome` acts on the job's cluster, as for ``fail(_:error:retryable:)``.
    public func acknowledgeCancel(_ job: ClaimedJob) async throws {
        try await self.fenced(job, "acknowledge cancel") {
            let rows = try await self.client.query(
                """
                UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),
                                lease_token = NULL, lease_expires_at = NULL
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                  AND lease_expires_at > now()
                RETURNING id
                """, logger: self.logger)
            return try await rows.decode(Int64.self).first { _ in true }
        }
    }

    /// Hands a job back without burning its attempt: a worker shutting down gives the
    /// jobs it could not finish to the next worker, runnable at once (trigger
    /// `jobs_notify_requeue` wakes the workers).
    public func release(_ job: ClaimedJob) async throws {
        try await self.fenced(job, "release") {
            let rows = try await self.client.query(
                """
                UPDATE jobs SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
                                finished_at = CASE WHEN cancel_requested THEN now() END,
                                attempt = attempt - 1, run_after = now(),
                                lease_token = NULL, lease_expires_at = NULL, updated_at = now()
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                  AND lease_expires_at > now()
                RETURNING id
                """, logger: self.logger)
            return try await rows.decode(Int64.self).first { _ in true }
        }
    }

    /// Puts a job back for later without spending its attempt: "not now" (another job
    /// still holds what this one needs), which is neither a success nor a failure.
    public func snooze(_ job: ClaimedJob, for delay: Duration) async throws {
        try await self.fenced(job, "snooze") {
            let rows = try await self.client.query(
                """
                UPDATE jobs SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
                                finished_at = CASE WHEN cancel_requested THEN now() END,
                                attempt = attempt - 1, run_after = now() + make_interval(secs => \(delay.seconds)),
                                lease_token = NULL, lease_expires_at = NULL, updated_at = now()
                WHERE id = \(job.id) AND lease_token = \(job.leaseToken) AND state = 'running'
                  AND lease_expires_at > now()
                RETURNING id
                """, logger: self.logger)
            return try await rows.decode(Int64.self).first { _ in true }
        }
    }

    // MARK: Cancel and inspect

    /// Cancels a job: a queued job at once; a running job is flagged and its worker
    /// learns of it at its next heartbeat. Returns the job's state after the call. A queued
    /// provision job cancelled here fires `jobs_cluster_outcome` at once (its cluster fails and
    /// its teardown is queued).
    /// A finished job is left as it is.
    @discardableResult
    public func cancel(id: Int64) async throws -> JobState {
        // cancel_job (migration 0003) is the same door operators use from psql.
        let state: String? = try await self.mapErrors {
            let rows = try await self.client.query("SELECT cancel_job(\(id))", logger: self.logger)
            return try await rows.decode(String?.self).first { _ in true } ?? nil
        }
        if let state, let value = JobState(rawValue: state) { return value }
        guard let record = try await self.job(id: id) else {
            throw QueueError(.notFound, "no job with id \(id)")
        }
        return record.state
    }

    /// One job, as operators see it.
    public func job(id: Int64) async throws -> JobRecord? {
        try await self.mapErrors {
            let rows = try await self.client.query(
                """
                SELECT id, kind, payload::text, state, priority, attempt, max_attempts, run_after,
                       idempotency_key, lease_owner, lease_expires_at, heartbeat_at, cancel_requested,
                       last_error, created_at, finished_at
                FROM jobs WHERE id = \(id)
                """, logger: self.logger)
            for try await row in rows {
                let c = try row.decode(
                    (
                        Int64, String, String, String, Int, Int, Int, Date, String?, String?, Date?, Date?, Bool,
                        String?, Date, Date?
                    ).self)
                return JobRecord(
                    id: c.0, kind: JobKind(c.1), payload: c.2, state: JobState(rawValue: c.3) ?? .failed,
                    priority: c.4, attempt: c.5, maxAttempts: c.6, runAfter: c.7, idempotencyKey: c.8,
                    leaseOwner: c.9, leaseExpiresAt: c.10, heartbeatAt: c.11, cancelRequested: c.12,
                    lastError: c.13, createdAt: c.14, finishedAt: c.15)
            }
            return nil
        }
    }

    // MARK: Helpers

    /// Runs a fenced update: `nil` from `body` means no row matched the claim.
    @discardableResult
    func fenced<T: Sendable>(_ job: ClaimedJob, _ action: String, _ body: () async throws -> T?) async throws -> T {
        guard let value = try await self.mapErrors(body) else {
            throw QueueError(
                .leaseLost,
                "cannot \(action) job \(job.id): this worker no longer holds its lease (it expired or the job was "
                    + "handed to another worker); nothing was changed")
        }
        return value
    }

    /// Turns PostgreSQL's refusals into ``QueueError``s that say what is accepted.
    func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError {
            switch error.sqlState {
            case SQLState.foreignKeyViolation:
                throw QueueError(
                    .unknownKind,
                    "unknown job kind: the kinds this database accepts are the rows of job_kinds "
                        + "(noop, provision, teardown, …)",
                    underlying: error)
            case SQLState.checkViolation:
                throw QueueError(
                    .invalidInput, "the database refused the job: \(error.serverInfo?[.message] ?? "a check failed")",
                    underlying: error)
            case SQLState.invalidTransition, SQLState.clusterState:
                throw QueueError(.conflict, DatabaseErrorDescription.describe(error), underlying: error)
            case SQLState.leaseLost:
                throw QueueError(
                    .leaseLost, "\(error.serverInfo?[.message] ?? "the job's lease was lost"); nothing was changed",
                    underlying: error)
            case SQLState.noSuchCluster:
                throw QueueError(.notFound, error.serverInfo?[.message] ?? "no such cluster", underlying: error)
            case SQLState.invalidParameter, SQLState.policyRefused:
                // The API's refusals: the message says what is accepted or which limit applies.
                throw QueueError(.invalidInput, error.serverInfo?[.message] ?? "refused", underlying: error)
            case SQLState.insufficientPrivilege:
                throw QueueError(
                    .invalidInput,
                    "permission denied: \(error.serverInfo?[.message] ?? "this login may not do that") "
                        + "(logins of role flotilla_client use the client API functions only)",
                    underlying: error)
            case SQLState.invalidTextRepresentation:
                throw QueueError(
                    .invalidInput, "the database refused a value: \(error.serverInfo?[.message] ?? "invalid text")",
                    underlying: error)
            default:
                self.logger.error("query failed", metadata: ["error": "\(String(reflecting: error))"])
                throw QueueError(.database, DatabaseErrorDescription.describe(error), underlying: error)
            }
        }
    }
}

/// The claim: one statement. The inner `SELECT … FOR UPDATE SKIP LOCKED` walks
/// `jobs_claim_idx` (runnable rows only, in claim order) and skips rows another claimer
/// holds; the outer `UPDATE` starts the lease with a fresh token and counts the attempt.
/// The wait it reports runs from when the job became runnable: `run_after`, or `created_at`
/// for a provision job whose fair turn (migration 0016) put `run_after` before its creation.
struct ClaimStatement: PostgresPreparedStatement {
    static let name = "flotilla_claim_v3"
    static let sql = """
        WITH next AS (
            SELECT id FROM jobs
            WHERE state = 'queued' AND run_after <= now() AND kind = ANY($1::text[])
            ORDER BY priority DESC, run_after, id
            LIMIT $2::int8
            FOR UPDATE SKIP LOCKED
        )
        UPDATE jobs SET
            state = 'running',
            attempt = jobs.attempt + 1,
            lease_owner = $3::text,
            lease_token = gen_random_uuid(),
            lease_expires_at = now() + make_interval(secs => $4::float8),
            heartbeat_at = now(),
            started_at = now(),
            updated_at = now()
        FROM next
        WHERE jobs.id = next.id
        RETURNING jobs.id, jobs.kind, jobs.payload::text, jobs.attempt, jobs.max_attempts,
                  jobs.lease_token, jobs.lease_expires_at, jobs.created_at,
                  extract(epoch FROM now() - greatest(jobs.run_after, jobs.created_at))::float8
        """
    typealias Row = (Int64, String, String, Int, Int, UUID, Date, Date, Double)

    var kinds: [String]
    var limit: Int
    var owner: String
    var leaseSeconds: Double

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 4)
        bindings.append(self.kinds)
        bindings.append(Int64(self.limit))
        bindings.append(self.owner)
        bindings.append(self.leaseSeconds)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// One enqueue; an idempotency key already taken returns no row.
struct EnqueueStatement: PostgresPreparedStatement {
    static let name = "flotilla_enqueue_v1"
    static let sql = """
        INSERT INTO jobs (kind, payload, priority, max_attempts, run_after, idempotency_key)
        VALUES ($1::text, $2::text::jsonb, $3::int, $4::int, coalesce($5::timestamptz, now()), $6::text)
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
        """
    typealias Row = Int64

    var job: NewJob

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 6)
        bindings.append(self.job.kind.rawValue)
        bindings.append(self.job.payload)
        bindings.append(self.job.priority)
        bindings.append(self.job.maxAttempts)
        bindings.append(self.job.runAfter)
        bindings.append(self.job.idempotencyKey)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int64.self) }
}

/// Group completion, fenced per row on the claim's token, a running state and an
/// unexpired lease. Returns the ids it completed.
struct CompleteBatchStatement: PostgresPreparedStatement {
    static let name = "flotilla_complete_batch_v1"
    static let sql = """
        UPDATE jobs SET state = 'succeeded', finished_at = now(), updated_at = now(),
                        lease_token = NULL, lease_expires_at = NULL, last_error = NULL
        FROM unnest($1::int8[], $2::uuid[]) AS done(id, token)
        WHERE jobs.id = done.id AND jobs.lease_token = done.token AND jobs.state = 'running'
          AND jobs.lease_expires_at > now()
        RETURNING jobs.id
        """
    typealias Row = Int64

    var ids: [Int64]
    var tokens: [UUID]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(self.ids)
        bindings.append(self.tokens)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int64.self) }
}

extension AsyncSequence {
    /// All elements, in order.
    func collect() async throws -> [Element] {
        var all: [Element] = []
        for try await element in self { all.append(element) }
        return all
    }
}
