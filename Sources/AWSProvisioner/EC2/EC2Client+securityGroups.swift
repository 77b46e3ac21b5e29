extension EC2Client {
    /// Creates a security group and returns its id.
    /// - Throws: `EC2Error` `InvalidGroup.Duplicate` if the name exists in the VPC.
    public func createSecurityGroup(
        name: String, description: String, vpcID: String? = nil, tags: [EC2Tag] = [], dryRun: Bool = false
    ) async throws -> String {
        var parameters = EC2QueryParameters()
        parameters.add("GroupName", name)
        parameters.add("GroupDescription", description)
        parameters.add("VpcId", vpcID)
        parameters.addTagSpecification(for: "security-group", tags)
        if dryRun { parameters.add("DryRun", true) }
        let root = try await send("CreateSecurityGroup", parameters)
        guard let groupID = root.string("groupId") else {
            throw EC2Error(code: EC2Error.Code.invalidResponse, message: "CreateSecurityGroup answer lacks groupId")
        }
        return groupID
    }

    /// Adds ingress rules.
    /// - Throws: `EC2Error` `InvalidPermission.Duplicate` when a rule exists already.
    public func authorizeSecurityGroupIngress(groupID: String, permissions: [EC2IPPermission]) async throws {
        var parameters = EC2QueryParameters()
        parameters.add("GroupId", groupID)
        for (index, permission) in permissions.enumerated() {
            for (name, value) in permission.parameters(prefix: "IpPermissions.\(index + 1)") {
                parameters.add(name, value)
            }
        }
        _ = try await send("AuthorizeSecurityGroupIngress", parameters)
    }

    /// Security groups by id, name and/or filter.
    public func describeSecurityGroups(groupIDs: [String] = [], groupNames: [String] = [], filters: [EC2Filter] = [])
        async throws -> [EC2SecurityGroup]
    {
        var parameters = EC2QueryParameters()
        parameters.addList("GroupId", groupIDs)
        parameters.addList("GroupName", groupNames)
        parameters.addFilters(filters)
        return try await describeAll("DescribeSecurityGroups", parameters) { root in
            root.items("securityGroupInfo").map(EC2SecurityGroup.init(xml:))
        }
    }

    /// Deletes a security group.
    /// - Throws: `EC2Error` `DependencyViolation` while instances still use it (not retried
    ///   here: the caller terminates the instances first and retries later).
    public func deleteSecurityGroup(groupID: String) async throws {
        var parameters = EC2QueryParameters()
        parameters.add("GroupId", groupID)
        _ = try await send("DeleteSecurityGroup", parameters)
    }
}
