import Foundation

extension EC2Client {
    /// Launches `request.count` instances (all or nothing) and returns them as launched
    /// (usually `pending`).
    /// - Throws: `EC2Error`; `InsufficientInstanceCapacity` has `retryClass == .capacity`
    ///   and is not retried: choose another instance type or zone.
    public func runInstances(_ request: EC2RunInstancesRequest) async throws -> [EC2Instance] {
        let root = try await transport.send(action: "RunInstances", parameters: request.queryParameters)
        return root.items("instancesSet").map(EC2Instance.init(xml:))
    }

    /// Instances by id and/or filter, across all reservations and pages.
    /// - Parameter pageSize: `MaxResults` per page (not allowed together with `instanceIDs`).
    public func describeInstances(instanceIDs: [String] = [], filters: [EC2Filter] = [], pageSize: Int? = nil)
        async throws -> [EC2Instance]
    {
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

extension EC2Client {
    /// What the instance wrote to its serial console (the last 64 KB, decoded), empty while it
    /// has written nothing yet. cloud-init prints there which SSH keys it authorized, or that it
    /// found none (``CloudInitConsole``).
    public func consoleOutput(instanceID: String) async throws -> String {
        var parameters = EC2QueryParameters()
        parameters.add("InstanceId", instanceID)
        let root = try await send("GetConsoleOutput", parameters)
        guard let encoded = root.string("output"),
            let data = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters)
        else { return "" }
        return String(decoding: data, as: UTF8.self)
    }
}
