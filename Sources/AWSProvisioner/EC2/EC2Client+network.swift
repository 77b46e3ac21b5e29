extension EC2Client {
    /// Creates a VPC.
    public func createVpc(cidrBlock: String, tags: [EC2Tag] = []) async throws -> EC2Vpc {
        var parameters = EC2QueryParameters()
        parameters.add("CidrBlock", cidrBlock)
        if !tags.isEmpty { parameters.addTagSpecifications([EC2TagSpecification(resourceType: "vpc", tags: tags)]) }
        let root = try await send("CreateVpc", parameters)
        guard let vpc = root.child("vpc") else {
            throw EC2Error(code: EC2Error.Code.invalidResponse, message: "CreateVpc answer lacks vpc")
        }
        return EC2Vpc(xml: vpc)
    }

    /// Creates a subnet in `vpcID`.
    public func createSubnet(vpcID: String, cidrBlock: String, availabilityZone: String? = nil, tags: [EC2Tag] = [])
        async throws -> EC2Subnet
    {
        var parameters = EC2QueryParameters()
        parameters.add("VpcId", vpcID)
        parameters.add("CidrBlock", cidrBlock)
        parameters.add("AvailabilityZone", availabilityZone)
        if !tags.isEmpty { parameters.addTagSpecifications([EC2TagSpecification(resourceType: "subnet", tags: tags)]) }
        let root = try await send("CreateSubnet", parameters)
        guard let subnet = root.child("subnet") else {
            throw EC2Error(code: EC2Error.Code.invalidResponse, message: "CreateSubnet answer lacks subnet")
        }
        return EC2Subnet(xml: subnet)
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
