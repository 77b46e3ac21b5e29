import Foundation
import Queue

/// Gathers what explains a cluster's trouble into a folder, with the nodes' own tools:
/// - every node's journal: `sudo -n journalctl --no-pager -o short-iso` →
///   `<node>-<ip>-journal.log` (`master_0-10.0.1.5-journal.log`);
/// - a DC/OS diagnostics bundle from `master_0`, made through the diagnostics service's
///   socket on the node (`PUT /system/health/v1/diagnostics/<id>` for masters and agents, its
///   status until `Done`, then `…/<id>/file`; the node's copy is deleted afterwards) →
///   `diagnostics-<id>.zip`. A cluster without a running DC/OS (an install that failed) has
///   none; that is reported, not fatal;
/// - the install logs the worker stored → `install/<name>`.
struct LogCollector {
    let access: NodeAccess
    let folder: String
    var bundleTimeout: Duration = .seconds(600)
    var parallel = 8

    /// Keeps the collected journals with the cluster for the operator page (nil: not kept).
    var keep: (@Sendable ([(name: String, contents: String)]) async throws -> Int)? = nil

    struct Report {
        var files: [String] = []
        var failures: [String] = []
        var bundleProblem: String?
        /// How many journals the operator page now holds, or why none.
        var kept: Result<Int, Problem>?
    }

    /// The most of one journal kept with the cluster (the server keeps the same: its end).
    static let keptBytes = 1 << 20

    static let socket = "/run/dcos/dcos-diagnostics.sock"

    func collect(installLogs: [(name: String, contents: String)]) async throws -> Report {
        try FileManager.default.createDirectory(atPath: self.folder, withIntermediateDirectories: true)
        var report = Report()
        let journals = try await self.journals()
        for (path, failure) in journals {
            if let failure { report.failures.append(failure) } else { report.files.append(path) }
        }
        if let keep = self.keep {
            let journals = report.files.filter { $0.hasSuffix("-journal.log") }.compactMap {
                path -> (String, String)? in
                guard let data = FileManager.default.contents(atPath: path) else { return nil }
                let tail = data.suffix(Self.keptBytes)
                return (URL(fileURLWithPath: path).lastPathComponent, String(decoding: tail, as: UTF8.self))
            }
            do {
                report.kept = .success(try await keep(journals.map { (name: $0.0, contents: $0.1) }))
            } catch let error as QueueError {
                report.kept = .failure(Problem(message: error.message))
            }
        }
        if let master = self.access.masters.first {
            switch try await self.bundle(from: master) {
            case .success(let path): report.files.append(path)
            case .failure(let problem): report.bundleProblem = problem.message
            }
        } else {
            report.bundleProblem = "the cluster has no master"
        }
        if !installLogs.isEmpty {
            let install = self.folder + "/install"
            try FileManager.default.createDirectory(atPath: install, withIntermediateDirectories: true)
            for log in installLogs {
                let path = install + "/" + log.name
                try Data(log.contents.utf8).write(to: URL(fileURLWithPath: path))
                report.files.append(path)
            }
        }
        return report
    }

    /// Every node's journal, at most `parallel` at a time: (path, nil) or (path, why not).
    private func journals() async throws -> [(String, String?)] {
        let nodes = self.access.nodes
        return try await withThrowingTaskGroup(of: (Int, String, String?).self) { group in
            var next = 0
            var results: [(Int, String, String?)] = []
            func start() {
                let index = next
                let node = nodes[index]
                next += 1
                group.addTask {
                    let (path, failure) = try await self.journal(of: node)
                    return (index, path, failure)
                }
            }
            while next < min(self.parallel, nodes.count) { start() }
            while let result = try await group.next() {
                results.append(result)
                if next < nodes.count { start() }
            }
            return results.sorted { $0.0 < $1.0 }.map { ($0.1, $0.2) }
        }
    }

