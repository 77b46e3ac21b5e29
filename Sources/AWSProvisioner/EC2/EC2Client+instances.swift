import Foundation

extension EC2Client {
    /// Launches `request.count` instances (all or nothing) and returns them as launched
    /// (usually `pending`).
    /// - Throws: `EC2Error`; `InsufficientInstanceCapacity` has `retryClass == .capacity`
    ///   and is not retried: choose another instance type or zone.
    public func runInstances(_ request: EC2RunInstancesRequest) async throws -> [EC2Instance] {
        var parameters = EC2QueryParameters()
        parameters.add("ImageId", request.imageID)
        parameters.add("InstanceType", request.instanceType)
        parameters.add("MinCount", request.count)
        parameters.add("MaxCount", request.count)
        parameters.add("ClientToken", request.clientToken)
        parameters.add("KeyName", request.keyName)
        if let associate = request.associatePublicIPAddress {
            // The public-IP choice exists only on a network interface, which then carries
            // the subnet and the groups.
            parameters.add("NetworkInterface.1.DeviceIndex", 0)
            parameters.add("NetworkInterface.1.AssociatePublicIpAddress", associate)
            parameters.add("NetworkInterface.1.SubnetId", request.subnetID)
            parameters.addList("NetworkInterface.1.SecurityGroupId", request.securityGroupIDs)
        } else {
            parameters.add("SubnetId", request.subnetID)
            parameters.addList("SecurityGroupId", request.securityGroupIDs)
        }
        if let root = request.rootVolume {
            parameters.add("BlockDeviceMapping.1.DeviceName", root.deviceName)
            parameters.add("BlockDeviceMapping.1.Ebs.VolumeSize", root.sizeGiB)
            parameters.add("BlockDeviceMapping.1.Ebs.VolumeType", root.volumeType)
            parameters.add("BlockDeviceMapping.1.Ebs.DeleteOnTermination", root.deleteOnTermination)
        }
        parameters.addTagSpecifications(request.tagSpecifications)
        parameters.add("UserData", request.userData.map { Data($0.utf8).base64EncodedString() })
        parameters.add("MetadataOptions.HttpEndpoint", "enabled")
        parameters.add("MetadataOptions.HttpTokens", request.metadataTokensRequired ? "required" : "optional")
        parameters.add("MetadataOptions.HttpPutResponseHopLimit", request.metadataHopLimit)
        let root = try await send("RunInstances", parameters)
        return root.items("instancesSet").map(EC2Instance.init(xml:))
    }

    /// Instances by id and/or filter, across all reservations and pages.
    /// - Parameter pageSize: `MaxResults` per page (not allowed together with `instanceIDs`).
    public func describeInstances(instanceIDs: [String] = [], filters: [EC2Filter] = [], pageSize: Int? = nil) async throws -> [EC2Instance] {
        var parameters = EC2QueryParameters()
        parameters.addList("InstanceId", instanceIDs)
        parameters.addFilters(filters)
        parameters.add("MaxResults", pageSize)
        return try await describeAll("DescribeInstances", parameters) { root in
            root.items("reservationSet").flatMap { $0.items("instancesSet").map(EC2Instance.init(xml:)) }
        }
    }

    /// Adds or overwrites tags on any resources.
    public func createTags(resourceIDs: [String], tags: [EC2Tag]) async throws {
        var parameters = EC2QueryParameters()
        parameters.addList("ResourceId", resourceIDs)
        parameters.addTags("Tag", tags)
        _ = try await send("CreateTags", parameters)
    }

    /// Terminates instances; terminating an already terminated one succeeds.
    public func terminateInstances(instanceIDs: [String]) async throws -> [EC2InstanceStateChange] {
        var parameters = EC2QueryParameters()
        parameters.addList("InstanceId", instanceIDs)
        let root = try await send("TerminateInstances", parameters)
        return root.items("instancesSet").map(EC2InstanceStateChange.init(xml:))
    }
}
