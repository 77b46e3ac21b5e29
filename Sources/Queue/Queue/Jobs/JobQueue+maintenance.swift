import Foundation
import PostgresNIO

extension JobQueue {
    /// What a rescue pass did.
    public struct RescueReport: Sendable, Hashable {
        /// Jobs whose lease expired and that were queued again.
        public var requeued: [Int64] = []
        /// Jobs whose lease expired on their last attempt, now `failed`.
        public var failed: [Int64] = []
        /// Jobs whose lease expired after a cancel request, now `cancelled`.
        public var cancelled: [Int64] = []
    }

    /// Returns jobs whose lease expired to the queue (the attempt they used stays counted),
    /// or ends them when they were out of attempts or asked to cancel. Safe to run from
    /// every worker at once: rows another rescuer holds are skipped.
    @discardableResult
    public func rescueExpiredLeases(limit: Int = 1000) async throws -> RescueReport {
        try await self.mapErrors {
            let rows = try await self.client.query(
                """
                WITH expired AS (
                    SELECT id FROM jobs
                    WHERE state = 'running' AND lease_expires_at < now()
                    ORDER BY lease_expires_at
                    LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE jobs SET
                    state = CASE WHEN jobs.cancel_requested THEN 'cancelled'
                                 WHEN jobs.attempt >= jobs.max_attempts THEN 'failed'
                                 ELSE 'queued' END,
                    finished_at = CASE WHEN jobs.cancel_requested OR jobs.attempt >= jobs.max_attempts
                                       THEN now() END,
                    run_after = now(),
                    last_error = format('lease expired at %s: worker %s stopped heartbeating',
                                        jobs.lease_expires_at, coalesce(jobs.lease_owner, '?')),
                    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
                FROM expired
                WHERE jobs.id = expired.id
                RETURNING jobs.id, jobs.state
                """, logger: self.logger)
            var report = RescueReport()
            for try await (id, state) in rows.decode((Int64, String).self) {
                switch state {
                case "queued": report.requeued.append(id)
                case "cancelled": report.cancelled.append(id)
                default: report.failed.append(id)
                }
            }
            return report
        }
    }

    /// Deletes finished jobs older than `retention`, in batches so no statement holds
    /// many locks. Returns how many it deleted.
    @discardableResult
    public func pruneFinished(olderThan retention: Duration, batchSize: Int = 5000) async throws -> Int {
        var total = 0
        while true {
            let deleted: Int = try await self.mapErrors {
                let rows = try await self.client.query(
                    """
                    DELETE FROM jobs WHERE id IN (
                        SELECT id FROM jobs
                        WHERE state IN ('succeeded', 'failed', 'cancelled')
                          AND finished_at < now() - make_interval(secs => \(retention.seconds))
                        LIMIT \(batchSize)
                    )
                    RETURNING id
                    """, logger: self.logger)
                return try await rows.decode(Int64.self).collect().count
            }
            total += deleted
            if deleted < batchSize { return total }
        }
    }

    /// Queue depth and the oldest runnable job, for operators.
    public struct Stats: Sendable, Hashable {
        public var countByState: [JobState: Int] = [:]
        /// How long the oldest runnable job has been waiting, if any is.
        public var oldestRunnableAge: Duration?
    }

    public func stats() async throws -> Stats {
        try await self.mapErrors {
            var stats = Stats()
            let rows = try await self.client.query(
                "SELECT state, count(*)::int FROM jobs GROUP BY state", logger: self.logger)
            for try await (state, count) in rows.decode((String, Int).self) {
                if let state = JobState(rawValue: state) { stats.countByState[state] = count }
            }
            let oldest = try await self.client.query(
                """
                SELECT extract(epoch FROM now() - min(run_after))::float8 FROM jobs
                WHERE state = 'queued' AND run_after <= now()
                """, logger: self.logger)
            for try await age in oldest.decode(Double?.self) {
                stats.oldestRunnableAge = age.map { .milliseconds(Int64($0 * 1000)) }
            }
            return stats
        }
    }
}

extension JobQueue {
    /// A running or failed job, as `client jobs` lists it.
    public struct JobSummary: Sendable, Hashable {
        public var id: Int64
        public var kind: String
        public var clusterID: String?
        public var attempt: Int
        public var worker: String?
        /// Seconds since the last heartbeat (running jobs).
        public var heartbeatAge: Double?
        public var lastError: String?
    }
}
