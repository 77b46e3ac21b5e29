import Foundation

/// An instance as `RunInstances` and `DescribeInstances` report it.
public struct EC2Instance: Sendable, Hashable {
    public var instanceID: String
    public var imageID: String?
    public var instanceType: String?
    public var state: EC2InstanceState
    public var privateIPAddress: String?
    public var publicIPAddress: String?
    public var subnetID: String?
    public var vpcID: String?
    public var keyName: String?
    public var clientToken: String?
    public var launchTime: Date?
    public var availabilityZone: String?
    public var securityGroupIDs: [String]
    public var tags: [EC2Tag]
    /// `required` when the instance answers IMDSv2 (token) requests only.
    public var metadataHTTPTokens: String?
    /// Why the instance changed state, e.g. `Server.InsufficientInstanceCapacity` for one that
    /// went from pending to terminated.
    public var stateReasonCode: String?
    public var stateReasonMessage: String?

    init(xml: XMLNode) {
        instanceID = xml.string("instanceId") ?? ""
        imageID = xml.string("imageId")
        instanceType = xml.string("instanceType")
        state = EC2InstanceState(xml.string("instanceState/name") ?? "unknown")
        // Read at this level only: network interfaces repeat privateIpAddress deeper down.
        privateIPAddress = xml.string("privateIpAddress")
        publicIPAddress = xml.string("ipAddress")
        subnetID = xml.string("subnetId")
        vpcID = xml.string("vpcId")
        keyName = xml.string("keyName")
        clientToken = xml.string("clientToken")
        launchTime = xml.string("launchTime").flatMap(AWSTimestamp.parse)
        availabilityZone = xml.string("placement/availabilityZone")
        securityGroupIDs = xml.items("groupSet").compactMap { $0.string("groupId") }
        tags = EC2Tag.list(xml)
        metadataHTTPTokens = xml.string("metadataOptions/httpTokens")
        stateReasonCode = xml.string("stateReason/code")
        stateReasonMessage = xml.string("stateReason/message")
    }
}
