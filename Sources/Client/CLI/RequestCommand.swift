import ArgumentParser
import CommandOptions
import Foundation
import Queue

struct RequestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Ask for a DC/OS cluster and wait until it is ready.",
        discussion: """
            Prints the cluster id, the nodes, the SSH user, the key file and the expiry. While
            waiting it shows the phase the cluster is in on standard error.

            The lease token is a bearer capability: whoever holds it may read the cluster's key,
            extend it and release it. It is printed only with --json; otherwise it is written to
            --token-out (default ./<cluster id>.token, mode 0600) and only that path is printed.

            \(ClusterShapeOptions.splitHelp)

            A request whose spec matches a warm pool (`client pools`) is answered at once
            with one of its ready clusters (--pool never builds a new one anyway). One changed
            byte (another installer URL, configuration, copied file) misses the pool: a line on
            standard error names the nearest pool and what differs (--explain-pool says more),
            and --pool-name NAME takes from that pool anyway.

            Examples:
              client request --nodes 3
              client request --masters 3 --agents 5 --public-agents 2 --lifetime 4h \\
                  --admin-location 203.0.113.0/24 --dcos-config extra.yaml \\
                  --copy-to-installer ./ca.crt:ca/ca.crt --request-id "$CI_JOB_ID" --key-out ./cluster.key
              client request --nodes 1 --no-wait --json
              client request --pool-name ci-small --lifetime 1h

            Giving up never leaves a cluster behind: on a timeout, Ctrl-C (SIGINT), SIGTERM or an
            error after the cluster was recorded, the cluster is released (torn down) unless
            --keep-on-failure is given. Everything needed locally (the key file's folder, files to
            read) is checked before anything is recorded.

            Exit codes: 0 ready; 1 refused, failed or timed out; 64 bad usage; 130 interrupted
            (SIGINT); 143 terminated (SIGTERM).
            """
    )

    @OptionGroup var shape: ClusterShapeOptions
    @Option(
        help: "How long the cluster lives once ready (e.g. 90m, 2h); at most the policy's maximum (12h by default).")
    var lifetime: String = "2h"
    @Option(help: "Free text shown with the cluster (the owner is always the database login).") var label: String?
    @Option(help: "A retried request with the same id returns the same cluster.") var requestID: String?
    @Option(help: "Where to write the SSH private key (mode 0600). Default: ./<cluster id>.key") var keyOut: String?
    @Option(
        help: """
            Where to write the lease token (mode 0600). Default: ./<cluster id>.token without --json; \
            with --json only when given (the JSON holds it).
            """) var tokenOut: String?
    @Flag(help: "Return once the request is recorded; do not wait.") var noWait = false
    @Option(
        help: """
            Give up waiting after this long (the cluster is then released). With --no-wait: how long the cluster \
            waits to be collected by `client wait` + `client key`. Either way the server gives up on a request \
            nobody collected (read its key or extended it) 15 s after this.
            """) var timeout: String = "60m"
    @Flag(help: "When giving up (timeout, Ctrl-C, SIGTERM, an error), keep the cluster instead of releasing it.")
    var keepOnFailure = false
    @Option(
        help: """
            Warm pools (`worker pool list`): auto takes a ready pool cluster when the spec matches one, else a new \
            cluster is built; wait takes a pool cluster still being built before building a new one; never \
            always builds.
            """) var pool: PoolModeOption = .auto
    @Option(help: "Build the cluster in this region (`client images` lists the regions the fleet builds in).")
    var region: String?
    @OptionGroup var byName: PoolNameOptions
    @OptionGroup var options: ClientOptions

    /// The request as JSON, validated; nothing is written when this throws.
    func makeRequest() throws -> String {
        guard let lifetime = ClusterRequest.parseDuration(self.lifetime) else {
            throw ValidationError("--lifetime must be a duration like 90m or 2h")
        }
        let request =
            try self.byName.requestJSON(shape: self.shape, region: self.region, lifetime: lifetime)
        guard ClusterRequest.parseDuration(self.timeout) != nil else {
            throw ValidationError("--timeout must be a duration like 45m")
        }
        if let id = self.requestID, !(1...200).contains(id.count) {
            throw ValidationError("--request-id must be 1 to 200 characters")
        }
        if !self.noWait {
            try checkWritable(
                self.keyOut ?? FileManager.default.currentDirectoryPath + "/c-0000000000.key", option: "--key-out")
        }
        if self.tokenOut != nil || !self.options.json {
            try checkWritable(
                self.tokenOut ?? FileManager.default.currentDirectoryPath + "/c-0000000000.token", option: "--token-out"
            )
        }
        return request
    }

    func run() async throws {
        let json = try self.makeRequest()
        let timeout = ClusterRequest.parseDuration(self.timeout)!
        // Every request carries an id, so a request that a signal interrupted while it was
        // being recorded can be found again (the same id returns it) and released.
        let new = NewCluster(
            requestID: self.requestID ?? "auto-" + UUID().uuidString.lowercased(), label: self.label,
            request: json, abandonAfter: timeout + .seconds(15), poolMode: self.pool.mode,
            poolName: self.byName.poolName)
        let (noWait, asJSON, keyOut, keep) = (self.noWait, self.options.json, self.keyOut, self.keepOnFailure)
        let explain = self.byName.explainPool
        let tokenOut = self.tokenOut
        let status = try await withStore(self.options) { store, _ -> Int32 in
            // What this invocation is responsible for, once the request is recorded.
            let made = Responsibility()
            do {
                return try await untilSignalled {
                    let receipt = try await store.request(new)
                    let (id, token) = (receipt.id, receipt.leaseToken)
                    made.set(id, token)
                    // Saved at once, so a wait cut short (a crash, a lost database) loses no token.
                    let tokenPath = Self.saveToken(
                        token, of: id, to: tokenOut, asJSON: asJSON, requestID: new.requestID)
                    if !receipt.created {
                        FileHandle.standardError.write(Data("request id already used: returning cluster \(id)\n".utf8))
                    }
                    if let pool = receipt.pool {
                        FileHandle.standardError.write(Data("\(id): from warm pool \(pool)\n".utf8))
                    }
                    await explainPoolMiss(
                        request: json, receipt: receipt, byName: new.poolName != nil, explain: explain, store: store)
                    if noWait {
                        let cluster = try await requireCluster(store, id)
                        Self.show(cluster, nodes: [], token: token, tokenPath: tokenPath, asJSON: asJSON)
                        return 0
                    }
                    return try await Self.waitAndCollect(
                        id: id, token: token, store: store, timeout: timeout,
                        keyOut: keyOut, tokenPath: tokenPath, asJSON: asJSON) ? 0 : 1
                }
            } catch {
                let (status, why) = givingUp(error)
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
                    // What was kept is printed as a success would be, token included (or its
                    // file): its holder needs it to release the cluster later.
                    let tokenPath = Self.saveToken(
                        token, of: id, to: tokenOut, asJSON: asJSON, requestID: new.requestID)
                    if let cluster = try? await store.cluster(id: id) {
                        Self.show(cluster, nodes: [], token: token, tokenPath: tokenPath, asJSON: asJSON)
                    } else if !asJSON, let tokenPath {
                        FileHandle.standardError.write(
                            Data("client: the lease token of \(id) is in \(tokenPath)\n".utf8))
                    }
                    let kept =
                        "client: \(why); cluster \(id) is kept (--keep-on-failure): "
                        + "release it with `client release \(id)`\n"
                    FileHandle.standardError.write(Data(kept.utf8))
                    return status
                }
                await releaseAfterGivingUp(id, token, why: why, store: store, note: "--keep-on-failure keeps it")
                return status
            }
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// Waits for the cluster, writes its key and prints it. Returns whether it is ready.
    static func waitAndCollect(
        id: String, token: String, store: ClusterAPI, timeout: Duration,
        keyOut: String?, tokenPath: String?, asJSON: Bool
    ) async throws -> Bool {
        let cluster = try await waitForCluster(id, store: store, timeout: timeout)
        let nodes = try await store.nodes(clusterID: id)
        var keyPath: String?
        if cluster.state == .ready {
            let path = keyOut ?? FileManager.default.currentDirectoryPath + "/\(id).key"
            try writeKey(try await store.privateKey(clusterID: id, leaseToken: token), to: path)
            keyPath = path
        }
        Self.show(cluster, nodes: nodes, token: token, tokenPath: tokenPath, keyPath: keyPath, asJSON: asJSON)
        if !asJSON {
            if let keyPath, let user = cluster.sshUser, let node = nodes.first(where: { $0.role == "master" }) {
                let port = cluster.sshPort.map { $0 == 22 ? "" : "-p \($0) " } ?? ""
                print("\nssh -i \(keyPath) \(port)\(user)@\(node.publicIP ?? node.privateIP)")
            }
            if cluster.state != .ready {
                print("\nthe cluster did not become ready; install logs: client logs \(id) --out ./logs")
            }
        }
        return cluster.state == .ready
    }

    /// Writes the lease token where it goes: `tokenOut`, or without `asJSON` ./<id>.token (mode
    /// 0600; the token is a bearer capability, so text output shows only this path). Returns the
    /// path, or nil when none was asked or it could not be written: that costs a warning, never
    /// the cluster, since asking again with the same request id gives a new token.
    static func saveToken(_ token: String, of id: String, to tokenOut: String?, asJSON: Bool, requestID: String?)
        -> String?
    {
        guard let path = tokenOut ?? (asJSON ? nil : FileManager.default.currentDirectoryPath + "/\(id).token") else {
            return nil
        }
        do {
            try writeSecret(token + "\n", to: path, what: "the lease token")
            return path
        } catch {
            let again = requestID.map { " --request-id '\($0)'" } ?? ""
            FileHandle.standardError.write(
                Data(
                    ("client: \(error); for a new token of \(id), run the same request again with\(again) --json\n")
                        .utf8))
            return nil
        }
    }

    /// Prints the cluster: with `asJSON` as JSON, lease token included; as text with only
    /// the path of the file that holds the token (``saveToken(_:of:to:asJSON:requestID:)``).
    static func show(
        _ cluster: ClusterRecord, nodes: [NodeRecord], token: String, tokenPath: String?, keyPath: String? = nil,
        asJSON: Bool
    ) {
        if asJSON {
            var object = ClusterOutput.json(cluster, nodes: nodes, leaseToken: token, keyPath: keyPath)
            object["token_path"] = tokenPath
            printJSON(object)
        } else {
            print(ClusterOutput.text(cluster, nodes: nodes, tokenPath: tokenPath, keyPath: keyPath))
        }
    }
}

/// `--pool auto|wait|never`.
struct PoolModeOption: ExpressibleByArgument, Sendable {
    var mode: PoolMode
    static let auto = PoolModeOption(mode: .auto)
    init(mode: PoolMode) { self.mode = mode }
    init?(argument: String) {
        guard let mode = PoolMode(rawValue: argument) else { return nil }
        self.mode = mode
    }
    static var allValueStrings: [String] { PoolMode.allCases.map(\.rawValue) }
    var defaultValueDescription: String { self.mode.rawValue }
}
