import Foundation
import Logging
import Telemetry

/// Creates a DC/OS cluster on EC2 and installs it over SSH, as resumable steps.
///
/// key pair → security group → instances (one `RunInstances` per role, with a
/// deterministic `ClientToken`, tagged at creation) → running, with IPs → SSH up, host
/// keys recorded and pinned → bootstrap node (installer download, genconf, serve) →
/// preflight → deploy → postflight. Each step reports a checkpoint before its side effect
/// (with the intent: names, tokens) and after it; ``provision(_:from:observer:)`` started
/// again from any checkpoint converges to exactly the requested instances.
///
/// The provisioner knows nothing of PostgreSQL: the caller stores checkpoints.
public struct ClusterProvisioner: Sendable {
    public let ec2: EC2Client
    public let credentials: CredentialsCache
    public let logger: Logger
    /// Makes the shell for a cluster once its key exists.
    public let makeShell: @Sendable (ProvisionState) throws -> any RemoteShell
    /// Zones and types that recently ran out of capacity (shared by the process's clusters, or
    /// by the fleet's).
    public let capacity: any CapacityRecord

    public init(
        ec2: EC2Client, credentials: CredentialsCache, logger: Logger,
        capacity: any CapacityRecord = CapacityMemory.shared,
        makeShell: @escaping @Sendable (ProvisionState) throws -> any RemoteShell
    ) {
        self.ec2 = ec2
        self.credentials = credentials
        self.logger = logger
        self.capacity = capacity
        self.makeShell = makeShell
    }

    /// An OpenSSH shell whose key, `known_hosts` and control sockets live in a fresh folder
    /// under `baseDirectory`.
    public static func openSSHShells(baseDirectory: URL, configuration: OpenSSHShell.Configuration = .init())
        -> @Sendable (ProvisionState) throws -> any RemoteShell
    {
        { state in
            guard let key = state.privateKeyPEM else {
                throw ProvisionError(.conflict, "cluster \(state.clusterID) has no private key recorded")
            }
            // <pid>-<random>: a worker that starts removes the folders of workers that died.
            let folder = baseDirectory.appendingPathComponent(
                "\(getpid())-" + String(UUID().uuidString.prefix(8)).lowercased())
            return try OpenSSHShell(privateKeyPEM: key, directory: folder, configuration: configuration)
        }
    }

