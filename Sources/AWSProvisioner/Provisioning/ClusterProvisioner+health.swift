import Foundation
import Timing

extension ClusterProvisioner {
    /// A quick check of a ready cluster before it is handed out: every node answers over
    /// SSH (host keys pinned from the install), and every cluster node passes the same
    /// `node-poststart` check postflight ran. Bounded by `timeout` per node, run on all nodes
    /// at once. Returns the problems found, empty when the cluster is healthy.
    public func healthCheck(_ spec: ClusterSpec, state: ProvisionState, timeout: Duration) async -> [String] {
        let shell: any RemoteShell
        do {
            shell = try self.makeShell(state)
        } catch {
            return ["no SSH shell: \(error)"]
        }
        let installer = DCOSInstaller(spec: spec, shell: shell, observer: SilentObserver(), logger: self.logger)
        let runner = shellQuote(spec.install.checkRunnerPath)
        let seconds = max(1, Int(timeout.seconds))
        let results = await forEachConcurrently(state.nodes, limit: max(1, spec.install.parallelism)) {
            node -> RemoteResult in
            if let key = node.hostKey { try await shell.pinHostKey(key, for: installer.target(node)) }
            let command = node.role.isClusterNode ? "timeout \(seconds) sudo \(runner) check node-poststart" : "true"
            return try await shell.run(command, on: installer.target(node), input: nil, timeout: timeout + .seconds(5))
        }
        await Self.close(shell)
        var problems: [String] = []
        for (node, result) in zip(state.nodes, results) {
            let outcome = RemoteResult(result)
            if !outcome.succeeded { problems.append("\(node.privateIP) (\(node.role)): \(outcome.summary)") }
        }
        return problems
    }
}

/// An observer for work that stores nothing (the health check, the janitor's passes).
public struct SilentObserver: ProvisionObserver {
    public init() {}
    public func checkpoint(_ state: ProvisionState, moment: CheckpointMoment, step: String) async throws {}
    public func beforeMutation(_ description: String) async throws {}
    public func progress(_ message: String) async {}
}
