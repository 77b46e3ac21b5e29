import AWSProvisioner
import Foundation
import Testing

/// Every EC2 action against moto_server with signature checking on. Each test works in its
/// own region (moto keeps state per region) and names things uniquely.
@Suite("EC2 client against moto_server", .timeLimit(.minutes(3)))
struct EC2ClientTests {
    static let publicKey =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOFKKGeFGCcejkH2hvh/9PHBO/66FE1FpYgLNTKmAQGX flotilla-test"

    @Test("ImportKeyPair, DescribeKeyPairs, DeleteKeyPair")
    func keyPairs() async throws {
        let ec2 = try TestStack.current().ec2(region: "us-east-2")
        let name = uniqueName("kp")
        let cluster = uniqueName("cluster")
        let imported = try await ec2.importKeyPair(
            name: name, publicKey: Self.publicKey,
            tags: [EC2Tag(key: "flotilla-cluster", value: cluster)])
        #expect(imported.keyName == name)
        #expect(imported.fingerprint != nil)

        let duplicate = await #expect(throws: EC2Error.self) {
            _ = try await ec2.importKeyPair(name: name, publicKey: Self.publicKey)
        }
        #expect(duplicate?.code == "InvalidKeyPair.Duplicate")
        #expect(duplicate?.retryClass == .never)

