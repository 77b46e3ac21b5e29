import Foundation
import Logging
import PostgresNIO
import Queue

/// The web page's content, read as the operator login from the operator views (none holds a
/// secret), and rendered to HTML with every value escaped.
struct FleetPage: Sendable {
    let client: PostgresClient
    let logger: Logger

    // MARK: The fleet

    /// The fleet's sections: pools, clusters with nodes, jobs, failed installs, key-pair
    /// deletions, the last sweep, cost. The `<main>` content, refreshed in place by the page.
    func fleet() async throws -> String {
        var html = HTML()
        try await self.pools(&html)
        try await self.clusters(&html)
        try await self.jobs(&html)
        try await self.failedInstalls(&html)
        try await self.keyPairDeletions(&html)
        try await self.sweep(&html)
        try await self.cost(&html)
        html.raw("<p class=\"stamp\">read ")
        html.text(utc(Date()))
        html.raw("</p>")
        return html.output
    }

    private func pools(_ html: inout HTML) async throws {
        html.raw("<section id=\"pools\"><h2>Pools</h2>")
        let rows = try await self.client.query(
            """
            SELECT name, paused, target, ready, healthy, building, handed_out, instance_type, node_count, region
            FROM operator_pools ORDER BY name
            """, logger: self.logger)
        var table: [[(inout HTML) -> Void]] = []
        for try await (name, paused, target, ready, healthy, building, handedOut, type, nodes, region)
            in rows.decode((String, Bool, Int, Int, Int, Int, Int, String?, Int?, String?).self)
        {
            table.append([
                { $0.text(name) }, { $0.text(paused ? "paused" : "active") }, { $0.text("\(target)") },
                { $0.text("\(ready)") }, { $0.text("\(healthy)") }, { $0.text("\(building)") },
                { $0.text("\(handedOut)") },
                { $0.text("\(nodes.map(String.init) ?? "?") × \(type ?? "?")") }, { $0.text(region ?? "worker's") },
            ])
        }
        html.table(
            "pools-table", ["pool", "status", "target", "ready", "healthy", "building", "claimed", "shape", "region"],
            table, empty: "No pools. worker pool set NAME --nodes N --min 1 --max 3 makes one.")
        html.raw("</section>")
    }

    private func clusters(_ html: inout HTML) async throws {
        html.raw("<section id=\"clusters\"><h2>Clusters</h2>")
        let rows = try await self.client.query(
            """
            SELECT id, owner, state, coalesce(phase, ''), node_count, instance_type,
                   extract(epoch FROM now() - created_at)::float8, expires_at, pool, last_error
            FROM operator_clusters
            WHERE state <> 'destroyed' OR destroyed_at > now() - interval '1 hour'
            ORDER BY created_at DESC LIMIT 200
            """, logger: self.logger)
        struct Row {
            var id, owner, state, phase: String
            var nodes: Int
            var type: String
            var age: Double
            var expires: Date?
            var pool, error: String?
        }
        var clusters: [Row] = []
        for try await (id, owner, state, phase, nodes, type, age, expires, pool, error)
            in rows.decode((String, String, String, String, Int, String, Double, Date?, String?, String?).self)
        {
            clusters.append(
                Row(
                    id: id, owner: owner, state: state, phase: phase, nodes: nodes, type: type, age: age,
                    expires: expires, pool: pool, error: error))
        }
        let nodes = try await self.nodes(of: clusters.map(\.id))
        var table: [[(inout HTML) -> Void]] = []
        for cluster in clusters {
            table.append([
                { $0.link("/clusters/\(cluster.id)", cluster.id) },
                { $0.element("span", cluster.state, class: "state \(cluster.state)") },
                { $0.text(cluster.phase) },
                { $0.text(cluster.owner) },
                { $0.text("\(cluster.nodes) × \(cluster.type)") },
                { $0.text(humanSpan(cluster.age)) },
                { html in
                    if let expires = cluster.expires, cluster.state == "ready" {
                        html.text("\(utc(expires)) (in \(humanSpan(expires.timeIntervalSinceNow)))")
                    }
                },
                { $0.text(cluster.pool ?? "") },
                { html in Self.nodeList(&html, nodes[cluster.id] ?? []) },
                { $0.text(cluster.error ?? "") },
            ])
        }
        html.table(
            "clusters-table",
            [
                "cluster", "state", "phase", "owner", "nodes", "age", "expires", "pool", "node IPs (private / public)",
                "last error",
            ],
            table, empty: "No clusters in the last hour.")
        html.raw("</section>")
    }

    struct Node {
        var role, instanceID, privateIP: String
        var publicIP: String?
    }

