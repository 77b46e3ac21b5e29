/// A VPC as `CreateVpc` and `DescribeVpcs` report it.
public struct EC2Vpc: Sendable, Hashable {
    public var vpcID: String
    public var cidrBlock: String
    public var state: String?
    public var isDefault: Bool
    public var tags: [EC2Tag]

    init(xml: XMLNode) {
        vpcID = xml.string("vpcId") ?? ""
        cidrBlock = xml.string("cidrBlock") ?? ""
        state = xml.string("state")
        isDefault = xml.bool("isDefault") ?? false
        tags = EC2Tag.list(xml)
    }
}
