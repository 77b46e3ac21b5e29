import ArgumentParser
import Foundation
import Queue

struct RequestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Ask for a DC/OS cluster and wait until it is ready.",
        discussion: """
            Prints the cluster id, the lease token (keep it: extend, release and key need it),
            the nodes, the SSH user, the key file and the expiry. While waiting it shows the
            phase the cluster is in on standard error.

            Default split for --nodes N: 1 master up to 6 nodes, 3 masters up to 20, 5 beyond;
            1 public agent from 3 nodes on; the rest private agents (3 → 1/1/1, 10 → 3/6/1).
            --masters, --agents and --public-agents override it.

            Examples:
              client request --nodes 3
              client request --masters 3 --agents 5 --public-agents 2 --lifetime 4h \\
                  --admin-location 203.0.113.0/24 --dcos-config extra.yaml \\
                  --copy-to-installer ./ca.crt:ca/ca.crt --request-id "$CI_JOB_ID" --key-out ./cluster.key
              client request --nodes 1 --no-wait --json

            Giving up never leaves a cluster behind: on a timeout, Ctrl-C (SIGINT), SIGTERM or an
            error after the cluster was recorded, the cluster is released (torn down) unless
            --keep-on-failure is given. Everything needed locally (the key file's folder, files to
            read) is checked before anything is recorded.

            Exit codes: 0 ready; 1 refused, failed or timed out; 64 bad usage; 130 interrupted
            (SIGINT); 143 terminated (SIGTERM).
            """
    )

    @Option(help: "Cluster nodes (masters + agents + public agents), split as described below.") var nodes: Int = 3
    @Option(help: "Masters: 1, 3, 5, 7 or 9.") var masters: Int?
    @Option(help: "Private agents.") var agents: Int?
    @Option(help: "Public agents.") var publicAgents: Int?
    @Option(help: "EC2 instance type of the nodes.") var instanceType: String = "m4.large"
    @Option(help: "How long the cluster lives once ready (e.g. 90m, 2h); at most the policy's maximum (12h by default).") var lifetime: String = "2h"
    @Option(help: "CIDR block allowed to reach the cluster's public ports.") var adminLocation: String = "0.0.0.0/0"
    @Option(help: "URL of dcos_generate_config.sh. Default: $FLOTILLA_INSTALLER_URL.") var installerURL: String?
    @Option(help: "A YAML file merged over the generated config.yaml (top-level keys replace).") var dcosConfig: String?
    @Option(help: "LOCAL:REMOTE — copy a local file into the installer's genconf/REMOTE. Repeatable.") var copyToInstaller: [String] = []
    @Option(help: "Free text shown with the cluster (the owner is always the database login).") var label: String?
    @Option(help: "A retried request with the same id returns the same cluster.") var requestID: String?
    @Option(help: "Where to write the SSH private key (mode 0600). Default: ./<cluster id>.key") var keyOut: String?
    @Flag(help: "Return once the request is recorded; do not wait.") var noWait = false
    @Option(help: """
        Give up waiting after this long (the cluster is then released). With --no-wait: how long the cluster \
        waits to be collected by `client wait` + `client key`. Either way the server gives up on a request \
        nobody collected (read its key or extended it) 15 s after this.
        """) var timeout: String = "60m"
    @Flag(help: "When giving up (timeout, Ctrl-C, SIGTERM, an error), keep the cluster instead of releasing it.") var keepOnFailure = false
    @OptionGroup var options: ClientOptions

    /// The request, validated; nothing is written when this throws.
    func makeRequest() throws -> (ClusterRequest, Duration) {
        guard self.masters != nil || self.agents != nil || self.publicAgents != nil || self.nodes >= 1 else {
            throw ValidationError("--nodes must be at least 1")
        }
        let split = ClusterRequest.split(nodes: max(self.nodes, 1))
        guard let lifetime = ClusterRequest.parseDuration(self.lifetime) else {
            throw ValidationError("--lifetime must be a duration like 90m or 2h")
        }
        guard let installerURL = self.installerURL ?? ProcessInfo.processInfo.environment["FLOTILLA_INSTALLER_URL"], !installerURL.isEmpty else {
            throw ValidationError("no installer URL: pass --installer-url or set FLOTILLA_INSTALLER_URL")
        }
        var dcosConfig: String?
        if let path = self.dcosConfig {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw ValidationError("cannot read --dcos-config file \(path)")
            }
            dcosConfig = text
        }
        var files: [ClusterRequest.GenconfFile] = []
        for pair in self.copyToInstaller {
            guard let colon = pair.firstIndex(of: ":"), colon != pair.startIndex, pair.index(after: colon) != pair.endIndex else {
                throw ValidationError("--copy-to-installer takes LOCAL:REMOTE, like ./ca.crt:ca/ca.crt")
            }
            let local = String(pair[..<colon])
            guard let data = FileManager.default.contents(atPath: local) else {
                throw ValidationError("cannot read \(local) for --copy-to-installer")
            }
            files.append(.init(path: String(pair[pair.index(after: colon)...]), contents: data))
        }
        let nodesGiven = self.nodes == 0 && self.masters == nil ? 0 : nil
        let request = ClusterRequest(
            masters: nodesGiven ?? self.masters ?? split.masters, agents: self.agents ?? (nodesGiven ?? split.agents),
            publicAgents: self.publicAgents ?? (nodesGiven ?? split.publicAgents), instanceType: self.instanceType,
            adminLocation: self.adminLocation, installerURL: installerURL, dcosConfig: dcosConfig, genconfFiles: files,
            lifetimeSeconds: lifetime.seconds)
        guard ClusterRequest.parseDuration(self.timeout) != nil else { throw ValidationError("--timeout must be a duration like 45m") }
        if let id = self.requestID, !(1...200).contains(id.count) { throw ValidationError("--request-id must be 1 to 200 characters") }
        if !self.noWait {
            try checkWritable(self.keyOut ?? FileManager.default.currentDirectoryPath + "/c-0000000000.key", option: "--key-out")
        }
        return (request, lifetime)
    }

    func run() async throws {
        let (request, lifetime) = try self.makeRequest()
        let json = String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
        let timeout = ClusterRequest.parseDuration(self.timeout)!
        // Every request carries an id, so a request that a signal interrupted while it was
        // being recorded can be found again (the same id returns it) and released.
        let new = NewCluster(requestID: self.requestID ?? "auto-" + UUID().uuidString.lowercased(), label: self.label,
                             request: json, abandonAfter: timeout + .seconds(15))
        let (noWait, asJSON, keyOut, keep) = (self.noWait, self.options.json, self.keyOut, self.keepOnFailure)
        let status = try await withStore(self.options) { store, settings -> Int32 in
            // What this invocation is responsible for, once the request is recorded.
            let made = Responsibility()
            do {
                return try await untilSignalled {
                    let (id, token, created) = try await store.request(new)
                    made.set(id, token)
                    if !created { FileHandle.standardError.write(Data("request id already used: returning cluster \(id)\n".utf8)) }
                    if noWait {
                        let cluster = try await requireCluster(store, id)
                        if asJSON { printJSON(ClusterOutput.json(cluster, nodes: [], leaseToken: token)) } else {
                            print(ClusterOutput.text(cluster, nodes: [], leaseToken: token))
                        }
                        return 0
                    }
                    return try await Self.waitAndCollect(id: id, token: token, store: store, settings: settings, timeout: timeout,
                                                         keyOut: keyOut, asJSON: asJSON) ? 0 : 1
                }
            } catch {
                let status: Int32
                let why: String
                switch error {
                case let signalled as Signalled:
                    (status, why) = (128 + signalled.signal, signalled.signal == SIGINT ? "interrupted" : "terminated")
                case let error as QueueError:
                    (status, why) = (1, error.message)
                default:
                    (status, why) = (1, DatabaseErrorDescription.describe(error))
                }
                var recorded = made.current
                if recorded == nil, error is Signalled, !keep {
                    // Interrupted while the request was being recorded: ask again with the same
                    // id (which returns the cluster, if it was recorded) so it can be released.
                    if let again = try? await withDeadline(.seconds(20), { try await store.request(new) }) {
                        recorded = (again.id, again.leaseToken)
                    }
                }
                guard let (id, token) = recorded else {
                    FileHandle.standardError.write(Data("client: \(why); nothing was recorded\n".utf8))
                    return status
                }
                if keep {
                    // What was kept is printed as a success would be, token included: its
                    // holder needs it to release the cluster later.
                    if let cluster = try? await store.cluster(id: id) {
                        if asJSON { printJSON(ClusterOutput.json(cluster, nodes: [], leaseToken: token)) } else {
                            print(ClusterOutput.text(cluster, nodes: [], leaseToken: token))
                        }
                    }
                    FileHandle.standardError.write(Data("client: \(why); cluster \(id) is kept (--keep-on-failure): release it with `client release \(id)`\n".utf8))
                    return status
                }
                do {
                    // Bounded: with the database gone, the server's deadline takes over.
                    let state = try await withDeadline(.seconds(20)) { try await store.release(clusterID: id, leaseToken: token) }
                    FileHandle.standardError.write(Data("client: \(why); released cluster \(id) (it is \(state) now; --keep-on-failure keeps it)\n".utf8))
                } catch let error as QueueError where error.code == .notFound {
                    FileHandle.standardError.write(Data("client: \(why); nothing was recorded\n".utf8))
                } catch {
                    FileHandle.standardError.write(Data("client: \(why); could not release cluster \(id) (\(DatabaseErrorDescription.describe(error))): the server gives it up at its deadline\n".utf8))
                }
                return status
            }
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// Waits for the cluster, writes its key and prints it. Returns whether it is ready.
    static func waitAndCollect(id: String, token: String, store: ClusterAPI, settings: DatabaseSettings, timeout: Duration,
                               keyOut: String?, asJSON: Bool) async throws -> Bool {
        let cluster = try await waitForCluster(id, store: store, settings: settings, timeout: timeout)
        let nodes = try await store.nodes(clusterID: id)
        var keyPath: String?
        if cluster.state == .ready {
            let path = keyOut ?? FileManager.default.currentDirectoryPath + "/\(id).key"
            try writeKey(try await store.privateKey(clusterID: id, leaseToken: token), to: path)
            keyPath = path
        }
        if asJSON { printJSON(ClusterOutput.json(cluster, nodes: nodes, leaseToken: token, keyPath: keyPath)) } else {
            print(ClusterOutput.text(cluster, nodes: nodes, leaseToken: token, keyPath: keyPath))
            if let keyPath, let user = cluster.sshUser, let node = nodes.first(where: { $0.role == "master" }) {
                print("\nssh -i \(keyPath) \(cluster.sshPort.map { $0 == 22 ? "" : "-p \($0) " } ?? "")\(user)@\(node.publicIP ?? node.privateIP)")
            }
            if cluster.state != .ready {
                print("\nthe cluster did not become ready; install logs: client logs \(id) --out ./logs")
            }
        }
        return cluster.state == .ready
    }
}
