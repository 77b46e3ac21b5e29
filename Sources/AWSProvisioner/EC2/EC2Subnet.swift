/// A subnet as `CreateSubnet` and `DescribeSubnets` report it.
public struct EC2Subnet: Sendable, Hashable {
    public var subnetID: String
    public var vpcID: String
    public var cidrBlock: String
    public var availabilityZone: String?
    public var state: String?
    public var mapPublicIPOnLaunch: Bool
    public var tags: [EC2Tag]

    init(xml: XMLNode) {
        subnetID = xml.string("subnetId") ?? ""
        vpcID = xml.string("vpcId") ?? ""
        cidrBlock = xml.string("cidrBlock") ?? ""
        availabilityZone = xml.string("availabilityZone")
        state = xml.string("state")
        mapPublicIPOnLaunch = xml.bool("mapPublicIpOnLaunch") ?? false
        tags = EC2Tag.list(xml)
    }
}