    func nodes(of clusters: [String]) async throws -> [String: [Node]] {
        guard !clusters.isEmpty else { return [:] }
        let rows = try await self.client.query(
            """
            SELECT cluster_id, role, instance_id, private_ip, public_ip FROM operator_nodes
            WHERE cluster_id = ANY(\(clusters)::text[]) ORDER BY cluster_id, role, instance_id
            """, logger: self.logger)
        var result: [String: [Node]] = [:]
        for try await (cluster, role, instance, privateIP, publicIP) in rows.decode(
            (String, String, String, String, String?).self)
        {
            result[cluster, default: []].append(
                Node(role: role, instanceID: instance, privateIP: privateIP, publicIP: publicIP))
        }
        return result
    }

    static func nodeList(_ html: inout HTML, _ nodes: [Node]) {
        guard !nodes.isEmpty else { return }
        html.raw("<ul class=\"nodes\">")
        for node in nodes {
            html.raw("<li>")
            html.element("span", node.role, class: "role")
            html.text(" \(node.privateIP)" + (node.publicIP.map { " / \($0)" } ?? ""))
            html.raw("</li>")
        }
        html.raw("</ul>")
    }

    private func jobs(_ html: inout HTML) async throws {
        html.raw("<section id=\"jobs\"><h2>Running and failed jobs</h2>")
        let rows = try await self.client.query(
            """
            SELECT id, kind, cluster_id, state, attempt, max_attempts, worker, last_error,
                   extract(epoch FROM age)::float8
            FROM operator_jobs
            WHERE state = 'running' OR (state = 'failed' AND finished_at > now() - interval '24 hours')
               OR (state = 'queued' AND last_error IS NOT NULL)
            ORDER BY id DESC LIMIT 100
            """, logger: self.logger)
        var table: [[(inout HTML) -> Void]] = []
        for try await (id, kind, cluster, state, attempt, maxAttempts, worker, error, age)
            in rows.decode((Int64, String, String?, String, Int, Int, String?, String?, Double).self)
        {
            table.append([
                { $0.text("\(id)") }, { $0.text(kind) },
                { html in if let cluster { html.link("/clusters/\(cluster)", cluster) } },
                { $0.element("span", state == "queued" ? "retrying" : state, class: "state \(state)") },
                { $0.text("\(attempt) of \(maxAttempts)") }, { $0.text(worker ?? "") },
                { $0.text(humanSpan(age)) }, { $0.text(error ?? "") },
            ])
        }
        html.table(
            "jobs-table", ["job", "kind", "cluster", "state", "attempt", "worker", "age", "last error"],
            table, empty: "No job running, none failed in the last 24 hours.")
        html.raw("</section>")
    }

    private func failedInstalls(_ html: inout HTML) async throws {
        html.raw("<section id=\"installs\"><h2>Failed installs</h2>")
        let rows = try await self.client.query(
            """
            SELECT l.cluster_id, l.name, l.created_at, length(l.contents)
            FROM operator_cluster_logs l ORDER BY l.created_at DESC, l.name LIMIT 50
            """, logger: self.logger)
        var table: [[(inout HTML) -> Void]] = []
        for try await (cluster, name, created, size) in rows.decode((String, String, Date, Int).self) {
            table.append([
                { $0.link("/clusters/\(cluster)", cluster) },
                { $0.link("/clusters/\(cluster)#log-\(name)", name) },
                { $0.text("\(size) bytes") }, { $0.text(utc(created)) },
            ])
        }
        html.table(
            "installs-table", ["cluster", "journald log", "size", "saved"], table, empty: "No failed install logs.")
        html.raw("</section>")
    }

    private func keyPairDeletions(_ html: inout HTML) async throws {
        html.raw("<section id=\"key-pairs\"><h2>Key pairs waiting to be deleted</h2>")
        let rows = try await self.client.query(
            """
            SELECT region, key_pair_name, cluster_id, attempts, next_attempt_at, last_error
            FROM operator_key_pair_deletions WHERE deleted_at IS NULL ORDER BY created_at
            """, logger: self.logger)
        var table: [[(inout HTML) -> Void]] = []
        for try await (region, name, cluster, attempts, next, error) in rows.decode(
            (String, String, String?, Int, Date, String?).self)
        {
            table.append([
                { $0.text(region) }, { $0.text(name) },
                { html in if let cluster { html.link("/clusters/\(cluster)", cluster) } },
                { $0.text("\(attempts)") }, { $0.text(utc(next)) }, { $0.text(error ?? "") },
            ])
        }
        html.table(
            "key-pairs-table", ["region", "key pair", "cluster", "attempts", "next attempt", "last error"], table,
            empty: "None pending.")
        html.raw("</section>")
    }

    private func sweep(_ html: inout HTML) async throws {
        html.raw("<section id=\"sweep\"><h2>Leftovers found by the last sweep</h2>")
        let rows = try await self.client.query(
            """
            SELECT region, swept_at, instances, security_groups, key_pairs, dry_run
            FROM operator_sweep_reports ORDER BY region
            """, logger: self.logger)
        var table: [[(inout HTML) -> Void]] = []
        for try await (region, at, instances, groups, keys, dryRun) in rows.decode(
            (String, Date, [String], [String], [String], Bool).self)
        {
            table.append([
                { $0.text(region) }, { $0.text(utc(at)) },
                { $0.text(instances.isEmpty ? "none" : instances.joined(separator: ", ")) },
                { $0.text(groups.isEmpty ? "none" : groups.joined(separator: ", ")) },
                { $0.text(keys.isEmpty ? "none" : keys.joined(separator: ", ")) },
                { $0.text(dryRun ? "reported only (dry run)" : "removed") },
            ])
        }
        html.table(
            "sweep-table", ["region", "swept", "instances", "security groups", "key pairs", "action"], table,
            empty: "No sweep has run yet.")
        html.raw("</section>")
    }