    private func journal(of node: NamedNode) async throws -> (String, String?) {
        let path = "\(self.folder)/\(node.name)-\(node.node.privateIP)-journal.log"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return (path, "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let errors = try TemporaryFile()
        let status = try await self.access.run(
            "sudo -n journalctl --no-pager -o short-iso", on: node,
            streams: ChildStreams(output: fd, error: errors.descriptor))
        guard status == 0 else {
            let why = errors.contents().trimmingCharacters(in: .whitespacesAndNewlines).suffix(300)
            return (path, "\(node.name) (\(self.access.address(of: node))): journalctl ended \(status): \(why)")
        }
        return (path, nil)
    }

    struct Problem: Error { var message: String }

    /// A diagnostics bundle of the whole cluster, made on `master`.
    private func bundle(from master: NamedNode) async throws -> Result<String, Problem> {
        let stamp = "\(Int(Date().timeIntervalSince1970))-\(UInt16.random(in: 0...UInt16.max))"
        let id = "flotilla-\(self.access.cluster.id)-\(stamp)"
        let url = "http://localhost/system/health/v1/diagnostics/\(id)"
        let curl = "sudo -n curl -fsS --unix-socket \(Self.socket)"
        let create = try await self.access.capture(
            "\(curl) -X PUT -H 'Content-Type: application/json' -d '{\"masters\":true,\"agents\":true}' \(url)",
            on: master)
        guard create.status == 0 else {
            return .failure(
                Problem(
                    message: "\(master.name) made no diagnostics bundle (is DC/OS running there?): "
                        + create.output.trimmingCharacters(in: .whitespacesAndNewlines).suffix(300)))
        }
        let deadline = ContinuousClock.now + self.bundleTimeout
        while true {
            let look = try await self.access.capture("\(curl) \(url)", on: master)
            let state = look.status == 0 ? Self.bundleStatus(look.output) : nil
            if state == "Done" { break }
            if look.status != 0 || ["Failed", "Canceled", "Deleted", "Unknown"].contains(state ?? "") {
                return .failure(
                    Problem(
                        message: "the diagnostics bundle \(id) on \(master.name) did not finish: "
                            + look.output.trimmingCharacters(in: .whitespacesAndNewlines).suffix(300)))
            }
            if ContinuousClock.now > deadline {
                return .failure(
                    Problem(message: "the diagnostics bundle \(id) was not done after \(self.bundleTimeout)"))
            }
            try await Task.sleep(for: .seconds(2))
        }
        let path = "\(self.folder)/diagnostics-\(id).zip"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return .failure(Problem(message: "cannot write \(path)")) }
        let errors = try TemporaryFile()
        let status = try await self.access.run(
            "\(curl) \(url)/file", on: master, streams: ChildStreams(output: fd, error: errors.descriptor))
        close(fd)
        _ = try? await self.access.capture("\(curl) -X DELETE \(url) >/dev/null", on: master)
        guard status == 0, let head = FileManager.default.contents(atPath: path)?.prefix(2), head == Data("PK".utf8)
        else {
            try? FileManager.default.removeItem(atPath: path)
            return .failure(
                Problem(
                    message: "downloading the diagnostics bundle \(id) from \(master.name) failed: "
                        + errors.contents().trimmingCharacters(in: .whitespacesAndNewlines).suffix(300)))
        }
        return .success(path)
    }

    /// The `status` of a bundle's JSON description.
    static func bundleStatus(_ text: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            return nil
        }
        return object["status"] as? String
    }
}

extension LogCollector.Report {
    /// Lines for a person: each file, then what is missing.
    var text: String {
        var lines = self.files
        if let problem = self.bundleProblem { lines.append("no diagnostics bundle: \(problem)") }
        switch self.kept {
        case .success(let count): lines.append("kept \(count) journals with the cluster for the operator page")
        case .failure(let problem): lines.append("the journals were not kept with the cluster: \(problem.message)")
        case nil: break
        }
        lines += self.failures.map { "missing journal: \($0)" }
        return lines.joined(separator: "\n")
    }
}
