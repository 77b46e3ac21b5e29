/// An image as `DescribeImages` reports it: what a launch needs to know before it spends
/// anything (is it there and available, which CPUs it runs on, which device is its root and
/// how large that volume's snapshot is).
public struct EC2Image: Sendable, Hashable {
    public var imageID: String
    /// `available`, `pending`, `failed`, `deregistered`, …
    public var state: String
    /// `x86_64`, `arm64`, `i386`, …
    public var architecture: String?
    /// `/dev/sda1` (CentOS, RHEL), `/dev/xvda` (Amazon Linux and many others).
    public var rootDeviceName: String?
    /// `ebs` or `instance-store`.
    public var rootDeviceType: String?
    public var name: String?
    public var blockDevices: [BlockDevice]
    /// `v2.0` when instances of this image must use IMDSv2 (EC2 then defaults `HttpTokens` to
    /// `required` for them); `nil` when the image does not say.
    public var imdsSupport: String?
    /// Whether the image has the ENA driver, which Nitro instance types need; `nil` when the
    /// answer does not say.
    public var enaSupport: Bool?
    /// Marketplace or DevPay product codes: such an image launches only for a subscribed account.
    public var productCodes: [ProductCode]

    public struct ProductCode: Sendable, Hashable {
        public var id: String
        /// `marketplace` or `devpay`.
        public var type: String
    }

    public struct BlockDevice: Sendable, Hashable {
        public var deviceName: String
        public var snapshotID: String?
        public var volumeSizeGiB: Int?
    }

    /// The snapshot size of the root device, when the image maps it.
    public var rootVolumeSizeGiB: Int? {
        self.blockDevices.first { $0.deviceName == self.rootDeviceName }?.volumeSizeGiB
    }

    init(xml: XMLNode) {
        imageID = xml.string("imageId") ?? ""
        state = xml.string("imageState") ?? "unknown"
        architecture = xml.string("architecture")
        rootDeviceName = xml.string("rootDeviceName")
        rootDeviceType = xml.string("rootDeviceType")
        name = xml.string("name")
        blockDevices = xml.items("blockDeviceMapping").map {
            BlockDevice(
                deviceName: $0.string("deviceName") ?? "", snapshotID: $0.string("ebs/snapshotId"),
                volumeSizeGiB: $0.int("ebs/volumeSize"))
        }
        imdsSupport = xml.string("imdsSupport")
        enaSupport = xml.string("enaSupport").map { $0 == "true" }
        productCodes = xml.items("productCodes").map {
            ProductCode(id: $0.string("productCode") ?? "", type: $0.string("type") ?? "")
        }
    }
}

/// Where an instance type is offered (`DescribeInstanceTypeOfferings`).
public struct EC2InstanceTypeOffering: Sendable, Hashable {
    public var instanceType: String
    /// An availability zone name when asked by `availability-zone`.
    public var location: String
}

extension EC2Client {
    /// Images by id.
    /// - Throws: `EC2Error` `InvalidAMIID.NotFound` (or `.Malformed`) for an id the region does not know.
    public func describeImages(imageIDs: [String]) async throws -> [EC2Image] {
        var parameters = EC2QueryParameters()
        parameters.addList("ImageId", imageIDs)
        return try await describeAll("DescribeImages", parameters) { $0.items("imagesSet").map(EC2Image.init(xml:)) }
    }

    /// The CPU architectures each instance type supports (`x86_64`, `arm64`, …).
    /// - Throws: `EC2Error` `InvalidInstanceType` for a type the region does not know.
    public func supportedArchitectures(of instanceTypes: [String]) async throws -> [String: [String]] {
        var parameters = EC2QueryParameters()
        parameters.addList("InstanceType", instanceTypes)
        let pairs = try await describeAll("DescribeInstanceTypes", parameters) { root in
            root.items("instanceTypeSet").map { item in
                (
                    item.string("instanceType") ?? "",
                    item.items("processorInfo/supportedArchitectures").map { $0.text.trimmingWhitespace() }
                )
            }
        }
        return Dictionary(pairs, uniquingKeysWith: { first, _ in first })
    }

    /// The availability zones (of `zones`, or all) that offer each of `instanceTypes`.
    public func instanceTypeOfferings(instanceTypes: [String], zones: [String] = []) async throws
        -> [EC2InstanceTypeOffering]
    {
        var parameters = EC2QueryParameters()
        parameters.add("LocationType", "availability-zone")
        var filters = [EC2Filter(name: "instance-type", values: instanceTypes)]
        if !zones.isEmpty { filters.append(EC2Filter(name: "location", values: zones)) }
        parameters.addFilters(filters)
        return try await describeAll("DescribeInstanceTypeOfferings", parameters) { root in
            root.items("instanceTypeOfferingSet").map {
                EC2InstanceTypeOffering(
                    instanceType: $0.string("instanceType") ?? "", location: $0.string("location") ?? "")
            }
        }
    }
}
