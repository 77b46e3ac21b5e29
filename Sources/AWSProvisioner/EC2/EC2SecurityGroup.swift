/// A security group as `DescribeSecurityGroups` reports it.
public struct EC2SecurityGroup: Sendable, Hashable {
    public var groupID: String
    public var groupName: String
    public var description: String
    public var vpcID: String?
    public var ingress: [EC2IPPermission]
    public var tags: [EC2Tag]

    init(xml: XMLNode) {
        groupID = xml.string("groupId") ?? ""
        groupName = xml.string("groupName") ?? ""
        description = xml.string("groupDescription") ?? ""
        vpcID = xml.string("vpcId")
        ingress = xml.items("ipPermissions").map(EC2IPPermission.init(xml:))
        tags = EC2Tag.list(xml)
    }
}
