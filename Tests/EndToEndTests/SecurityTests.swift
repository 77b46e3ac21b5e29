import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing

/// The security boundary is PostgreSQL: logins of `flotilla_client` and `flotilla_operator`
/// try, with plain SQL through `psql`, what they must not be able to do. Each attempt is
/// refused with a message, and nothing changes (row counts are compared).
@Suite("The database refuses what a client or operator login may not do", .serialized, .timeLimit(.minutes(10)))
struct SecurityTests {
    static let otherAgent = "e2e_ci_agent_b"
    static let operatorLogin = "e2e_operator"

    struct PSQL: Sendable {
        var status: Int32
        var output: String
        var error: String
    }

    /// Runs `sql` through psql as `login` (ON_ERROR_STOP, no psqlrc).
    static func psql(_ fleet: Fleet, as login: String, _ sql: String) async throws -> PSQL {
        try await Self.psql(fleet, as: login, [sql])
    }

    /// Runs each command in turn in one psql session as `login`, as several `-c` do.
    static func psql(_ fleet: Fleet, as login: String, _ commands: [String]) async throws -> PSQL {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"] + commands.flatMap { ["-c", $0] }
        var environment = fleet.environment
        environment["PGUSER"] = login
        environment["PGCLIENTENCODING"] = "UTF8"
        process.environment = environment
        let run = try await process.runToCompletion()
        return PSQL(status: run.status, output: run.output, error: run.errors)
    }

    /// Rows in every table, as the owner sees them.
    static func counts(_ fleet: Fleet) async throws -> String {
        try await fleet.scalar(
            """
            SELECT concat_ws(' ', (SELECT count(*) FROM clusters), (SELECT count(*) FROM jobs),
                             (SELECT count(*) FROM cluster_secrets), (SELECT count(*) FROM cluster_tokens),
                             (SELECT count(*) FROM cluster_events), (SELECT count(*) FROM policy),
                             (SELECT count(*) FROM nodes),
                             (SELECT string_agg(state || expires_at::text, ',') FROM clusters))
            """, as: String.self)
    }

    static func makeLogins(_ fleet: Fleet) async throws {
        try await fleet.createLogin(Self.otherAgent, in: "flotilla_client")
        try await fleet.createLogin(Self.operatorLogin, in: "flotilla_operator")
    }

    /// A cluster of `login`'s, made through the client binary (no worker: it stays requested).
    static func request(_ fleet: Fleet, as login: String) async throws -> (id: String, token: String) {
        let run = try await fleet.run(
            ["client", "request", "--nodes", "1", "--no-wait", "--json"], environment: ["PGUSER": login])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try jsonObject(run.output)
        return (try #require(object["id"] as? String), try #require(object["lease_token"] as? String))
    }

    static let validRequest =
        #"{"masters":1,"agents":0,"publicAgents":0,"instanceType":"m4.large","adminLocation":"0.0.0.0/0","#
        + #""installerURL":"http://127.0.0.1/dcos_generate_config.sh","genconfFiles":[],"lifetimeSeconds":3600}"#

    @Test(
        "client login reads no table or other's key, forges no owner, passes no limit/quota; hostile strings are inert"
    )
    func clientLogin() async throws {
        try await Fleet.with { fleet in
            try await Self.makeLogins(fleet)
            let agent = Fleet.clientLogin
            let theirs = try await Self.request(fleet, as: Self.otherAgent)
            let mine = try await Self.request(fleet, as: agent)
            #expect(
                try await fleet.scalar("SELECT owner FROM clusters WHERE id = \(mine.id)", as: String.self) == agent,
                "the owner is the login")
            #expect(
                try await fleet.scalar(
                    "SELECT count(*)::int FROM cluster_tokens WHERE cluster_id = \(mine.id)", as: Int.self) == 1)
            #expect(
                try await fleet.scalar(
                    """
                    SELECT count(*)::int FROM cluster_tokens
                    WHERE token_hash = sha256(convert_to(\(mine.token), 'UTF8'))
                    """,
                    as: Int.self) == 1,
                "only the token's hash is kept")
            try await fleet.withClient { client in
                try await client.query(
                    "UPDATE cluster_secrets SET private_key = 'PRIVATE KEY OF B' WHERE cluster_id = \(theirs.id)",
                    logger: Fleet.logger)
            }
            let before = try await Self.counts(fleet)

