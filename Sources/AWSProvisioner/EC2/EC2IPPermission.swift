/// One ingress rule (`IpPermissions.N`): a protocol and port range open to CIDR ranges
/// and/or other security groups.
public struct EC2IPPermission: Sendable, Hashable {
    /// `tcp`, `udp`, `icmp` or `-1` for everything.
    public var ipProtocol: String
    public var fromPort: Int?
    public var toPort: Int?
    public var cidrRanges: [String]
    public var sourceGroupIDs: [String]

    public init(
        ipProtocol: String, fromPort: Int? = nil, toPort: Int? = nil, cidrRanges: [String] = [],
        sourceGroupIDs: [String] = []
    ) {
        self.ipProtocol = ipProtocol
        self.fromPort = fromPort
        self.toPort = toPort
        self.cidrRanges = cidrRanges
        self.sourceGroupIDs = sourceGroupIDs
    }

    /// TCP `port` (or `port...toPort`) from `cidr`.
    public static func tcp(_ port: Int, through toPort: Int? = nil, from cidr: String) -> EC2IPPermission {
        EC2IPPermission(ipProtocol: "tcp", fromPort: port, toPort: toPort ?? port, cidrRanges: [cidr])
    }

    init(xml: XMLNode) {
        ipProtocol = xml.string("ipProtocol") ?? "-1"
        fromPort = xml.int("fromPort")
        toPort = xml.int("toPort")
        cidrRanges = xml.items("ipRanges").compactMap { $0.string("cidrIp") }
        sourceGroupIDs = xml.items("groups").compactMap { $0.string("groupId") }
    }

    func parameters(prefix: String) -> [(String, String)] {
        var result = [("\(prefix).IpProtocol", ipProtocol)]
        if let fromPort { result.append(("\(prefix).FromPort", String(fromPort))) }
        if let toPort { result.append(("\(prefix).ToPort", String(toPort))) }
        for (index, cidr) in cidrRanges.enumerated() {
            result.append(("\(prefix).IpRanges.\(index + 1).CidrIp", cidr))
        }
        for (index, group) in sourceGroupIDs.enumerated() {
            // The Query API names the member `Groups` (botocore: UserIdGroupPairs, locationName "groups").
            result.append(("\(prefix).Groups.\(index + 1).GroupId", group))
        }
        return result
    }
}
