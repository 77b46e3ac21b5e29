import Foundation

/// What `RunInstances` should launch. `MinCount` and `MaxCount` are both `count`, so the
/// call launches all or nothing; `clientToken` makes a repeated call return the first
/// call's instances instead of launching more.
public struct EC2RunInstancesRequest: Sendable, Hashable {
    public var imageID: String
    public var instanceType: String
    public var count: Int
    /// The idempotency token, stored before the call (see DESIGN.md, invariant 1).
    public var clientToken: String
    public var keyName: String?
    public var subnetID: String?
    public var securityGroupIDs: [String]
    /// Whether instances get a public IP. `nil` keeps the subnet's default; a value needs `subnetID`.
    public var associatePublicIPAddress: Bool?
    public var rootVolume: EC2RootVolume?
    /// Usually one for `instance` and one for `volume`.
    public var tagSpecifications: [EC2TagSpecification]
    /// User data, sent base64-encoded.
    public var userData: String?
    /// Instance metadata: IMDSv2 only (`HttpTokens=required`) by default, with a hop limit of
    /// 2 so containers on the node (DC/OS runs many) can still get a token.
    public var metadataTokensRequired: Bool = true
    public var metadataHopLimit: Int = 2
    /// Only ask whether the call would be allowed (`DryRunOperation`) or refused
    /// (`UnauthorizedOperation`, limits); nothing is launched.
    public var dryRun: Bool = false

    public init(
        imageID: String,
        instanceType: String,
        count: Int,
        clientToken: String,
        keyName: String? = nil,
        subnetID: String? = nil,
        securityGroupIDs: [String] = [],
        associatePublicIPAddress: Bool? = nil,
        rootVolume: EC2RootVolume? = nil,
        tagSpecifications: [EC2TagSpecification] = [],
        userData: String? = nil
    ) {
        self.imageID = imageID
        self.instanceType = instanceType
        self.count = count
        self.clientToken = clientToken
        self.keyName = keyName
        self.subnetID = subnetID
        self.securityGroupIDs = securityGroupIDs
        self.associatePublicIPAddress = associatePublicIPAddress
        self.rootVolume = rootVolume
        self.tagSpecifications = tagSpecifications
        self.userData = userData
    }

    /// The Query API parameters `RunInstances` is sent with.
    public var queryParameters: [(String, String)] {
        var parameters = EC2QueryParameters()
        parameters.add("ImageId", self.imageID)
        parameters.add("InstanceType", self.instanceType)
        parameters.add("MinCount", self.count)
        parameters.add("MaxCount", self.count)
        parameters.add("ClientToken", self.clientToken)
        parameters.add("KeyName", self.keyName)
        if let associate = self.associatePublicIPAddress {
            // The public-IP choice exists only on a network interface, which then carries
            // the subnet and the groups.
            parameters.add("NetworkInterface.1.DeviceIndex", 0)
            parameters.add("NetworkInterface.1.AssociatePublicIpAddress", associate)
            parameters.add("NetworkInterface.1.SubnetId", self.subnetID)
            parameters.addList("NetworkInterface.1.SecurityGroupId", self.securityGroupIDs)
        } else {
            parameters.add("SubnetId", self.subnetID)
            parameters.addList("SecurityGroupId", self.securityGroupIDs)
        }
        if let root = self.rootVolume {
            parameters.add("BlockDeviceMapping.1.DeviceName", root.deviceName)
            parameters.add("BlockDeviceMapping.1.Ebs.VolumeSize", root.sizeGiB)
            parameters.add("BlockDeviceMapping.1.Ebs.VolumeType", root.volumeType)
            parameters.add("BlockDeviceMapping.1.Ebs.DeleteOnTermination", root.deleteOnTermination)
        }
        parameters.addTagSpecifications(self.tagSpecifications)
        parameters.add("UserData", self.userData.map { Data($0.utf8).base64EncodedString() })
        parameters.add("MetadataOptions.HttpEndpoint", "enabled")
        parameters.add("MetadataOptions.HttpTokens", self.metadataTokensRequired ? "required" : "optional")
        parameters.add("MetadataOptions.HttpPutResponseHopLimit", self.metadataHopLimit)
        if self.dryRun { parameters.add("DryRun", true) }
        return parameters.items
    }
}