    /// Removes the shell folders (private keys, control sockets) that workers which died
    /// without cleaning up left in `baseDirectory`: those named after a process that is gone.
    /// Returns how many were removed.
    @discardableResult
    public static func removeAbandonedShellFolders(in baseDirectory: URL) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: baseDirectory.path)) ?? []
        var removed = 0
        for name in names {
            guard let pid = name.split(separator: "-").first.flatMap({ pid_t($0) }), pid > 0 else { continue }
            if kill(pid, 0) == -1 && errno == ESRCH {
                try? FileManager.default.removeItem(at: baseDirectory.appendingPathComponent(name))
                removed += 1
            }
        }
        return removed
    }

    /// Tags every resource of the cluster carries. `created` is the first attempt's time
    /// (``ProvisionState/createdTag``), so every attempt sends the same tags.
    static func tags(for spec: ClusterSpec, role: ClusterRole? = nil, created: String? = nil) -> [EC2Tag] {
        var tags = [
            EC2Tag(key: "Name", value: role.map { "\(spec.resourceName)-\($0.rawValue)" } ?? spec.resourceName),
            EC2Tag(key: "cluster", value: spec.clusterID),
            EC2Tag(key: "owner", value: spec.owner),
            EC2Tag(key: "managed-by", value: "flotilla"),
            // When the resource was made, for the janitor's grace period.
            EC2Tag(key: "created", value: created ?? ISO8601DateFormatter().string(from: Date())),
        ]
        if let deployment = spec.deployment {
            tags.append(EC2Tag(key: "deployment", value: deployment))
        }
        if let expiresAt = spec.expiresAt {
            tags.append(EC2Tag(key: "expires", value: ISO8601DateFormatter().string(from: expiresAt)))
        }
        if let role { tags.append(EC2Tag(key: "role", value: role.rawValue)) }
        // The requester's, then the role's: a role's tag replaces a cluster-wide one of the same key.
        var custom = spec.customTags
        for tag in role.flatMap({ spec.roleTags[$0] }) ?? [] {
            custom.removeAll { $0.key == tag.key }
            custom.append(tag)
        }
        return tags + custom
    }

    /// Provisions the cluster, starting from `state` (a checkpoint from an earlier run) or
    /// from nothing. Returns the final state (`step == .ready`) with every node.
    ///
    /// On an install failure it throws ``ProvisionError`` with the failed nodes' logs; what
    /// was created is in the last checkpoint, ready for ``teardown(_:state:observer:)``.
    public func provision(
        _ spec: ClusterSpec, from state: ProvisionState? = nil,
        observer: any ProvisionObserver
    ) async throws -> ProvisionState {
        try spec.validate()
        var state = state ?? ProvisionState(clusterID: spec.clusterID)
        guard state.clusterID == spec.clusterID else {
            throw ProvisionError(.conflict, "checkpoint belongs to cluster \(state.clusterID), not \(spec.clusterID)")
        }
        var logger = self.logger
        logger[metadataKey: MetadataKey.clusterID] = "\(spec.clusterID)"

        // Image and network first: a refusal there comes before anything exists.
        if state.step < .instancesLaunched && state.placement == nil { try await self.plan(spec, &state, observer) }
        if state.step < .keyImported { try await self.importKeyPair(spec, &state, observer) }
        if state.step < .securityGroupReady { try await self.createSecurityGroup(spec, &state, observer) }
        if state.abandonedInstanceIDs?.isEmpty == false { try await self.terminateAbandoned(spec, &state, observer) }
        while state.step < .instancesRunning {
            do {
                if state.step < .instancesLaunched { try await self.launchInstances(spec, &state, observer) }
                try await self.waitForInstances(spec, &state, observer)
            } catch let failure as PlacementFailure {
                try await self.fallBack(spec, &state, failure, observer)
            }
        }

        let shell = try self.makeShell(state)
        do {
            state = try await self.install(spec, state, shell: shell, observer: observer, logger: logger)
        } catch {
            await Self.close(shell)
            throw error
        }
        await Self.close(shell)
        return state
    }

    /// Closes the shell's connections and removes its folder (the cluster's key on this
    /// machine), awaited, also when the caller was cancelled.
    static func close(_ shell: any RemoteShell) async {
        await (shell as? OpenSSHShell)?.close()
    }

    private func install(
        _ spec: ClusterSpec, _ start: ProvisionState, shell: any RemoteShell,
        observer: any ProvisionObserver, logger: Logger
    ) async throws -> ProvisionState {
        var state = start
        state.installRuns = (state.installRuns ?? 0) + 1
        let installer = DCOSInstaller(
            spec: spec, shell: shell, observer: observer, logger: logger, run: state.installRuns!)
        if state.step < .sshReady {
            try await self.waitForSSH(spec, &state, shell, observer)
        } else {
            for node in state.nodes {
                if let key = node.hostKey { try await shell.pinHostKey(key, for: installer.target(node)) }
            }
        }
        if state.step < .prerequisitesReady {
            try await observer.checkpoint(state, moment: .before, step: "prerequisites")
            try await installer.prepareNodes(state)
            try await installer.setupNodes(state)
            state.step = .prerequisitesReady
            try await observer.checkpoint(state, moment: .after, step: "prerequisites")
        }
        // Bare nodes: DC/OS comes later, from this checkpoint (`client install`).
        if spec.provisionOnly {
            await observer.progress("provisioned: \(state.nodes.count) nodes with their prerequisites; no DC/OS")
            return state
        }
        if state.step < .bootstrapReady {
            try await observer.checkpoint(state, moment: .before, step: "bootstrap")
            try await installer.bootstrap(state)
            state.step = .bootstrapReady
            try await observer.checkpoint(state, moment: .after, step: "bootstrap")
        }
        for (phase, done) in [
            (DCOSInstaller.Phase.preflight, ProvisionStep.preflightPassed),
            (.deploy, .deployed), (.postflight, .ready),
        ] where state.step < done {
            try await observer.checkpoint(state, moment: .before, step: phase.rawValue)
            try await installer.run(phase, on: state)
            state.step = done
            try await observer.checkpoint(state, moment: .after, step: phase.rawValue)
        }
        if let shell = shell as? OpenSSHShell {
            let stats = shell.statistics
            await observer.progress(
                "ready: \(state.nodes.count) nodes; SSH used \(stats.connections) connections "
                    + "for \(stats.commands) commands")
        }
        return state
    }

    // MARK: Steps

    private func importKeyPair(_ spec: ClusterSpec, _ state: inout ProvisionState, _ observer: any ProvisionObserver)
        async throws
    {
        if state.keyPairName == nil || state.privateKeyPEM == nil {
            let key = SSHKeyPair.generate(comment: spec.resourceName)
            state.keyPairName = spec.resourceName
            state.publicKeyLine = key.publicKeyLine
            state.privateKeyPEM = key.privateKeyPEM
        }
        try await observer.checkpoint(state, moment: .before, step: "key pair")
        let name = state.keyPairName!
        let publicKey = state.publicKeyLine!
        try await observer.beforeMutation("import key pair \(name)")
        do {
            _ = try await self.ec2.importKeyPair(
                name: name, publicKey: publicKey,
                tags: Self.tags(for: spec, created: state.createdTag))
        } catch let error as EC2Error where error.code == "InvalidKeyPair.Duplicate" {
            // Imported before a crash, or someone else's key of the same name: only ours is accepted.
            let existing = try await self.ec2.describeKeyPairs(names: [name], includePublicKey: true).first
            let ours = SSHKeyPair(publicKeyLine: publicKey, privateKeyPEM: "").publicKeyBody
            guard let material = existing?.publicKey,
                SSHKeyPair(publicKeyLine: material.trimmingCharacters(in: .whitespacesAndNewlines), privateKeyPEM: "")
                    .publicKeyBody == ours
            else {
                throw ProvisionError(
                    .conflict,
                    "a key pair named \(name) exists in \(spec.region) with another public key; "
                        + "it is not Flotilla's to reuse")
            }
        } catch let error as EC2Error {
            throw ProvisionError(.aws, "cannot import key pair \(name): \(error)", underlying: error)
        }
        state.step = .keyImported
        try await observer.checkpoint(state, moment: .after, step: "key pair")
    }

    /// The ports `admin_location` may reach on every node: SSH, HTTP(S), Exhibitor (61001),
    /// Marathon-LB stats (9000) and ICMP, as the reference lists them.
    static let adminPorts = [22, 80, 443, 61001, 9000]

    /// The group's rules: the admin ports open to `admin_location`; SSH from the worker
    /// fleet's range as a rule of its own, so narrowing `admin_location` never locks the
    /// fleet out; and all traffic between members of the group. The bootstrap node's serve
    /// port is none of the admin ports (``ClusterSpec/validate()`` refuses that), so only the
    /// cluster's own members reach the served configuration.
    static func ingressRules(adminLocation: String, workerCIDR: String?, groupID: String) -> [EC2IPPermission] {
        var rules = Self.adminPorts.map {
            EC2IPPermission(ipProtocol: "tcp", fromPort: $0, toPort: $0, cidrRanges: [adminLocation])
        }
        rules.append(EC2IPPermission(ipProtocol: "icmp", fromPort: -1, toPort: -1, cidrRanges: [adminLocation]))
        if let workerCIDR, workerCIDR != adminLocation {
            rules.append(EC2IPPermission(ipProtocol: "tcp", fromPort: 22, toPort: 22, cidrRanges: [workerCIDR]))
        }
        rules.append(EC2IPPermission(ipProtocol: "-1", sourceGroupIDs: [groupID]))
        return rules
    }

    private func createSecurityGroup(
        _ spec: ClusterSpec, _ state: inout ProvisionState, _ observer: any ProvisionObserver
    ) async throws {
        let name = spec.resourceName
        state.securityGroupName = name
        try await observer.checkpoint(state, moment: .before, step: "security group")
        do {
            var groupID = state.securityGroupID
            if groupID == nil {
                groupID = try await self.findSecurityGroup(named: name, vpcID: state.vpcID)
            }
            if groupID == nil {
                try await observer.beforeMutation("create security group \(name)")
                do {
                    groupID = try await self.ec2.createSecurityGroup(
                        name: name, description: "Flotilla DC/OS cluster \(spec.clusterID)",
                        vpcID: state.vpcID, tags: Self.tags(for: spec, created: state.createdTag))
                } catch let error as EC2Error where error.code == "InvalidGroup.Duplicate" {
                    groupID = try await self.findSecurityGroup(named: name, vpcID: state.vpcID)
                }
            }
            guard let groupID else {
                throw ProvisionError(.aws, "security group \(name) was created but cannot be found")
            }
            state.securityGroupID = groupID
            try await observer.checkpoint(state, moment: .before, step: "security group rules")
            try await observer.beforeMutation("authorize ingress on \(groupID)")
            // The fleet's range: as configured, else the VPC itself when the worker reaches
            // nodes by private address.
            let workerCIDR = spec.workerCIDR ?? (spec.sshAddress == .privateIP ? state.vpcCIDR : nil)
            for rule in Self.ingressRules(adminLocation: spec.adminLocation, workerCIDR: workerCIDR, groupID: groupID) {
                do {
                    // A group just created may not be visible to this call yet.
                    try await self.untilVisible(
                        "authorize ingress on \(groupID)", codes: ["InvalidGroup.NotFound"], observer: observer
                    ) {
                        try await self.ec2.authorizeSecurityGroupIngress(groupID: groupID, permissions: [rule])
                    }
                } catch let error as EC2Error where error.code == "InvalidPermission.Duplicate" {
                    continue
                }
            }
        } catch let error as EC2Error {
            throw ProvisionError(.aws, "cannot set up security group \(name): \(error)", underlying: error)
        }
        state.step = .securityGroupReady
        try await observer.checkpoint(state, moment: .after, step: "security group")
    }

    func findSecurityGroup(named name: String, vpcID: String?) async throws -> String? {
        var filters = [EC2Filter(name: "group-name", values: [name])]
        if let vpcID { filters.append(EC2Filter(name: "vpc-id", values: [vpcID])) }
        return try await self.ec2.describeSecurityGroups(filters: filters).first?.groupID
    }

    /// The `ClientToken` of a role's launch: the cluster, the role and, after a fallback, the
    /// placement attempt (at most 64 characters, as EC2 allows).
    static func clientToken(_ spec: ClusterSpec, _ role: ClusterRole, attempt: Int) -> String {
        let token = "\(spec.resourceName)-\(role.rawValue)" + (attempt > 0 ? "-\(attempt)" : "")
        return token.count <= 64 ? token : String(token.suffix(64))
    }

    /// The `RunInstances` of one launch: the placement's image, type and subnet, the root
    /// volume on the image's own root device, the placement's `HttpTokens`, the tags recorded
    /// with the intent on the instances, their volumes and network interfaces.
    static func runRequest(
        _ spec: ClusterSpec, _ state: ProvisionState, _ launch: ProvisionState.Launch,
        _ placement: ProvisionState.Placement
    ) -> EC2RunInstancesRequest {
        var request = EC2RunInstancesRequest(
            imageID: placement.imageID, instanceType: launch.instanceType ?? placement.instanceType(for: launch.role),
            count: launch.count,
            clientToken: launch.clientToken, keyName: state.keyPairName,
            subnetID: launch.subnetID ?? placement.subnetID,
            securityGroupIDs: state.securityGroupID.map { [$0] } ?? [],
            associatePublicIPAddress: spec.sshAddress == .publicIP ? true : nil,
            rootVolume: EC2RootVolume(deviceName: placement.rootDeviceName, sizeGiB: spec.rootVolumeGiB),
            tagSpecifications: ["instance", "volume", "network-interface"].map {
                EC2TagSpecification(
                    resourceType: $0,
                    tags: launch.tags ?? Self.tags(for: spec, role: launch.role, created: state.createdTag))
            })
        request.metadataTokensRequired = placement.metadataTokens != "optional"
        return request
    }

    /// The live instances of one launch: by its `launch` tag (the token), or for launches
    /// recorded before that tag existed, by the cluster and role (and subnet when recorded).
    static func launchFilters(_ spec: ClusterSpec, _ launch: ProvisionState.Launch) -> [EC2Filter] {
        var filters = [EC2Filter(name: "instance-state-name", values: ["pending", "running"])]
        if launch.tags?.contains(where: { $0.key == "launch" }) == true {
            filters.append(.tag("launch", launch.clientToken))
        } else {
            filters += [.tag("cluster", spec.clusterID), .tag("role", launch.role.rawValue)]
            if let subnet = launch.subnetID { filters.append(EC2Filter(name: "subnet-id", values: [subnet])) }
        }
        return filters
    }

    /// One launch per role, recorded as intent before any is sent.
    static func intendedLaunches(_ spec: ClusterSpec, _ state: ProvisionState, _ placement: ProvisionState.Placement)
        -> [ProvisionState.Launch]
    {
        spec.counts.filter { wanted in wanted.count > 0 && !state.launches.contains { $0.role == wanted.role } }.map {
            role, count in
            let token = Self.clientToken(spec, role, attempt: placement.attempt)
            // The `launch` tag carries the token: a launch's instances are found by it exactly,
            // never mistaken for another attempt's in the same subnet.
            return ProvisionState.Launch(
                role: role, clientToken: token, count: count,
                instanceType: placement.instanceType(for: role), subnetID: placement.subnetID,
                tags: Self.tags(for: spec, role: role, created: state.createdTag) + [
                    EC2Tag(key: "launch", value: token)
                ])
        }
    }

    private func launchInstances(_ spec: ClusterSpec, _ state: inout ProvisionState, _ observer: any ProvisionObserver)
        async throws
    {
        guard let placement = state.placement else {
            throw ProvisionError(.conflict, "cluster \(spec.clusterID) has no placement recorded before its launch")
        }
        // Intent first: one launch per role, with its token, type, subnet and tags, so a
        // retried RunInstances is the same request to AWS, tags and all.
        state.launches += Self.intendedLaunches(spec, state, placement)
        try await observer.checkpoint(state, moment: .before, step: "instances")
        for index in state.launches.indices where state.launches[index].instanceIDs.isEmpty {
            let launch = state.launches[index]
            let instanceType = launch.instanceType ?? placement.instanceType(for: launch.role)
            do {
                // Instances of this launch may exist already (created before a crash): its
                // tags, set at creation, find them even where ClientToken is ignored.
                let existing = try await self.ec2.describeInstances(filters: Self.launchFilters(spec, launch))
                if !existing.isEmpty {
                    guard existing.count == launch.count else {
                        throw ProvisionError(
                            .conflict,
                            "found \(existing.count) \(launch.role) instances of cluster \(spec.clusterID) "
                                + "where \(launch.count) were requested")
                    }
                    state.launches[index].instanceIDs = existing.map(\.instanceID).sorted()
                } else {
                    try await observer.beforeMutation("run \(launch.count) \(launch.role) instances")
                    let request = Self.runRequest(spec, state, launch, placement)
                    state.launches[index].instanceIDs = try await self.run(
                        request, launch: launch, spec: spec, observer: observer)
                }
            } catch let error as EC2Error where PlacementFailure.isPlacementFailure(error) {
                throw PlacementFailure(code: error.code, message: error.message, instanceType: instanceType)
            } catch let error as EC2Error {
                throw ProvisionError(.aws, "cannot launch \(launch.role) instances: \(error)", underlying: error)
            }
            try await observer.checkpoint(state, moment: .after, step: "instances \(launch.role)")
        }
        state.step = .instancesLaunched
        try await observer.checkpoint(state, moment: .after, step: "instances")
    }

    /// Sends one `RunInstances` and returns the instance ids. The key pair and group just
    /// created may not be visible to it yet (waited for). `IdempotentParameterMismatch`
    /// means the token was used before with other parameters: the instances that call made
    /// are this launch's, found by its tags once EC2 shows them.
    private func run(
        _ request: EC2RunInstancesRequest, launch: ProvisionState.Launch, spec: ClusterSpec,
        observer: any ProvisionObserver
    ) async throws -> [String] {
        do {
            let launched = try await self.untilVisible(
                "run \(launch.role) instances", codes: ["InvalidKeyPair.NotFound", "InvalidGroup.NotFound"],
                observer: observer
            ) {
                try await self.ec2.runInstances(request)
            }
            return launched.map(\.instanceID).sorted()
        } catch let error as EC2Error where error.code == "IdempotentParameterMismatch" {
            await observer.progress(
                "\(launch.role) launch: \(error.code); looking for the instances of token \(launch.clientToken)")
            let ec2 = self.ec2
            return try await poll(
                "the instances of launch \(launch.clientToken)", timeout: Self.visibilityTimeout, interval: .seconds(2)
            ) {
                () -> ([String]?, String) in
                let found = try await ec2.describeInstances(filters: Self.launchFilters(spec, launch))
                return (
                    found.count == launch.count ? found.map(\.instanceID).sorted() : nil,
                    "\(found.count) of \(launch.count) found"
                )
            }
        }
    }

    private func waitForInstances(_ spec: ClusterSpec, _ state: inout ProvisionState, _ observer: any ProvisionObserver)
        async throws
    {
        let ids = state.instanceIDs
        let roles = Dictionary(
            uniqueKeysWithValues: state.launches.flatMap { launch in launch.instanceIDs.map { ($0, launch.role) } })
        let types = Dictionary(
            uniqueKeysWithValues: state.launches.flatMap { launch in
                launch.instanceIDs.map {
                    ($0, launch.instanceType ?? state.placement?.instanceType(for: launch.role) ?? "")
                }
            })
        let needsPublicIP = spec.sshAddress == .publicIP
        let ec2 = self.ec2
        let instances = try await poll(
            "\(ids.count) instances to be running with their IP addresses",
            timeout: .seconds(spec.install.instanceTimeoutSeconds),
            interval: .seconds(spec.install.pollIntervalSeconds)
        ) { () -> ([EC2Instance]?, String) in
            let found: [EC2Instance]
            do {
                found = try await ec2.describeInstances(instanceIDs: ids)
            } catch let error as EC2Error where error.code == "InvalidInstanceID.NotFound" {
                // Just launched and not visible yet: EC2 is eventually consistent.
                await observer.progress("instances not visible yet (\(error.code))")
                return (nil, "not visible yet")
            }
            if let gone = found.first(where: { $0.state == .terminated || $0.state == .shuttingDown }) {
                let reason = gone.stateReasonCode ?? "no reason given"
                if PlacementFailure.stateReasons.contains(reason) {
                    throw PlacementFailure(
                        code: reason,
                        message: gone.stateReasonMessage ?? "instance \(gone.instanceID) ended while pending",
                        instanceType: gone.instanceType ?? types[gone.instanceID] ?? "unknown")
                }
                throw ProvisionError(
                    .aws, "instance \(gone.instanceID) is \(gone.state) before the cluster was ready (\(reason))")
            }
            let ready = found.filter {
                $0.state == .running && $0.privateIPAddress != nil && (!needsPublicIP || $0.publicIPAddress != nil)
            }
            await observer.progress("instances running: \(ready.count) of \(ids.count)")
            return (ready.count == ids.count ? ready : nil, "\(ready.count) of \(ids.count) ready")
        }
        let previous = Dictionary(uniqueKeysWithValues: state.nodes.map { ($0.instanceID, $0) })
        state.nodes = instances.map { instance in
            ProvisionState.Node(
                role: roles[instance.instanceID] ?? .privateAgent, instanceID: instance.instanceID,
                privateIP: instance.privateIPAddress ?? "", publicIP: instance.publicIPAddress,
                hostKey: previous[instance.instanceID]?.hostKey, instanceType: instance.instanceType)
        }.sorted { ($0.role, $0.instanceID) < ($1.role, $1.instanceID) }
        state.step = .instancesRunning
        try await observer.checkpoint(state, moment: .after, step: "instances running")
    }

    private func waitForSSH(
        _ spec: ClusterSpec, _ state: inout ProvisionState, _ shell: any RemoteShell,
        _ observer: any ProvisionObserver
    ) async throws {
        let installer = DCOSInstaller(spec: spec, shell: shell, observer: observer, logger: self.logger)
        let timeout = Duration.seconds(spec.install.sshTimeoutSeconds)
        let interval = Duration.seconds(spec.install.pollIntervalSeconds)
        let nodes = state.nodes
        let results = await forEachConcurrently(nodes, limit: spec.install.parallelism) { node -> String in
            let target = installer.target(node)
            if let key = node.hostKey {
                try await shell.pinHostKey(key, for: target)
                return key
            }
            return try await poll("SSH on \(target)", timeout: timeout, interval: interval) { () -> (String?, String) in
                do {
                    return (try await shell.learnHostKey(of: target, timeout: .seconds(30)), "")
                } catch let error as ProvisionError where error.code == .ssh {
                    return (nil, error.message)
                }
            }
        }
        var failures: [String] = []
        for (index, result) in results.enumerated() {
            switch result {
            case .success(let key): state.nodes[index].hostKey = key
            case .failure(let error): failures.append("\(nodes[index].privateIP): \(error)")
            }
        }
        guard failures.isEmpty else {
            throw ProvisionError(
                .ssh,
                "SSH did not come up on \(failures.count) of \(nodes.count) nodes: \(failures.joined(separator: "; "))")
        }
        state.step = .sshReady
        try await observer.checkpoint(state, moment: .after, step: "ssh")
    }
}
