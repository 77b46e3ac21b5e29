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
}