            var attempts: [(String, String, String)] = [] // (what, sql, words the refusal must contain)
            for table in [
                "clusters", "cluster_secrets", "cluster_tokens", "jobs", "nodes", "cluster_logs", "cluster_events",
                "policy",
                "key_pair_deletions", "operator_clusters", "schema_migrations", "pools", "pool_demand", "owner_turns",
                "operator_pools",
            ] {
                attempts.append(("read \(table)", "SELECT * FROM \(table)", "permission denied"))
            }
            attempts += [
                ("write a cluster", "UPDATE clusters SET owner = 'x'", "permission denied"),
                ("forge the owner by role", "SET ROLE \(Self.otherAgent)", "permission denied"),
                ("forge the owner by session", "SET SESSION AUTHORIZATION \(Self.otherAgent)", "permission denied"),
                (
                    "another's key without a token", "SELECT flotilla_api.api_key('\(theirs.id)', NULL)",
                    "no cluster with id \(theirs.id)"
                ),
                (
                    "another's key with my token", "SELECT flotilla_api.api_key('\(theirs.id)', '\(mine.token)')",
                    "no cluster with id \(theirs.id)"
                ),
                (
                    "another's release with my token",
                    "SELECT flotilla_api.api_release('\(theirs.id)', '\(mine.token)')",
                    "no cluster with id \(theirs.id)"
                ),
                ("a worker function", "SELECT cluster_begin_teardown('\(theirs.id)', 'released')", "permission denied"),
                ("cancel a job", "SELECT cancel_job(1)", "permission denied"),
                (
                    "define a pool", "SELECT pool_set('mine', '\(Self.validRequest)', NULL, 0, 50, NULL, NULL)",
                    "permission denied"
                ),
                ("refill the pools", "SELECT * FROM pools_refill()", "permission denied"),
                (
                    "pass a health check", "SELECT pool_cluster_healthy('\(theirs.id)', interval '1 hour')",
                    "permission denied"
                ),
                (
                    "another's heartbeat with my token",
                    "SELECT flotilla_api.api_heartbeat('\(theirs.id)', '\(mine.token)', 60)",
                    "no cluster with id \(theirs.id)"
                ),
                (
                    "a bad pool mode",
                    "SELECT * FROM flotilla_api.api_request(NULL, NULL, '\(Self.validRequest)', 60, 'steal')",
                    "pool mode must be auto, wait or never"
                ),
                (
                    "quote and semicolon in a request id",
                    """
                    SELECT * FROM flotilla_api.api_request($$x'; DROP TABLE clusters; --$$ || repeat('y', 300), NULL, \
                    '\(Self.validRequest)', 60)
                    """,
                    "request id must be 1 to 200"
                ),
                (
                    "a hostile instance type",
                    """
                    SELECT * FROM flotilla_api.api_request(NULL, NULL, \
                    jsonb_set('\(Self.validRequest)', '{instanceType}', \
                    to_jsonb($$m4.large'; DROP TABLE jobs; --$$::text)), 60)
                    """,
                    "is not an EC2 instance type"
                ),
                (
                    "a hostile admin location",
                    """
                    SELECT * FROM flotilla_api.api_request(NULL, NULL, \
                    jsonb_set('\(Self.validRequest)', '{adminLocation}', '"0.0.0.0/0; DROP"'), 60)
                    """,
                    "not an IPv4 CIDR"
                ),
                (
                    "a very long label",
                    "SELECT * FROM flotilla_api.api_request(NULL, repeat('é', 5000), '\(Self.validRequest)', 60)",
                    "label must be at most 200"
                ),
                (
                    "a control character",
                    "SELECT * FROM flotilla_api.api_request(E'a\\tb', NULL, '\(Self.validRequest)', 60)",
                    "request id must be 1 to 200 printable"
                ),
                (
                    "a lifetime over the policy",
                    """
                    SELECT * FROM flotilla_api.api_request(NULL, NULL, \
                    jsonb_set('\(Self.validRequest)', '{lifetimeSeconds}', '3600000'), 60)
                    """,
                    "beyond the maximum of 12h (policy max_lifetime)"
                ),
                (
                    "more nodes than the policy",
                    """
                    SELECT * FROM flotilla_api.api_request(NULL, NULL, \
                    jsonb_set('\(Self.validRequest)', '{agents}', '500'), 60)
                    """,
                    "use 1 to 100 (policy max_nodes)"
                ),
            ]
            for (what, sql, words) in attempts {
                let result = try await Self.psql(fleet, as: agent, sql)
                #expect(result.status != 0, "\(what): accepted: \(result.output)")
                #expect(result.error.contains(words), "\(what): \(result.error)")
                #expect(
                    !result.error.contains("PRIVATE KEY") && !result.output.contains("PRIVATE KEY"),
                    "\(what) showed a key")
            }
            #expect(try await Self.counts(fleet) == before, "nothing changed")

            // Another owner's cluster is not there for this login: not listed, no nodes, no events,
            // no wait estimate, no costs; its own are. (Theirs ready for an hour, with a node.)
            try await fleet.execute("UPDATE clusters SET state = 'provisioning' WHERE id = \(theirs.id)")
            try await fleet.execute(
                """
                UPDATE clusters SET state = 'ready', ready_at = now() - interval '1 hour',
                                    expires_at = now() + interval '1 hour' WHERE id = \(theirs.id)
                """)
            try await fleet.execute(
                """
                INSERT INTO nodes (cluster_id, instance_id, role, private_ip, public_ip, instance_type)
                VALUES (\(theirs.id), 'i-0123456789abcdef0', 'master', '10.0.0.5', '203.0.113.5', 'm4.large')
                """)
            let others = try await Self.psql(
                fleet, as: agent,
                [
                    "SELECT count(*) FROM flotilla_api.api_clusters(NULL, NULL, NULL, 1000) "
                        + "WHERE owner <> current_user",
                    "SELECT count(*) FROM flotilla_api.api_clusters('\(theirs.id)', NULL, NULL, 10)",
                    "SELECT count(*) FROM flotilla_api.api_nodes('\(theirs.id)')",
                    "SELECT count(*) FROM flotilla_api.api_events('\(theirs.id)', 0)",
                    "SELECT count(*) FROM flotilla_api.api_wait_info('\(theirs.id)')",
                    "SELECT count(*) FROM cost_report(interval '30 days') WHERE owner <> current_user",
                    "SELECT count(*) > 0 FROM flotilla_api.api_events('\(mine.id)', 0)",
                ])
            #expect(others.status == 0, "\(others.error)")
            #expect(others.output.split(separator: "\n") == ["0", "0", "0", "0", "0", "0", "t"], "\(others.output)")
            // The owner (and so the fleet and operators) still sees them.
            #expect(
                try await fleet.scalar(
                    "SELECT count(*)::int FROM cost_report(interval '30 days') WHERE owner = \(Self.otherAgent)",
                    as: Int.self) == 1)
            let status = try await fleet.run(["client", "status", theirs.id], environment: ["PGUSER": agent])
            #expect(status.status != 0 && status.stderr.contains("no cluster with id"), "\(status.stderr)")

            // Unicode is fine where text is free: a label in any script is recorded as given.
            let unicode = try await Self.psql(
                fleet, as: agent,
                "SELECT id FROM flotilla_api.api_request(NULL, 'équipe 🚀 «CI»', '\(Self.validRequest)', 60)")
            #expect(unicode.status == 0, "\(unicode.error)")
            #expect(
                try await fleet.scalar(
                    "SELECT count(*)::int FROM clusters WHERE label = 'équipe 🚀 «CI»' AND owner = \(agent)",
                    as: Int.self)
                    == 1)

            // Extending past the policy's whole lifetime: refused, the expiry unchanged.
            try await fleet.withClient { client in
                try await client.query(
                    "UPDATE clusters SET state = 'provisioning' WHERE id = \(mine.id)", logger: Fleet.logger)
                try await client.query(
                    """
                    UPDATE clusters SET state = 'ready', ready_at = now(), expires_at = now() + interval '2 hours'
                    WHERE id = \(mine.id)
                    """,
                    logger: Fleet.logger)
            }
            let expiry = try await fleet.scalar(
                "SELECT expires_at::text FROM clusters WHERE id = \(mine.id)", as: String.self)
            let tooLong = try await Self.psql(
                fleet, as: agent, "SELECT flotilla_api.api_extend('\(mine.id)', '\(mine.token)', 30 * 3600)")
            #expect(
                tooLong.status != 0
                    && tooLong.error.contains("maximum total lifetime of 24h (policy max_total_lifetime)"),
                "\(tooLong.error)")
            #expect(
                try await fleet.scalar("SELECT expires_at::text FROM clusters WHERE id = \(mine.id)", as: String.self)
                    == expiry)
            let extended = try await Self.psql(
                fleet, as: agent, "SELECT flotilla_api.api_extend('\(mine.id)', '\(mine.token)', 3600)")
            #expect(extended.status == 0, "\(extended.error)")
            // Past its expiry (the janitor's pass not yet come): its teardown is due, no extend.
            try await fleet.execute(
                "UPDATE clusters SET expires_at = now() - interval '1 second' WHERE id = \(mine.id)")
            let lapsed = try await fleet.scalar(
                "SELECT expires_at::text FROM clusters WHERE id = \(mine.id)", as: String.self)
            let late = try await Self.psql(
                fleet, as: agent, "SELECT flotilla_api.api_extend('\(mine.id)', '\(mine.token)', 3600)")
            #expect(late.status != 0 && late.error.contains("so it can no longer be extended"), "\(late.error)")
            #expect(
                try await fleet.scalar("SELECT expires_at::text FROM clusters WHERE id = \(mine.id)", as: String.self)
                    == lapsed)

            // The key of my own cluster, with my token: read, and the read is an event naming me.
            try await fleet.withClient { client in
                try await client.query(
                    "UPDATE cluster_secrets SET private_key = 'MY KEY' WHERE cluster_id = \(mine.id)",
                    logger: Fleet.logger)
            }
            let key = try await Self.psql(
                fleet, as: agent, "SELECT flotilla_api.api_key('\(mine.id)', '\(mine.token)')")
            #expect(key.status == 0 && key.output.contains("MY KEY"), "\(key.error)")
            #expect(
                try await fleet.scalar(
                    """
                    SELECT count(*)::int FROM cluster_events
                    WHERE cluster_id = \(mine.id) AND kind = 'key-read' AND detail ->> 'by' = \(agent)
                    """, as: Int.self) == 1)

            // Quotas: at most one cluster at once for this login.
            try await fleet.withClient { client in
                try await client.query(
                    """
                    INSERT INTO policy (owner, max_lifetime, max_total_lifetime, max_nodes, max_clusters,
                                        max_total_nodes)
                    VALUES (\(agent), interval '12 hours', interval '24 hours', 100, 2, 60)
                    """, logger: Fleet.logger)
            }
            let quotaBefore = try await Self.counts(fleet)
            let overQuota = try await Self.psql(
                fleet, as: agent, "SELECT id FROM flotilla_api.api_request(NULL, NULL, '\(Self.validRequest)', 60)")
            #expect(
                overQuota.status != 0
                    && overQuota.error.contains("the quota is 2 clusters at once (policy max_clusters)"),
                "\(overQuota.error)")
            #expect(try await Self.counts(fleet) == quotaBefore)
        }
    }

    @Test(
        "a client's open transaction holding its cluster's row stalls nobody: other owners' expiry and reaper on time"
    )
    func openTransactionStallsNobody() async throws {
        try await Fleet.with { fleet in
            try await Self.makeLogins(fleet)
            // Three clusters; the first in the lifetime pass's order is the one whose row is held.
            var clusters: [(id: String, token: String)] = []
            for _ in 0..<3 { clusters.append(try await Self.request(fleet, as: Fleet.clientLogin)) }
            clusters.sort { $0.id < $1.id }
            let (held, expiring, reaped) = (clusters[0], clusters[1], clusters[2])
            let ids = clusters.map(\.id)
            try await fleet.withClient { client in
                for id in ids {
                    try await client.query(
                        "UPDATE clusters SET state = 'provisioning' WHERE id = \(id)", logger: Fleet.logger)
                    try await client.query(
                        """
                        UPDATE clusters SET state = 'ready', ready_at = now(), expires_at = now() + interval '1 hour'
                        WHERE id = \(id)
                        """, logger: Fleet.logger)
                }
                // The held one is due first (its row cannot be written once it is held).
                try await client.query(
                    "UPDATE clusters SET expires_at = now() + interval '1 second' WHERE id = \(held.id)",
                    logger: Fleet.logger)
                // Another owner's: one expires, one's holder (a `client run`) stops beating.
                try await client.query(
                    "UPDATE clusters SET owner = \(Self.otherAgent) WHERE id IN (\(expiring.id), \(reaped.id))",
                    logger: Fleet.logger)
            }
            // The held cluster's owner, as psycopg2 does by default: a transaction left open
            // after a call that locks the row.
            async let holder = Self.psql(
                fleet, as: Fleet.clientLogin,
                [
                    "BEGIN", "SELECT flotilla_api.api_heartbeat('\(held.id)', '\(held.token)', 3600)", "\\! sleep 25",
                    "SELECT 'still in the transaction'",
                ])
            try await eventually("the holder's transaction sits idle") {
                try await fleet.scalar(
                    """
                    SELECT count(*)::int FROM pg_stat_activity
                    WHERE usename = \(Fleet.clientLogin) AND state = 'idle in transaction'
                    """, as: Int.self) == 1
            }
            // The other two fall due after it, while the janitor runs.
            try await fleet.withClient { client in
                try await client.query(
                    """
                    UPDATE clusters SET expires_at = now() + interval '5 seconds'
                    WHERE id IN (\(expiring.id))
                    """, logger: Fleet.logger)
                try await client.query(
                    """
                    UPDATE clusters SET holder_heartbeat_at = now(), holder_timeout = interval '5 seconds'
                    WHERE id = \(reaped.id)
                    """, logger: Fleet.logger)
            }
            try fleet.start(["janitor", "--interval-seconds", "1"])
            try await eventually("the other owner's clusters torn down", timeout: .seconds(30)) {
                let states = [try await fleet.state(of: expiring.id), try await fleet.state(of: reaped.id)]
                return states == ["tearing_down", "tearing_down"]
            }
            // Late by one janitor interval (1 s) on a quiet machine; a full run's load made it 4.7 s.
            // A pass that waited for the held row would be about 10 s late, so 7 s still tells.
            let lateness = try await fleet.scalar(
                """
                SELECT string_agg(e.kind || ' ' || round(extract(epoch FROM e.at - CASE e.kind
                           WHEN 'teardown-expired' THEN c.expires_at
                           ELSE c.holder_heartbeat_at + c.holder_timeout END)::numeric, 2), ', ' ORDER BY e.kind)
                FROM cluster_events e JOIN clusters c ON c.id = e.cluster_id
                WHERE e.cluster_id IN (\(expiring.id), \(reaped.id)) AND e.kind LIKE 'teardown-%'
                """, as: String.self)
            let seconds = lateness.split(separator: ",").compactMap { Double($0.split(separator: " ").last ?? "") }
            #expect(seconds.count == 2 && seconds.allSatisfy { $0 < 7 }, "teardown after due: \(lateness)")
            print("measured: with another owner's row held, teardowns started after due: \(lateness)")
            #expect(try await fleet.state(of: held.id) == "ready", "the held row was skipped, not waited for")

            // The server closes the idle transaction (15 s); the held cluster then goes too.
            let run = try await holder
            #expect(run.status != 0, "\(run.output)")
            #expect(run.error.contains("idle-in-transaction timeout"), "\(run.error)")
            try await eventually("the held cluster torn down once its row is free", timeout: .seconds(30)) {
                try await fleet.state(of: held.id) == "tearing_down"
            }
        }
    }

    @Test("request ids are per owner; the quota holds in REPEATABLE READ (a snapshot that missed a request is refused)")
    func ownerBoundary() async throws {
        try await Fleet.with { fleet in
            try await Self.makeLogins(fleet)
            let agent = Fleet.clientLogin
            func request(_ id: String?) -> String {
                "SELECT id FROM flotilla_api.api_request(\(id.map { "'\($0)'" } ?? "NULL"), NULL, "
                    + "'\(Self.validRequest)', 60)"
            }
            // Two CI systems with the same job number: each gets its own cluster, and its retry finds it.
            let mine = try await Self.psql(fleet, as: agent, request("job-42"))
            let theirs = try await Self.psql(fleet, as: Self.otherAgent, request("job-42"))
            let theirRetry = try await Self.psql(fleet, as: Self.otherAgent, request("job-42"))
            #expect(mine.status == 0 && theirs.status == 0 && theirRetry.status == 0, "\(mine.error) \(theirs.error)")
            #expect(
                mine.output != theirs.output && theirs.output == theirRetry.output, "\(mine.output) \(theirs.output)")

            // Two clusters at once for this login; it holds one.
            try await fleet.execute(
                """
                INSERT INTO policy (owner, max_lifetime, max_total_lifetime, max_nodes, max_clusters, max_total_nodes)
                VALUES (\(agent), interval '12 hours', interval '24 hours', 100, 2, 60)
                """)
            // A session of the login takes its snapshot, another takes the second cluster, then
            // the first asks for a third: it must not count under its old snapshot.
            let go = FileManager.default.temporaryDirectory.appendingPathComponent("go-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: go) }
            async let snapshot = Self.psql(
                fleet, as: agent,
                [
                    "BEGIN ISOLATION LEVEL REPEATABLE READ",
                    "SELECT count(*) FROM flotilla_api.api_clusters(NULL, NULL, NULL, 10)",
                    // Bounded: a test that failed before making the file does not wait for ever.
                    "\\! for i in $(seq 600); do [ -e '\(go.path)' ] && break; sleep 0.1; done", request(nil),
                    "COMMIT",
                ])
            try await eventually("the repeatable-read session holds its snapshot") {
                try await fleet.scalar(
                    """
                    SELECT count(*)::int FROM pg_stat_activity
                    WHERE usename = \(agent) AND state = 'idle in transaction'
                    """, as: Int.self) == 1
            }
            let second = try await Self.psql(fleet, as: agent, request(nil))
            #expect(second.status == 0, "\(second.error)")
            _ = FileManager.default.createFile(atPath: go.path, contents: Data())
            let third = try await snapshot
            #expect(third.status != 0, "a third cluster past the quota of 2: \(third.output)")
            #expect(third.error.contains("could not serialize access"), "\(third.error)")
            #expect(
                try await fleet.scalar("SELECT count(*)::int FROM clusters WHERE owner = \(agent)", as: Int.self) == 2)
        }
    }

    @Test("a worker login reads the migration history but cannot rewrite it; only worker migrate (the owner) does")
    func migrationHistory() async throws {
        try await Fleet.with { fleet in
            let applied = try await Self.psql(fleet, as: Fleet.workerLogin, "SELECT count(*) FROM schema_migrations")
            #expect(applied.status == 0, "\(applied.error)")
            #expect(Int(applied.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 >= 9, "\(applied.output)")
            for sql in [
                "DELETE FROM schema_migrations WHERE version = 9",
                "UPDATE schema_migrations SET checksum = 'x'",
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'x', 'x')",
                "TRUNCATE schema_migrations",
            ] {
                let result = try await Self.psql(fleet, as: Fleet.workerLogin, sql)
                #expect(result.status != 0 && result.error.contains("permission denied"), "\(sql): \(result.error)")
            }
            let after = try await Self.psql(fleet, as: Fleet.workerLogin, "SELECT count(*) FROM schema_migrations")
            #expect(after.output == applied.output)

            // What the fleet login runs reaches every function it needs, those added since too:
            // a pool with a DC/OS config (the YAML check, added in 0011), refilled, then deleted.
            let spec = Self.validRequest.replacingOccurrences(
                of: "\"genconfFiles\"", with: "\"dcosConfig\":\"dns_search: example.com\\n\",\"genconfFiles\"")
            let pool = try await Self.psql(
                fleet, as: Fleet.workerLogin,
                [
                    "SELECT pool_set('fleet-login', '\(spec)', NULL, 1, 1, NULL, NULL)",
                    "SELECT count(*) FROM pools_refill()", "SELECT pool_delete('fleet-login')",
                ])
            #expect(pool.status == 0, "\(pool.error)")
            #expect(
                pool.output.split(separator: "\n").last == "1", "one pool cluster built, then torn down: \(pool.output)"
            )
        }
    }

    @Test("a function planted in public is refused; worker migrate refuses while others may create there")
    func publicSchema() async throws {
        try await Fleet.with { fleet in
            let before = try await Self.counts(fleet)
            let planted = try await Self.psql(
                fleet, as: Fleet.clientLogin,
                "CREATE FUNCTION public.api_sees(p text) RETURNS boolean LANGUAGE sql AS 'SELECT true'")
            #expect(
                planted.status != 0 && planted.error.contains("permission denied for schema public"), "\(planted.error)"
            )
            // The client API's own schema takes nothing either, and its functions are called by
            // their qualified names (no search_path picks them).
            let beside = try await Self.psql(
                fleet, as: Fleet.clientLogin,
                "CREATE FUNCTION flotilla_api.api_sees(p text) RETURNS boolean LANGUAGE sql AS 'SELECT true'")
            #expect(
                beside.status != 0 && beside.error.contains("permission denied for schema flotilla_api"),
                "\(beside.error)")
            let unqualified = try await Self.psql(fleet, as: Fleet.clientLogin, "SELECT * FROM api_job_counts()")
            #expect(unqualified.status != 0 && unqualified.error.contains("does not exist"), "\(unqualified.error)")
            // A database upgraded from PostgreSQL 14 or older: everyone may create in public.
            try await fleet.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
            let refused = try await fleet.run(["worker", "migrate"])
            #expect(
                refused.status != 0 && refused.stderr.contains("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
                "\(refused.stderr)")
            try await fleet.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            let migrated = try await fleet.run(["worker", "migrate"])
            #expect(migrated.status == 0, "\(migrated.stderr)")
            #expect(try await Self.counts(fleet) == before)
            let loose = try await fleet.scalar(
                """
                SELECT coalesce(string_agg(p.proname, ', '), '') FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname IN ('public', 'flotilla_api') AND p.prosecdef
                  AND NOT coalesce('search_path=pg_catalog, public, pg_temp' = ANY (p.proconfig), false)
                """, as: String.self)
            #expect(loose.isEmpty, "SECURITY DEFINER functions without pg_catalog first: \(loose)")
        }
    }

    @Test("api_key over cleartext from a test host in a network namespace is refused; over TLS, or allowed, sent")
    func cleartextKey() async throws {
        try await Fleet.with { fleet in
            let environment = ProcessInfo.processInfo.environment
            let namespace = try #require(environment["FLOTILLA_TEST_NETNS"], "./scripts/test makes the test host")
            let host = try #require(environment["FLOTILLA_TEST_NETNS_HOST"])
            let mine = try await Self.request(fleet, as: Fleet.clientLogin)
            try await fleet.execute(
                "UPDATE cluster_secrets SET private_key = 'THE PRIVATE KEY' WHERE cluster_id = \(mine.id)")
            /// `sql` through psql run inside the test host's namespace (as root: `ip netns exec`).
            func remote(_ sql: String, sslmode: String) async throws -> PSQL {
                var environment = fleet.environment
                environment["PGUSER"] = Fleet.clientLogin
                environment["PGHOST"] = host
                environment["PGSSLMODE"] = sslmode
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments =
                    (getuid() == 0 ? [] : ["sudo", "-n", "--preserve-env=PGUSER,PGHOST,PGPORT,PGDATABASE,PGSSLMODE"])
                    + [
                        "ip", "netns", "exec", namespace, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c",
                        sql,
                    ]
                process.environment = environment
                let run = try await process.runToCompletion()
                return PSQL(status: run.status, output: run.output, error: run.errors)
            }
            func key(sslmode: String) async throws -> PSQL {
                try await remote("SELECT flotilla_api.api_key('\(mine.id)', '\(mine.token)')", sslmode: sslmode)
            }
            let before = try await Self.counts(fleet)
            let cleartext = try await key(sslmode: "disable")
            #expect(cleartext.status != 0, "\(cleartext.output)")
            #expect(cleartext.error.contains("is not sent in cleartext"), "\(cleartext.error)")
            #expect(!cleartext.output.contains("THE PRIVATE KEY") && !cleartext.error.contains("THE PRIVATE KEY"))
            #expect(try await Self.counts(fleet) == before, "a refused read records nothing")
            // Nor is a cluster built for such a session: the request is refused before anything.
            let request = try await remote(
                "SELECT id FROM flotilla_api.api_request(NULL, NULL, '\(Self.validRequest)', 60)", sslmode: "disable")
            #expect(request.status != 0 && request.error.contains("is not encrypted"), "\(request.error)")
            #expect(try await Self.counts(fleet) == before, "a refused request records nothing")
            let encrypted = try await key(sslmode: "require")
            #expect(encrypted.status == 0 && encrypted.output.contains("THE PRIVATE KEY"), "\(encrypted.error)")
            try await fleet.execute(
                """
                INSERT INTO policy (owner, max_lifetime, max_total_lifetime, max_nodes, max_clusters, max_total_nodes,
                                    allow_cleartext_keys)
                VALUES (\(Fleet.clientLogin), interval '12 hours', interval '24 hours', 100, 10, 60, true)
                """)
            let allowed = try await key(sslmode: "disable")
            #expect(allowed.status == 0 && allowed.output.contains("THE PRIVATE KEY"), "\(allowed.error)")
        }
    }

    @Test("client request prints the lease token only with --json; otherwise the path of a 0600 file holding it")
    func tokenOnlyWhereAsked() async throws {
        try await Fleet.with { fleet in
            let folder = try fleet.makeScratchDirectory()
            let tokenPath = folder.appendingPathComponent("lease.token").path
            let run = try await fleet.run(["client", "request", "--nodes", "1", "--no-wait", "--token-out", tokenPath])
            #expect(run.status == 0, "\(run.stderr)")
            let token = try String(contentsOfFile: tokenPath, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(token.count >= 32)
            #expect(!run.output.contains(token) && !run.stderr.contains(token), "\(run.output)")
            #expect(run.output.contains("lease token  in \(tokenPath)"), "\(run.output)")
            let mode = try FileManager.default.attributesOfItem(atPath: tokenPath)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            // The file holds the working token: the cluster is released with it.
            let id = try #require(
                run.output.split(separator: "\n").first { $0.hasPrefix("cluster ") }?.split(separator: " ").last)
            let release = try await fleet.run(
                ["client", "release", String(id)], environment: ["FLOTILLA_LEASE_TOKEN": token])
            #expect(release.status == 0, "\(release.stderr)")
        }
    }

    @Test("an operator login reads the views and writes the policy, and reads no secret")
    func operatorLogin() async throws {
        try await Fleet.with { fleet in
            try await Self.makeLogins(fleet)
            let made = try await Self.request(fleet, as: Fleet.clientLogin)
            let before = try await Self.counts(fleet)
            for (what, sql, words) in [
                ("read the secrets", "SELECT * FROM cluster_secrets", "permission denied"),
                ("read the token hashes", "SELECT * FROM cluster_tokens", "permission denied"),
                ("read a key", "SELECT flotilla_api.api_key('\(made.id)', '\(made.token)')", "permission denied"),
                ("read the clusters table", "SELECT request FROM clusters", "permission denied"),
                ("write a cluster", "UPDATE clusters SET state = 'ready'", "permission denied"),
            ] {
                let result = try await Self.psql(fleet, as: Self.operatorLogin, sql)
                #expect(result.status != 0, "\(what): accepted: \(result.output)")
                #expect(result.error.contains(words), "\(what): \(result.error)")
            }
            #expect(try await Self.counts(fleet) == before)
            let view = try await Self.psql(
                fleet, as: Self.operatorLogin, "SELECT count(*) FROM operator_clusters WHERE id = '\(made.id)'")
            #expect(
                view.status == 0 && view.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(view.error)")
            let policy = try await Self.psql(
                fleet, as: Self.operatorLogin, "UPDATE policy SET max_clusters = 3 WHERE owner = '*'")
            #expect(policy.status == 0, "\(policy.error)")
            #expect(try await fleet.scalar("SELECT max_clusters FROM policy WHERE owner = '*'", as: Int.self) == 3)
            let job = try await fleet.provisionJobID(of: made.id)
            let cancel = try await Self.psql(fleet, as: Self.operatorLogin, "SELECT cancel_job(\(job))")
            #expect(cancel.status == 0 && cancel.output.contains("cancelled"), "\(cancel.error)")
            #expect(try await fleet.state(of: made.id) == "failed", "an operator's cancel converges on teardown")
        }
    }
}