        let described = try await ec2.describeKeyPairs(names: [name], includePublicKey: true)
        #expect(described.map(\.keyName) == [name])
        #expect(
            described.first?.publicKey?.hasPrefix("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOFKKGeFGCcejkH2hvh") == true)
        let byTag = try await ec2.describeKeyPairs(filters: [.tag("flotilla-cluster", cluster)])
        #expect(byTag.map(\.keyName) == [name])

        try await ec2.deleteKeyPair(name: name)
        let missing = await #expect(throws: EC2Error.self) { _ = try await ec2.describeKeyPairs(names: [name]) }
        #expect(missing?.code == "InvalidKeyPair.NotFound")
        // Deleting a missing key pair succeeds, as in AWS.
        try await ec2.deleteKeyPair(name: name)
    }

    @Test("CreateSecurityGroup, AuthorizeSecurityGroupIngress, DescribeSecurityGroups, DeleteSecurityGroup")
    func securityGroups() async throws {
        let ec2 = try TestStack.current().ec2(region: "us-west-1")
        let name = uniqueName("sg")
        let cluster = uniqueName("cluster")
        let groupID = try await ec2.createSecurityGroup(
            name: name, description: "flotilla test",
            tags: [EC2Tag(key: "flotilla-cluster", value: cluster), EC2Tag(key: "managed-by", value: "flotilla")])
        #expect(groupID.hasPrefix("sg-"))

        try await ec2.authorizeSecurityGroupIngress(
            groupID: groupID,
            permissions: [
                .tcp(22, from: "0.0.0.0/0"),
                .tcp(8000, through: 8001, from: "127.0.0.0/8"),
            ])
        let duplicate = await #expect(throws: EC2Error.self) {
            try await ec2.authorizeSecurityGroupIngress(groupID: groupID, permissions: [.tcp(22, from: "0.0.0.0/0")])
        }
        #expect(duplicate?.code == "InvalidPermission.Duplicate")

        let groups = try await ec2.describeSecurityGroups(groupIDs: [groupID])
        let group = try #require(groups.first)
        #expect(groups.count == 1)
        #expect(group.groupName == name)
        #expect(group.tags[key: "flotilla-cluster"] == cluster)
        let ssh = try #require(group.ingress.first { $0.fromPort == 22 })
        #expect(ssh.ipProtocol == "tcp" && ssh.toPort == 22 && ssh.cidrRanges == ["0.0.0.0/0"])
        #expect(group.ingress.contains { $0.fromPort == 8000 && $0.toPort == 8001 && $0.cidrRanges == ["127.0.0.0/8"] })

        let byTag = try await ec2.describeSecurityGroups(filters: [.tag("flotilla-cluster", cluster)])
        #expect(byTag.map(\.groupID) == [groupID])
        let byName = try await ec2.describeSecurityGroups(groupNames: [name])
        #expect(byName.map(\.groupID) == [groupID])

        try await ec2.deleteSecurityGroup(groupID: groupID)
        let gone = await #expect(throws: EC2Error.self) {
            _ = try await ec2.describeSecurityGroups(groupIDs: [groupID])
        }
        #expect(gone?.code == "InvalidGroup.NotFound")
    }

    @Test("CreateVpc, CreateSubnet, DescribeVpcs, DescribeSubnets")
    func network() async throws {
        let ec2 = try TestStack.current().ec2(region: "eu-west-2")
        let cluster = uniqueName("net")
        let vpc = try await ec2.createVpc(
            cidrBlock: "127.0.0.0/16", tags: [EC2Tag(key: "flotilla-cluster", value: cluster)])
        #expect(vpc.vpcID.hasPrefix("vpc-"))
        #expect(vpc.cidrBlock == "127.0.0.0/16")
        let subnet = try await ec2.createSubnet(
            vpcID: vpc.vpcID, cidrBlock: "127.0.1.0/24", availabilityZone: "eu-west-2a",
            tags: [EC2Tag(key: "flotilla-cluster", value: cluster)])
        #expect(subnet.subnetID.hasPrefix("subnet-"))
        #expect(subnet.vpcID == vpc.vpcID)
        #expect(subnet.availabilityZone == "eu-west-2a")

        let vpcs = try await ec2.describeVpcs(vpcIDs: [vpc.vpcID])
        #expect(vpcs.map(\.cidrBlock) == ["127.0.0.0/16"])
        #expect(vpcs.first?.tags[key: "flotilla-cluster"] == cluster)
        let tagged = try await ec2.describeVpcs(filters: [.tag("flotilla-cluster", cluster)])
        #expect(tagged.map(\.vpcID) == [vpc.vpcID])
        let all = try await ec2.describeVpcs()
        #expect(all.contains { $0.isDefault })

        let subnets = try await ec2.describeSubnets(filters: [EC2Filter(name: "vpc-id", values: [vpc.vpcID])])
        #expect(subnets.map(\.subnetID) == [subnet.subnetID])
        #expect(subnets.first?.cidrBlock == "127.0.1.0/24")
        let byID = try await ec2.describeSubnets(subnetIDs: [subnet.subnetID])
        #expect(byID.first?.tags[key: "flotilla-cluster"] == cluster)
    }

    @Test("RunInstances, DescribeInstances, CreateTags, TerminateInstances")
    func instances() async throws {
        let ec2 = try TestStack.current().ec2(region: "eu-west-1")
        let cluster = uniqueName("cluster")
        let vpc = try await ec2.createVpc(cidrBlock: "127.0.0.0/16")
        let subnet = try await ec2.createSubnet(vpcID: vpc.vpcID, cidrBlock: "127.0.1.0/24")
        let groupID = try await ec2.createSecurityGroup(name: uniqueName("sg"), description: "nodes", vpcID: vpc.vpcID)
        let keyName = uniqueName("kp")
        _ = try await ec2.importKeyPair(name: keyName, publicKey: Self.publicKey)
        let token = uniqueName("token")
        let tags = [EC2Tag(key: "flotilla-cluster", value: cluster), EC2Tag(key: "managed-by", value: "flotilla")]

        let launched = try await ec2.runInstances(
            EC2RunInstancesRequest(
                imageID: "ami-12c6146b", instanceType: "m5.xlarge", count: 2, clientToken: token, keyName: keyName,
                subnetID: subnet.subnetID, securityGroupIDs: [groupID],
                rootVolume: EC2RootVolume(sizeGiB: 100),
                tagSpecifications: [
                    EC2TagSpecification(resourceType: "instance", tags: tags),
                    EC2TagSpecification(resourceType: "volume", tags: tags),
                ]))
        #expect(launched.count == 2)
        #expect(launched.allSatisfy { $0.clientToken == token && $0.keyName == keyName })
        #expect(launched.allSatisfy { $0.subnetID == subnet.subnetID && $0.securityGroupIDs == [groupID] })
        #expect(launched.allSatisfy { $0.tags[key: "flotilla-cluster"] == cluster })
        #expect(launched.allSatisfy { $0.publicIPAddress == nil })
        #expect(Set(launched.compactMap(\.privateIPAddress)) == ["127.0.1.4", "127.0.1.5"])
        let ids = launched.map(\.instanceID)

        let byTag = try await ec2.describeInstances(filters: [.tag("flotilla-cluster", cluster)], pageSize: 5)
        #expect(Set(byTag.map(\.instanceID)) == Set(ids))
        #expect(byTag.allSatisfy { $0.state == .running && $0.instanceType == "m5.xlarge" && $0.launchTime != nil })
        let byID = try await ec2.describeInstances(instanceIDs: [ids[0]])
        #expect(byID.map(\.instanceID) == [ids[0]])

        try await ec2.createTags(
            resourceIDs: ids, tags: [EC2Tag(key: "flotilla-expires", value: "2026-12-01T00:00:00Z")])
        let retagged = try await ec2.describeInstances(filters: [
            .tag("flotilla-expires", "2026-12-01T00:00:00Z"), .tag("flotilla-cluster", cluster),
        ])
        #expect(Set(retagged.map(\.instanceID)) == Set(ids))

        let changes = try await ec2.terminateInstances(instanceIDs: ids)
        #expect(Set(changes.map(\.instanceID)) == Set(ids))
        #expect(
            changes.allSatisfy {
                $0.previousState == .running && [.shuttingDown, .terminated].contains($0.currentState)
            })
        let running = try await ec2.describeInstances(filters: [
            .tag("flotilla-cluster", cluster),
            EC2Filter(name: "instance-state-name", values: ["running", "pending"]),
        ])
        #expect(running.isEmpty)
    }

    /// moto reports the subnet of an instance launched through a network interface, but
    /// neither its groups nor a public IP (it assigns those only from the subnet's
    /// MapPublicIpOnLaunch), so this checks that the interface form is accepted and placed.
    @Test("RunInstances with the public-IP choice on the network interface")
    func publicIPChoice() async throws {
        let ec2 = try TestStack.current().ec2(region: "eu-central-1")
        let vpc = try await ec2.createVpc(cidrBlock: "10.20.0.0/16")
        let subnet = try await ec2.createSubnet(vpcID: vpc.vpcID, cidrBlock: "10.20.1.0/24")
        let groupID = try await ec2.createSecurityGroup(name: uniqueName("sg"), description: "nodes", vpcID: vpc.vpcID)
        let launched = try await ec2.runInstances(
            EC2RunInstancesRequest(
                imageID: "ami-12c6146b", instanceType: "t3.micro", count: 1, clientToken: uniqueName("token"),
                subnetID: subnet.subnetID, securityGroupIDs: [groupID], associatePublicIPAddress: true))
        let instance = try #require(launched.first)
        #expect(instance.subnetID == subnet.subnetID)
        #expect(instance.privateIPAddress?.hasPrefix("10.20.1.") == true)
        _ = try await ec2.terminateInstances(instanceIDs: [instance.instanceID])
    }

    @Test("a wrong secret is rejected with AuthFailure and not retried")
    func wrongSecret() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            var wrong = stack.credentials
            wrong.secretAccessKey = "not-the-secret"
            let ec2 = stack.ec2(
                region: "us-east-1", endpoint: proxy.endpoint,
                credentials: stack.cache(StaticCredentialsProvider(wrong)))
            let error = await #expect(throws: EC2Error.self) { _ = try await ec2.describeVpcs() }
            #expect(error?.code == "AuthFailure")
            #expect(error?.httpStatus == 401)
            let seen = try await proxy.attempts("DescribeVpcs")
            #expect(seen == 1)
            // No secret in what the error says.
            #expect(!String(describing: error).contains("not-the-secret"))
        }
    }
}
