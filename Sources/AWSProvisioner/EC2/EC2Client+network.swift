extension EC2Client {
    /// Creates a VPC.
    public func createVpc(cidrBlock: String, tags: [EC2Tag] = []) async throws -> EC2Vpc {
        var parameters = EC2QueryParameters()
        parameters.add("CidrBlock", cidrBlock)
        parameters.addTagSpecification(for: "vpc", tags)
        return EC2Vpc(xml: try await send("CreateVpc", parameters).required("vpc", answering: "CreateVpc"))
    }

    /// Creates a subnet in `vpcID`.
    public func createSubnet(vpcID: String, cidrBlock: String, availabilityZone: String? = nil, tags: [EC2Tag] = [])
        async throws -> EC2Subnet
    {
        var parameters = EC2QueryParameters()
        parameters.add("VpcId", vpcID)
        parameters.add("CidrBlock", cidrBlock)
        parameters.add("AvailabilityZone", availabilityZone)
        parameters.addTagSpecification(for: "subnet", tags)
        return EC2Subnet(xml: try await send("CreateSubnet", parameters).required("subnet", answering: "CreateSubnet"))
    }

    /// VPCs by id and/or filter.
    public func describeVpcs(vpcIDs: [String] = [], filters: [EC2Filter] = []) async throws -> [EC2Vpc] {
        var parameters = EC2QueryParameters()
        parameters.addList("VpcId", vpcIDs)
        parameters.addFilters(filters)
        return try await describeAll("DescribeVpcs", parameters) { $0.items("vpcSet").map(EC2Vpc.init(xml:)) }
    }

    /// Subnets by id and/or filter.
    public func describeSubnets(subnetIDs: [String] = [], filters: [EC2Filter] = []) async throws -> [EC2Subnet] {
        var parameters = EC2QueryParameters()
        parameters.addList("SubnetId", subnetIDs)
        parameters.addFilters(filters)
        return try await describeAll("DescribeSubnets", parameters) { $0.items("subnetSet").map(EC2Subnet.init(xml:)) }
    }
}
