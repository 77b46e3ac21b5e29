import Foundation
import Queue

/// How clusters are shown: a table for people, one JSON object with `--json`.
enum ClusterOutput {
    /// ISO 8601 text of a date (UTC, seconds).
    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }

    static func json(_ cluster: ClusterRecord, nodes: [NodeRecord], leaseToken: String? = nil, keyPath: String? = nil)
        -> [String: Any]
    {
        var object: [String: Any] = [
            "id": cluster.id, "owner": cluster.owner, "state": cluster.state.rawValue,
            "masters": cluster.masters, "agents": cluster.agents, "public_agents": cluster.publicAgents,
            "instance_type": cluster.instanceType, "lifetime_seconds": Int(cluster.lifetime.seconds),
            "created_at": iso(cluster.createdAt),
            "nodes": NodeAccess.named(nodes).filter { $0.node.role != "bootstrap" }.map { named -> [String: Any] in
                [
                    "name": named.name, "role": named.node.role, "instance_id": named.node.instanceID,
                    "private_ip": named.node.privateIP, "public_ip": named.node.publicIP as Any,
                ]
            },
        ]
        object["phase"] = cluster.phase
        object["request_id"] = cluster.requestID
        object["ssh_user"] = cluster.sshUser
        object["ssh_port"] = cluster.sshPort
        object["expires_at"] = cluster.expiresAt.map(iso)
        object["ready_at"] = cluster.readyAt.map(iso)
        object["last_error"] = cluster.lastError
        object["web_ui"] = webUI(cluster, nodes: nodes)
        object["lease_token"] = leaseToken
        object["key_path"] = keyPath
        return object
    }

    /// `tokenPath`: where the lease token was written. Text never shows the token itself.
    static func text(_ cluster: ClusterRecord, nodes: [NodeRecord], tokenPath: String? = nil, keyPath: String? = nil)
        -> String
    {
        var lines = [
            "cluster      \(cluster.id)", "state        \(cluster.state)\(cluster.phase.map { " (\($0))" } ?? "")",
            "owner        \(cluster.owner)",
        ]
        if let tokenPath {
            lines.append("lease token  in \(tokenPath) (export FLOTILLA_LEASE_TOKEN=\"$(cat '\(tokenPath)')\")")
        }
        if let expires = cluster.expiresAt, cluster.state == .ready {
            let left = ClusterRequest.format(seconds: max(0, expires.timeIntervalSinceNow))
            lines.append("expires      \(iso(expires)) (in \(left))")
        }
        if let user = cluster.sshUser {
            lines.append("ssh user     \(user)\(cluster.sshPort.map { $0 == 22 ? "" : " (port \($0))" } ?? "")")
        }
        if let keyPath { lines.append("ssh key      \(keyPath)") }
        if let error = cluster.lastError { lines.append("last error   \(error)") }
        if let web = webUI(cluster, nodes: nodes) { lines.append("web UI       \(web)") }
        let shown = NodeAccess.named(nodes).filter { $0.node.role != "bootstrap" }
        if !shown.isEmpty {
            lines.append("")
            lines.append(row(["NODE", "ROLE", "INSTANCE", "PUBLIC IP", "PRIVATE IP"]))
            for named in shown {
                let node = named.node
                lines.append(row([named.name, node.role, node.instanceID, node.publicIP ?? "-", node.privateIP]))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The DC/OS web UI of a ready cluster: its first master's admin router.
    static func webUI(_ cluster: ClusterRecord, nodes: [NodeRecord]) -> String? {
        guard cluster.state == .ready, let master = NodeAccess.named(nodes).first(where: \.isMaster) else { return nil }
        return "http://\(master.node.publicIP ?? master.node.privateIP)/"
    }

    static func row(_ cells: [String]) -> String {
        zip(cells, [16, 14, 22, 17, 16]).map {
            $0.padding(toLength: max($1, $0.count + 1), withPad: " ", startingAt: 0)
        }
        .joined().trimmingCharacters(in: .whitespaces)
    }
}
