/// An EBS volume as `DescribeVolumes` reports it.
public struct EC2Volume: Sendable, Hashable {
    public var volumeID: String
    /// `creating`, `available`, `in-use`, `deleting`, `deleted` or `error` (EC2 calls the
    /// element `status`).
    public var state: String
    public var sizeGiB: Int?
    public var volumeType: String?
    public var availabilityZone: String?
    /// The instances the volume is attached to.
    public var attachedInstanceIDs: [String]
    public var tags: [EC2Tag]

    init(xml: XMLNode) {
        volumeID = xml.string("volumeId") ?? ""
        state = xml.string("status") ?? "unknown"
        sizeGiB = xml.int("size")
        volumeType = xml.string("volumeType")
        availabilityZone = xml.string("availabilityZone")
        attachedInstanceIDs = xml.items("attachmentSet").compactMap { $0.string("instanceId") }
        tags = EC2Tag.list(xml)
    }
}

extension EC2Client {
    /// Volumes by id and/or filter (`tag:cluster`, `status`, `attachment.instance-id`, …),
    /// across all pages.
    /// - Parameter pageSize: `MaxResults` per page (not allowed together with `volumeIDs`).
    /// - Throws: `EC2Error` `InvalidVolume.NotFound` when a named volume does not exist.
    public func describeVolumes(volumeIDs: [String] = [], filters: [EC2Filter] = [], pageSize: Int? = nil) async throws
        -> [EC2Volume]
    {
        var parameters = EC2QueryParameters()
        parameters.addList("VolumeId", volumeIDs)
        parameters.addFilters(filters)
        parameters.add("MaxResults", pageSize)
        return try await describeAll("DescribeVolumes", parameters) { root in
            root.items("volumeSet").map(EC2Volume.init(xml:))
        }
    }
}

/// A network interface as `DescribeNetworkInterfaces` reports it.
public struct EC2NetworkInterface: Sendable, Hashable {
    public var networkInterfaceID: String
    /// `available`, `in-use`, `attaching`, `detaching`, …
    public var status: String
    public var attachedInstanceID: String?
    public var tags: [EC2Tag]

    init(xml: XMLNode) {
        networkInterfaceID = xml.string("networkInterfaceId") ?? ""
        status = xml.string("status") ?? "unknown"
        attachedInstanceID = xml.string("attachment/instanceId")
        tags = EC2Tag.list(xml)
    }
}

extension EC2Client {
    /// Network interfaces by filter (`tag:cluster`, `attachment.instance-id`, …), across all pages.
    public func describeNetworkInterfaces(filters: [EC2Filter] = []) async throws -> [EC2NetworkInterface] {
        var parameters = EC2QueryParameters()
        parameters.addFilters(filters)
        return try await describeAll("DescribeNetworkInterfaces", parameters) { root in
            root.items("networkInterfaceSet").map(EC2NetworkInterface.init(xml:))
        }
    }
}
