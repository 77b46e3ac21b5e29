import AWSProvisioner
import Foundation
import TestSupport
import Testing

/// EC2 as real accounts see it: images with their own root devices, accounts without a
/// default VPC, zones that do not offer a type or run out of capacity, and eventual
/// consistency. The fault proxy in front of the emulator makes RunInstances as strict as
/// EC2 (token idempotency, unknown images, unoffered types, root volumes) and injects the
/// faults.
@Suite("Placement: images, zones, capacity fallback, eventual consistency", .timeLimit(.minutes(10)))
struct PlacementTests {
    /// Provisioning refused before anything exists: no mutation was attempted and no key
    /// pair of the cluster's name exists.
    func expectRefused(_ spec: ClusterSpec, region: String? = nil, endpoint: URL? = nil, _ words: String...)
        async throws -> Duration
    {
        let cluster = try LoopbackCluster.current()
        let observer = RecordingObserver()
        let started = ContinuousClock.now
        let error = await #expect(throws: ProvisionError.self) {
            _ = try await cluster.provisioner(endpoint: endpoint, region: region).provision(spec, observer: observer)
        }
        let took = ContinuousClock.now - started
        #expect(error?.code == .invalidSpec, "\(String(describing: error))")
        for word in words { #expect(error?.message.contains(word) == true, "'\(word)' in: \(error?.message ?? "-")") }
        #expect(observer.mutations == 0, "nothing may be created before the refusal")
        let keys = try await cluster.stack.ec2(region: region).describeKeyPairs(filters: [
            .tag("cluster", spec.clusterID)
        ])
        #expect(keys.isEmpty)
        return took
    }

    @Test(
        "unknown image, root under snapshot, wrong architecture, no default VPC, no zone with the type: refused upfront"
    )
    func refusedBeforeSpend() async throws {
        let cluster = try LoopbackCluster.current()
        var unknown = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        unknown.ami = "ami-0123456789abcdef0"
        _ = try await self.expectRefused(unknown, "ami-0123456789abcdef0", "does not exist")

        var small = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        small.rootVolumeGiB = 8
        _ = try await self.expectRefused(small, "8 GiB", "15 GiB snapshot", "at least 15")

        var arm = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        arm.instanceType = "m6g.large"
        _ = try await self.expectRefused(arm, "x86_64", "m6g.large")

        var noVPC = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        noVPC.region = cluster.noVPCRegion
        noVPC.subnetIDs = []
        // At once: the image check, then one DescribeVpcs, and no retry (the time is printed;
        // a quiet machine takes about 0.1 s).
        try await FaultProxy.with(upstream: cluster.stack.endpoint) { proxy in
            let took = try await self.expectRefused(
                noVPC, region: cluster.noVPCRegion, endpoint: proxy.endpoint,
                "no default VPC", "set FLOTILLA_SUBNET_ID")
            print("measured: an account without a default VPC is refused in \(took)")
            let stats = try await proxy.stats()
            #expect(
                stats["DescribeVpcs"]?.attempts == 1 && stats["DescribeSubnets"] == nil,
                "\(stats.mapValues(\.attempts))")
        }