    private func cost(_ html: inout HTML) async throws {
        html.raw("<section id=\"cost\"><h2>Instance-hours, last 7 days</h2>")
        let lines = try await OperatorReports(client: self.client, logger: self.logger).cost(since: .seconds(7 * 86400))
        let table: [[(inout HTML) -> Void]] = lines.map { line in
            [
                { $0.text(line.owner) }, { $0.text(line.instanceType) }, { $0.text("\(line.clusters)") },
                { $0.text("\(line.nodes)") }, { $0.text(String(format: "%.2f", line.instanceHours)) },
            ]
        }
        html.table(
            "cost-table", ["owner", "instance type", "clusters", "instances", "instance-hours"], table,
            empty: "No cluster was up in the last 7 days.")
        html.raw("</section>")
    }

    // MARK: One cluster

    /// A cluster's page: its row, nodes, event timeline and install logs; nil when unknown.
    func cluster(_ id: String) async throws -> String? {
        let rows = try await self.client.query(
            """
            SELECT id, owner, state, coalesce(phase, ''), node_count, instance_type, created_at, ready_at, expires_at,
                   destroyed_at, pool, label, region, teardown_reason, last_error
            FROM operator_clusters WHERE id = \(id)
            """, logger: self.logger)
        var html = HTML()
        var found = false
        for try await (
            id, owner, state, phase, nodes, type, created, ready, expires, destroyed, pool, label, region, reason, error
        )
            in rows.decode(
                (
                    String, String, String, String, Int, String, Date, Date?, Date?, Date?, String?, String?, String?,
                    String?, String?
                ).self)
        {
            found = true
            html.raw("<section id=\"cluster\"><h2>Cluster ")
            html.text(id)
            html.raw("</h2><dl>")
            let facts: [(String, String?)] = [
                ("state", state), ("phase", phase), ("owner", owner), ("label", label), ("nodes", "\(nodes) × \(type)"),
                ("pool", pool), ("region", region), ("requested", utc(created)), ("ready", ready.map(utc)),
                ("expires", expires.map(utc)), ("destroyed", destroyed.map(utc)), ("teardown reason", reason),
                ("last error", error),
            ]
            for (name, value) in facts {
                guard let value, !value.isEmpty else { continue }
                html.element("dt", name)
                html.element("dd", value, class: name == "state" ? "state \(value)" : nil)
            }
            html.raw("</dl></section>")
        }
        guard found else { return nil }
        html.raw("<section id=\"cluster-nodes\"><h2>Nodes</h2>")
        let nodes = try await self.nodes(of: [id])[id] ?? []
        html.table(
            "nodes-table", ["role", "instance", "private IP", "public IP"],
            nodes.map { node in
                [
                    { $0.text(node.role) }, { $0.text(node.instanceID) }, { $0.text(node.privateIP) },
                    { $0.text(node.publicIP ?? "") },
                ]
            }, empty: "No nodes published yet.")
        html.raw("</section>")

        html.raw("<section id=\"timeline\"><h2>Timeline</h2>")
        let events = try await self.client.query(
            """
            SELECT at, kind, detail::text FROM operator_cluster_events WHERE cluster_id = \(id) ORDER BY at, id
            """, logger: self.logger)
        var timeline: [[(inout HTML) -> Void]] = []
        for try await (at, kind, detail) in events.decode((Date, String, String).self) {
            timeline.append([{ $0.text(utc(at)) }, { $0.text(kind) }, { $0.text(detail == "{}" ? "" : detail) }])
        }
        html.table("timeline-table", ["at", "event", "detail"], timeline, empty: "No events.")
        html.raw("</section>")

        html.raw("<section id=\"logs\"><h2>Install logs</h2>")
        let logs = try await self.client.query(
            """
            SELECT name, contents, created_at FROM operator_cluster_logs WHERE cluster_id = \(id) ORDER BY name
            """, logger: self.logger)
        var any = false
        for try await (name, contents, created) in logs.decode((String, String, Date).self) {
            any = true
            html.raw("<details open id=\"log-\(HTML.escape(name))\"><summary>")
            html.text("\(name) (saved \(utc(created)))")
            html.raw("</summary><pre class=\"log\">")
            html.text(contents)
            html.raw("</pre></details>")
        }
        if !any { html.raw("<p class=\"empty\">No install logs: logs are kept for failed phases.</p>") }
        html.raw("</section>")
        return html.output
    }
}