/// TLS to PostgreSQL for every executable: the test server speaks TLS with a certificate made
/// for the run, and the login flotilla_tls may connect over TLS only (pg_hba.conf).
@Suite("TLS to PostgreSQL", .timeLimit(.minutes(10)))
struct DatabaseTLSTests {
    @Test(
        "sslmode require/verify-full with the run's CA: client and worker use TLS; wrong CA/no TLS is refused clearly"
    )
    func tls() async throws {
        try await Fleet.with { fleet in
            let environment = ProcessInfo.processInfo.environment
            let ca = try #require(environment["FLOTILLA_TEST_PG_CA"], "run through ./scripts/test")
            let otherCA = try #require(environment["FLOTILLA_TEST_PG_OTHER_CA"])
            try await fleet.createLogin("flotilla_tls", in: "flotilla_client")
            // Also a worker, for `worker migrate` below.
            try await fleet.createLogin("flotilla_tls", in: "flotilla_worker")
            let host = fleet.environment["PGHOST"]!
            let port = fleet.environment["PGPORT"]!
            func url(_ host: String, _ query: String) -> String {
                "postgres://flotilla_tls@\(host):\(port)/\(fleet.database)?\(query)"
            }

            for (what, address) in [
                ("verify-full by address", url(host, "sslmode=verify-full&sslrootcert=\(ca)")),
                ("verify-full by name", url("localhost", "sslmode=verify-full&sslrootcert=\(ca)")),
                ("verify-ca", url(host, "sslmode=verify-ca&sslrootcert=\(ca)")),
                ("require", url(host, "sslmode=require")),
                // No sslmode: the client's default is libpq's, prefer; this login may not connect without TLS.
                ("no sslmode (prefer)", "postgres://flotilla_tls@\(host):\(port)/\(fleet.database)"),
            ] {
                let list = try await fleet.run(["client", "list", "--json"], environment: ["DATABASE_URL": address])
                #expect(list.status == 0, "client, \(what): \(list.stderr)")
            }
            // The worker binary too: as the owner (the only login that migrates), verified, and a
            // wrong CA refused; as a fleet login over TLS, a readable refusal to migrate.
            let owner = try DatabaseSettings.fromEnvironment().username
            let ownerURL = { (query: String) in "postgres://\(owner)@\(host):\(port)/\(fleet.database)?\(query)" }
            let migrate = try await fleet.run(
                ["worker", "migrate"], environment: ["DATABASE_URL": ownerURL("sslmode=verify-full&sslrootcert=\(ca)")])
            #expect(migrate.status == 0, "worker migrate over TLS: \(migrate.stderr)")
            let migrateWrongCA = try await fleet.run(
                ["worker", "migrate"],
                environment: ["DATABASE_URL": ownerURL("sslmode=verify-full&sslrootcert=\(otherCA)")]
            )
            #expect(
                migrateWrongCA.status != 0 && migrateWrongCA.stderr.contains("TLS handshake failed"),
                "\(migrateWrongCA.stderr)")
            let fleetMigrate = try await fleet.run(
                ["worker", "migrate"], environment: ["DATABASE_URL": url(host, "sslmode=verify-full&sslrootcert=\(ca)")]
            )
            #expect(
                fleetMigrate.status != 0 && fleetMigrate.stderr.contains("permission denied"), "\(fleetMigrate.stderr)")

            let plain = try await fleet.run(
                ["client", "list"], environment: ["DATABASE_URL": url(host, "sslmode=disable")])
            #expect(plain.status != 0)
            #expect(plain.stderr.contains("pg_hba.conf rejects connection"), "\(plain.stderr)")
            let wrongCA = try await fleet.run(
                ["client", "list"],
                environment: ["DATABASE_URL": url(host, "sslmode=verify-full&sslrootcert=\(otherCA)")])
            #expect(wrongCA.status != 0)
            #expect(wrongCA.stderr.contains("TLS handshake failed"), "\(wrongCA.stderr)")
            let noCA = try await fleet.run(
                ["client", "list"],
                environment: ["DATABASE_URL": url(host, "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt")])
            #expect(noCA.status != 0)
            #expect(noCA.stderr.contains("/nonexistent/ca.crt cannot be read"), "\(noCA.stderr)")
            let badMode = try await fleet.run(
                ["client", "list"], environment: ["DATABASE_URL": url(host, "sslmode=sometimes")])
            #expect(badMode.status != 0 && badMode.stderr.contains("sslmode must be one of"), "\(badMode.stderr)")
        }
    }
}