        var zoneD = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        zoneD.subnetIDs = [cluster.subnetD]
        _ = try await self.expectRefused(zoneD, "offers both m4.large")
    }

    @Test(
        "a /dev/xvda image gets its root resized: one volume per instance (AWS CLI); a /dev/sda1 mapping adds a second"
    )
    func xvdaRootResized() async throws {
        let cluster = try LoopbackCluster.current()
        try await FaultProxy.with(upstream: cluster.stack.endpoint) { proxy in
            var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
            spec.ami = cluster.xvdaImage
            let provisioner = cluster.provisioner(endpoint: proxy.endpoint)
            let state = try await provisioner.provision(spec, observer: RecordingObserver())
            #expect(state.placement?.rootDeviceName == "/dev/xvda")
            for node in state.nodes {
                let volumes = try await Self.volumesWithCLI(cluster, instanceID: node.instanceID)
                #expect(
                    volumes.count == 1 && volumes.first?.device == "/dev/xvda"
                        && volumes.first?.size == spec.rootVolumeGiB,
                    "\(node.instanceID): \(volumes)")
            }
            await cluster.reap(state)
            try await provisioner.teardown(spec, state: state, settings: .fast, observer: RecordingObserver())

            // The stand-in is strict: the old fixed /dev/sda1 mapping leaves the 15 GiB root
            // and adds an empty 150 GiB volume, as EC2 does.
            let ec2 = cluster.stack.ec2(endpoint: proxy.endpoint)
            let launched = try await ec2.runInstances(
                EC2RunInstancesRequest(
                    imageID: cluster.xvdaImage, instanceType: "m4.large", count: 1, clientToken: uniqueName("sda1"),
                    rootVolume: EC2RootVolume(deviceName: "/dev/sda1", sizeGiB: 150)))
            let id = try #require(launched.first?.instanceID)
            let volumes = try await Self.volumesWithCLI(cluster, instanceID: id)
            _ = try await ec2.terminateInstances(instanceIDs: [id])
            #expect(
                volumes.sorted { $0.device < $1.device }.map { "\($0.device) \($0.size)" } == [
                    "/dev/sda1 150", "/dev/xvda 15",
                ], "\(volumes)")
        }
    }

    @Test(
        "capacity: fall back by zone, then type; failed launches are cleaned up; the next cluster skips the failed zone"
    )
    func capacityFallback() async throws {
        let cluster = try LoopbackCluster.current()
        try await FaultProxy.with(upstream: cluster.stack.endpoint) { proxy in
            var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
            // Zone d does not offer m4.large (skipped when planning); b then a, for m4.large then m5.large.
            spec.subnetIDs = [cluster.subnetD, cluster.subnetB, cluster.subnetID]
            spec.fallbackInstanceTypes = ["m5.large"]
            let name = spec.resourceName
            try await proxy.add(
                // b, m4.large: the master finds no capacity after the bootstrap node launched.
                .init(
                    action: "RunInstances", status: 500, code: "InsufficientInstanceCapacity",
                    message:
                        "We currently do not have sufficient m4.large capacity in the Availability Zone you requested",
                    match: "ClientToken=\(name)-master&"),
                // a, m4.large: the same.
                .init(
                    action: "RunInstances", status: 500, code: "InsufficientInstanceCapacity",
                    message: "no m4.large capacity",
                    match: "ClientToken=\(name)-master-1&"),
                // b, m5.large: the bootstrap instance goes from pending to terminated.
                .init(
                    action: "RunInstances", match: "ClientToken=\(name)-bootstrap-2&",
                    terminate: "Server.InsufficientInstanceCapacity"))
            let memory = CapacityMemory()
            let provisioner = cluster.provisioner(endpoint: proxy.endpoint, capacity: memory)
            let observer = RecordingObserver()
            let started = ContinuousClock.now
            let state = try await provisioner.provision(spec, observer: observer)
            print(
                "measured: provisioning with 3 capacity fallbacks took \(ContinuousClock.now - started); "
                    + observer.timings.joined(separator: "; "))

            #expect(
                state.fallbacks == [
                    "us-west-2b m4.large: InsufficientInstanceCapacity",
                    "us-west-2a m4.large: InsufficientInstanceCapacity",
                    "us-west-2b m4.xlarge: Server.InsufficientInstanceCapacity",
                ])
            #expect(state.placement?.availabilityZone == "us-west-2a" && state.placement?.instanceType == "m5.large")
            #expect(state.nodes.first { $0.role == .master }?.instanceType == "m5.large")
            #expect(state.nodes.first { $0.role == .bootstrap }?.instanceType == "m4.xlarge")
            let fallbackLabels = observer.labels.filter { $0.hasPrefix("before fallback: ") }
            #expect(fallbackLabels.count == 3, "\(observer.labels)")
            // Nothing left anywhere but the cluster's final instances.
            let live = try await cluster.liveInstances(spec)
            #expect(
                Set(live.map(\.instanceID)) == Set(state.instanceIDs) && live.count == 2,
                "\(live.map { "\($0.instanceID) \($0.subnetID ?? "-") \($0.state)" })")

            // The next cluster skips what this one found full.
            var next = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
            next.subnetIDs = spec.subnetIDs
            next.fallbackInstanceTypes = spec.fallbackInstanceTypes
            let planOnly = RecordingObserver(interruptAt: 1)
            await #expect(throws: RecordingObserver.Interrupted.self) {
                _ = try await provisioner.provision(next, observer: planOnly)
            }
            #expect(planOnly.labels == ["after plan"])
            #expect(
                planOnly.saved?.placement?.availabilityZone == "us-west-2a"
                    && planOnly.saved?.placement?.instanceType == "m5.large",
                "\(String(describing: planOnly.saved?.placement))")

            await cluster.reap(state)
            try await provisioner.teardown(spec, state: state, settings: .fast, observer: RecordingObserver())
            #expect(try await cluster.liveInstances(spec).isEmpty)
        }
    }

    @Test(
        "a fallback cut just before or after its checkpoint resumes ready in the next zone, nothing left in the first"
    )
    func fallbackResumes() async throws {
        let cluster = try LoopbackCluster.current()
        try await FaultProxy.with(upstream: cluster.stack.endpoint) { proxy in
            let failures = await forEachLimited([true, false], limit: 2) { stored -> String? in
                var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
                spec.subnetIDs = [cluster.subnetB, cluster.subnetID]
                do {
                    try await proxy.add(
                        .init(
                            action: "RunInstances", times: 3, status: 500, code: "InsufficientInstanceCapacity",
                            message: "no m4.large capacity", match: "ClientToken=\(spec.resourceName)-master&"))
                    let interrupted = RecordingObserver(interruptOn: "fallback", storeInterrupted: stored)
                    do {
                        _ = try await cluster.provisioner(endpoint: proxy.endpoint).provision(
                            spec, observer: interrupted)
                        return "stored \(stored): the fallback did not interrupt"
                    } catch is RecordingObserver.Interrupted {}
                    let resumed = try await cluster.provisioner(endpoint: proxy.endpoint)
                        .provision(spec, from: interrupted.saved, observer: RecordingObserver())
                    let live = try await cluster.liveInstances(spec)
                    await cluster.reap(resumed)
                    try await cluster.provisioner().teardown(
                        spec, state: resumed, settings: .fast, observer: RecordingObserver())
                    guard resumed.placement?.subnetID == cluster.subnetID, live.count == 2,
                        Set(live.map(\.instanceID)) == Set(resumed.instanceIDs),
                        !live.contains(where: { $0.subnetID == cluster.subnetB })
                    else {
                        let instances = live.map { "\($0.instanceID) \($0.subnetID ?? "-")" }
                        return "stored \(stored): placement \(String(describing: resumed.placement)), live \(instances)"
                    }
                    return nil
                } catch {
                    return "stored \(stored): \(error)"
                }
            }
            #expect(failures.compactMap { $0 }.isEmpty, "\(failures.compactMap { $0 })")
        }
    }

    @Test(
        "NotFound after create, a lost RunInstances answer, DependencyViolation: waited out; one attempt, no duplicate"
    )
    func eventualConsistency() async throws {
        let cluster = try LoopbackCluster.current()
        try await FaultProxy.with(upstream: cluster.stack.endpoint) { proxy in
            let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
            try await proxy.add(
                .init(
                    action: "AuthorizeSecurityGroupIngress", times: 2, status: 400, code: "InvalidGroup.NotFound",
                    message: "The security group does not exist"),
                .init(
                    action: "RunInstances", times: 2, status: 400, code: "InvalidKeyPair.NotFound",
                    message: "The key pair does not exist", match: "ClientToken=\(spec.resourceName)-bootstrap&"),
                // The master launch happens, but its answer is lost: the retry replays the token.
                .init(
                    action: "RunInstances", status: 503, code: "ServiceUnavailable", message: "answer lost",
                    match: "ClientToken=\(spec.resourceName)-master&", forward: true),
                .init(
                    action: "DescribeInstances", times: 3, status: 400, code: "InvalidInstanceID.NotFound",
                    message: "The instance ID does not exist", match: "InstanceId.1="),
                .init(
                    action: "DeleteSecurityGroup", times: 2, status: 400, code: "DependencyViolation",
                    message: "resource has a dependent object"))
            let provisioner = cluster.provisioner(endpoint: proxy.endpoint)
            let observer = RecordingObserver()
            let started = ContinuousClock.now
            let state = try await provisioner.provision(spec, observer: observer)
            print("measured: provisioning through 8 eventual-consistency faults took \(ContinuousClock.now - started)")
            #expect(state.step == .ready)
            let stats = try await proxy.stats()
            #expect(stats["AuthorizeSecurityGroupIngress"]?.faulted == 2 && stats["DescribeInstances"]?.faulted == 3)
            #expect(stats["RunInstances"]?.faulted == 3)
            #expect(observer.progress.contains { $0.contains("InvalidKeyPair.NotFound") })
            let live = try await cluster.liveInstances(spec)
            #expect(
                live.count == 2 && Set(live.map(\.instanceID)) == Set(state.instanceIDs),
                "the replayed launch made no second master")
            await cluster.reap(state)
            let report = try await provisioner.teardown(
                spec, state: state, settings: .fast, observer: RecordingObserver())
            #expect(report.leftovers.isEmpty)
            #expect(try await proxy.stats()["DeleteSecurityGroup"]?.faulted == 2)
        }
    }

    @Test("HttpTokens follows the image's ImdsSupport, or the operator; an image without ENA refuses Nitro types")
    func metadataTokensAndENA() async throws {
        let cluster = try LoopbackCluster.current()
        // Images no other test launches (Ubuntu 16.04 and 14.04 in the emulator's catalogue).
        try cluster.describeImage("ami-785db401", imdsSupport: "v2.0")
        try cluster.describeImage("ami-1e749f67", enaSupport: false)
        var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        let provisioner = cluster.provisioner()
        func tokens(_ plan: ClusterPlan) -> [String] {
            plan.launches.flatMap {
                $0.request.queryParameters.filter { $0.0 == "MetadataOptions.HttpTokens" }.map(\.1)
            }
        }
        let plain = try await provisioner.plan(spec)
        #expect(plain.state.placement?.metadataTokens == "optional")
        #expect(tokens(plain) == ["optional", "optional"], "the image declares no ImdsSupport")
        spec.metadataTokens = .required
        #expect(tokens(try await provisioner.plan(spec)) == ["required", "required"], "the operator asks for tokens")
        spec.metadataTokens = nil
        spec.ami = "ami-785db401"
        #expect(tokens(try await provisioner.plan(spec)) == ["required", "required"], "ImdsSupport v2.0")

        spec.ami = "ami-1e749f67"
        spec.instanceType = "m5.xlarge"
        let refused = await #expect(throws: ProvisionError.self) { try await provisioner.plan(spec) }
        #expect(refused?.code == .invalidSpec)
        #expect(refused?.message.contains("m5.xlarge needs the ENA driver") == true, "\(String(describing: refused))")
        spec.instanceType = "m4.large"
        #expect(tokens(try await provisioner.plan(spec)) == ["optional", "optional"], "m4 needs no ENA")
        #expect(ClusterProvisioner.requiresENA("c5n.18xlarge") && ClusterProvisioner.requiresENA("t3a.micro"))
        #expect(!ClusterProvisioner.requiresENA("m4.16xlarge") && !ClusterProvisioner.requiresENA("t2.large"))
    }

    @Test("a Marketplace image this account has not subscribed to is refused before anything is created")
    func marketplaceNotSubscribed() async throws {
        let cluster = try LoopbackCluster.current()
        // An image no other test launches (a Deep Learning AMI in the emulator's catalogue).
        let image = "ami-999844e0"
        let product = "aw0evgkw8e5c1q413zgy5pjce"
        try cluster.describeImage(image, marketplace: (product, false))
        var spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        spec.ami = image
        let provisioner = cluster.provisioner()
        let refused = await #expect(throws: ProvisionError.self) { try await provisioner.plan(spec) }
        #expect(refused?.code == .invalidSpec)
        #expect(
            refused?.message.contains("Marketplace product \(product)") == true
                && refused?.message.contains("OptInRequired") == true
                && refused?.message.contains("marketplace/pp?sku=\(product)") == true,
            "\(String(describing: refused))")

        // A worker's run stops at the same point: not retried, and nothing was created.
        let observer = RecordingObserver()
        let failed = await #expect(throws: ProvisionError.self) {
            try await provisioner.provision(spec, observer: observer)
        }
        #expect(failed?.isRetryable == false && failed?.code == .invalidSpec, "\(String(describing: failed))")
        #expect(observer.mutations == 0, "nothing was created")
        #expect(observer.saved?.keyPairName == nil && observer.saved?.launches.isEmpty != false)

        // Once subscribed, the same image plans (the dry-run launch says DryRunOperation).
        try cluster.describeImage(image, marketplace: (product, true))
        let plan = try await provisioner.plan(spec)
        #expect(plan.launches.allSatisfy { $0.request.imageID == image })
    }

    @Test("a refusal retrying cannot change fails the attempt at once, naming the call and the code")
    func refusalFailsAtOnce() async throws {
        let cluster = try LoopbackCluster.current()
        try await FaultProxy.with(upstream: cluster.stack.endpoint) { proxy in
            try await proxy.add(
                .init(
                    action: "RunInstances", times: 1, status: 403, code: "UnauthorizedOperation",
                    message: "You are not authorized to perform this operation."))
            let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
            let provisioner = cluster.provisioner(endpoint: proxy.endpoint)
            let observer = RecordingObserver()
            let error = await #expect(throws: ProvisionError.self) {
                try await provisioner.provision(spec, observer: observer)
            }
            #expect(error?.isRetryable == false, "a job would not try again: \(String(describing: error))")
            #expect(
                error?.message.contains("RunInstances: UnauthorizedOperation") == true, "\(String(describing: error))")
            let stats = try await proxy.stats()
            #expect(stats["RunInstances"]?.attempts == 1, "the transport did not retry it either: \(stats)")
            if let saved = observer.saved {
                let report = try await provisioner.teardown(
                    spec, state: saved, settings: .fast, observer: RecordingObserver())
                #expect(report.leftovers.isEmpty)
            }
        }
    }

    @Test(
        "plan dry run (DryRun=true): allowed calls get DryRunOperation, refusals are reported per call; nothing created"
    )
    func dryRunRefusals() async throws {
        let cluster = try LoopbackCluster.current()
        try await FaultProxy.with(upstream: cluster.stack.endpoint) { proxy in
            // The emulator answers DryRunOperation before it looks at permissions; AWS checks
            // them first. A role without ec2:RunInstances, as AWS would answer it:
            try await proxy.add(
                .init(
                    action: "RunInstances", times: 10, status: 403, code: "UnauthorizedOperation",
                    message: "You are not authorized to perform this operation.", match: "DryRun=true"))
            let spec = cluster.spec(masters: 1, agents: 1, publicAgents: 0)
            let provisioner = cluster.provisioner(endpoint: proxy.endpoint)
            let plan = try await provisioner.plan(spec)
            #expect(plan.launches.map(\.role) == [.bootstrap, .master, .privateAgent])
            #expect(
                plan.launches.allSatisfy {
                    $0.request.queryParameters.contains { $0 == ("BlockDeviceMapping.1.DeviceName", "/dev/sda1") }
                })
            let outcomes = await provisioner.dryRun(plan, spec: spec)
            #expect(outcomes.count == 5, "\(outcomes)")
            #expect(
                outcomes.filter(\.allowed).map { $0.call.split(separator: " ")[0] } == [
                    "ImportKeyPair", "CreateSecurityGroup",
                ], "\(outcomes)")
            #expect(
                outcomes.filter { !$0.allowed }.allSatisfy {
                    $0.code == "UnauthorizedOperation" && $0.description.contains("REFUSED")
                },
                "\(outcomes)")
            let stats = try await proxy.stats()
            #expect(stats["RunInstances"]?.faulted == 3 && stats["ImportKeyPair"]?.attempts == 1)
            #expect(try await cluster.liveInstances(spec).isEmpty)
            #expect(
                try await cluster.stack.ec2().describeKeyPairs(filters: [
                    EC2Filter(name: "key-name", values: [spec.resourceName])
                ]).isEmpty)
        }
    }

    @Test(
        "teardown's last check lists every kind Flotilla tags (instances, volumes, ENIs, groups, key pairs) by tag"
    )
    func leftoversByTag() async throws {
        let cluster = try LoopbackCluster.current()
        let spec = cluster.spec(masters: 1, agents: 0, publicAgents: 0)
        let tags = "ResourceType=%@,Tags=[{Key=cluster,Value=\(spec.clusterID)}]"
        let volume = try await Self.cli(
            cluster,
            [
                "ec2", "create-volume", "--availability-zone", "\(cluster.stack.region)a", "--size", "1",
                "--tag-specifications", String(format: tags, "volume"),
            ])
        let interface = try await Self.cli(
            cluster,
            [
                "ec2", "create-network-interface", "--subnet-id", cluster.subnetB,
                "--tag-specifications", String(format: tags, "network-interface"),
            ])
        let volumeID = try #require(volume["VolumeId"] as? String)
        let interfaceID = try #require(
            (interface["NetworkInterface"] as? [String: Any])?["NetworkInterfaceId"] as? String)
        let found = try await cluster.provisioner().leftovers(spec, state: nil)
        _ = try await Self.cli(cluster, ["ec2", "delete-volume", "--volume-id", volumeID])
        _ = try await Self.cli(cluster, ["ec2", "delete-network-interface", "--network-interface-id", interfaceID])
        #expect(
            found.contains { $0.hasPrefix("volume \(volumeID)") }
                && found.contains { $0.hasPrefix("network interface \(interfaceID)") },
            "\(found)")
        #expect(try await cluster.provisioner().leftovers(spec, state: nil).isEmpty)
    }

    struct Volume: CustomStringConvertible {
        var device: String
        var size: Int
        var description: String { "\(device) \(size) GiB" }
    }

    /// The volumes attached to an instance, as `aws ec2 describe-volumes` lists them.
    static func volumesWithCLI(_ cluster: LoopbackCluster, instanceID: String) async throws -> [Volume] {
        let object = try await Self.cli(
            cluster, ["ec2", "describe-volumes", "--filters", "Name=attachment.instance-id,Values=\(instanceID)"])
        guard let volumes = object["Volumes"] as? [[String: Any]] else {
            throw FixtureError(message: "aws ec2 describe-volumes answered without Volumes: \(object)")
        }
        return volumes.map { volume in
            let attachment = (volume["Attachments"] as? [[String: Any]])?.first {
                $0["InstanceId"] as? String == instanceID
            }
            return Volume(device: attachment?["Device"] as? String ?? "?", size: volume["Size"] as? Int ?? -1)
        }
    }

    /// Runs the AWS CLI against the emulator as the test user; its JSON answer.
    static func cli(_ cluster: LoopbackCluster, _ arguments: [String]) async throws -> [String: Any] {
        let environment = ProcessInfo.processInfo.environment
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            [
                "AWS_ACCESS_KEY_ID=\(environment["FLOTILLA_TEST_AWS_ACCESS_KEY_ID"] ?? "")",
                "AWS_SECRET_ACCESS_KEY=\(environment["FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY"] ?? "")",
                "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
                "aws", "--endpoint-url", cluster.stack.endpoint.absoluteString,
                "--region", cluster.stack.region, "--output", "json",
            ] + arguments
        let run = try await process.runToCompletion()
        let data = run.standardOutput
        guard run.status == 0 else {
            throw FixtureError(
                message:
                    "aws \(arguments.prefix(2).joined(separator: " ")) failed (exit \(run.status)): "
                    + String(decoding: data, as: UTF8.self))
        }
        if data.isEmpty { return [:] }
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FixtureError(
                message: "aws \(arguments.prefix(2).joined(separator: " ")) did not answer a JSON object")
        }
        return object
    }
}
