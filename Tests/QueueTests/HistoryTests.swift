import Foundation
import PostgresNIO
import Queue
import Testing

/// History must not make the live fleet slower: a scrape reads only live rows, and the
/// janitor's retention prunes what is old while keeping what it cost.
@Suite("Cheap gauges and bounded history")
struct HistoryTests {
    static func run(_ client: PostgresClient, _ query: PostgresQuery) async throws {
        try await client.query(query, logger: TestDatabase.logger)
    }

    static func scalar<T: PostgresDecodable & Sendable>(
        _ client: PostgresClient, _ query: PostgresQuery, as: T.Type = T.self
    ) async throws -> T {
        try await ClusterLifecycleTests.scalar(client, query, as: T.self)
    }

    /// Sequential scans of jobs and clusters so far, as the statistics say once this
    /// session's own counts are flushed.
    static func sequentialScans(_ client: PostgresClient) async throws -> String {
        try await Self.scalar(
            client,
            """
            SELECT string_agg(relname || ' ' || seq_scan, ', ' ORDER BY relname) FROM pg_stat_user_tables
            WHERE relname IN ('jobs', 'clusters')
            """, as: String.self)
    }

    @Test("a /metrics snapshot scans no history: 30,000 finished jobs and 3,000 destroyed clusters are never read")
    func scrapeReadsNoHistory() async throws {
        let db = try await TestDatabase.migrated()
        // One connection: the statistics this session sends are the ones it then reads.
        try await db.withClient(maximumConnections: 1) { client in
            try await Self.run(
                client,
                """
                INSERT INTO jobs (kind, state, finished_at, attempt)
                SELECT 'noop', 'succeeded', now() - interval '1 day', 1 FROM generate_series(1, 30000)
                """)
            try await Self.run(
                client,
                """
                INSERT INTO clusters (id, owner, state, masters, agents, public_agents, instance_type, request,
                                      lifetime, ready_at, destroyed_at, created_at)
                SELECT 'c-' || lpad(to_hex(g), 10, '0'), 'history', 'destroyed', 1, 0, 0, 'm5.large', '{}',
                       interval '1 hour', now() - interval '3 days', now() - interval '2 days',
                       now() - interval '3 days'
                FROM generate_series(1, 3000) g
                """)
            try await Self.run(client, "ANALYZE jobs")
            try await Self.run(client, "ANALYZE clusters")
            try await Self.run(client, "SELECT pg_stat_force_next_flush()")
            try await Self.run(client, "SELECT pg_stat_clear_snapshot()")
            let before = try await Self.sequentialScans(client)
            let metrics = try await Self.scalar(client, "SELECT count(*)::int FROM metrics_snapshot()", as: Int.self)
            #expect(metrics > 0)
            try await Self.run(client, "SELECT pg_stat_force_next_flush()")
            try await Self.run(client, "SELECT pg_stat_clear_snapshot()")
            let after = try await Self.sequentialScans(client)
            #expect(before == after, "a scrape scanned a whole table: before \(before), after \(after)")
        }
    }

    @Test("retention prunes destroyed clusters past it with their jobs, events and nodes, and keeps their cost")
    func retention() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            let store = ClusterStore(client: client, logger: TestDatabase.logger)
            // Destroyed 40 days ago after a day ready with one node; destroyed 10 days ago; running.
            for (id, destroyedDaysAgo) in [("c-00000000a0", 40), ("c-00000000b0", 10), ("c-00000000c0", -1)] {
                let destroyed = destroyedDaysAgo >= 0
                try await Self.run(
                    client,
                    """
                    INSERT INTO clusters (id, owner, state, masters, agents, public_agents, instance_type, request,
                                          lifetime, ready_at, destroyed_at, created_at)
                    VALUES (\(id), 'team-a', \(destroyed ? "destroyed" : "ready"), 1, 0, 0, 'm5.large', '{}',
                            interval '1 hour', now() - \(Double(destroyedDaysAgo + 1)) * interval '1 day',
                            CASE WHEN \(destroyed) THEN now() - \(Double(destroyedDaysAgo)) * interval '1 day' END,
                            now() - \(Double(destroyedDaysAgo + 1)) * interval '1 day')
                    """)
                try await Self.run(
                    client,
                    """
                    INSERT INTO nodes (cluster_id, instance_id, role, private_ip, instance_type)
                    VALUES (\(id), 'i-' || \(id), 'master', '10.0.0.1', 'm5.large')
                    """)
                try await Self.run(
                    client,
                    """
                    INSERT INTO jobs (kind, cluster_id, state, finished_at, attempt)
                    VALUES ('provision', \(id), 'succeeded', now() - interval '40 days', 1)
                    """)
                try await Self.run(
                    client, "INSERT INTO cluster_events (cluster_id, kind) VALUES (\(id), 'requested')")
            }
            let yearBefore = try await Self.scalar(
                client, "SELECT sum(instance_hours)::float8 FROM cost_report(interval '365 days')", as: Double.self)
            let pruned = try await store.pruneHistory(olderThan: .seconds(30 * 86400), batch: 500)
            #expect(pruned.clusters == 1 && pruned.jobs == 1)
            #expect(
                try await Self.scalar(client, "SELECT string_agg(id, ' ' ORDER BY id) FROM clusters", as: String.self)
                    == "c-00000000b0 c-00000000c0")
            #expect(
                try await Self.scalar(
                    client,
                    """
                    SELECT concat_ws(' ', (SELECT count(*) FROM jobs), (SELECT count(*) FROM cluster_events),
                                     (SELECT count(*) FROM nodes))
                    """, as: String.self) == "2 2 2")
            // The pruned cluster's day of one node still counts in a year, not in 30 days.
            let yearAfter = try await Self.scalar(
                client, "SELECT sum(instance_hours)::float8 FROM cost_report(interval '365 days')", as: Double.self)
            #expect(abs(yearAfter - yearBefore) < 0.01, "a year's cost \(yearBefore) h before, \(yearAfter) h after")
            let kept = try await Self.scalar(
                client,
                "SELECT concat_ws(' ', owner, instance_type, clusters, nodes, round(instance_hours)) FROM cost_history",
                as: String.self)
            #expect(kept == "team-a m5.large 1 1 24")
            let month = try await Self.scalar(
                client, "SELECT sum(instance_hours)::float8 FROM cost_report(interval '30 days')", as: Double.self)
            #expect(month < yearAfter - 23, "30 days: \(month) h, a year: \(yearAfter) h")
            // Less than a day is refused; nothing more is due.
            await #expect(throws: (any Error).self) {
                try await store.pruneHistory(olderThan: .seconds(3600), batch: 10)
            }
            let again = try await store.pruneHistory(olderThan: .seconds(30 * 86400), batch: 500)
            #expect(again.clusters == 0 && again.jobs == 0)
        }
    }
}
