/// The root volume of new instances (`BlockDeviceMapping.1`).
public struct EC2RootVolume: Sendable, Hashable {
    /// The AMI's root device name, e.g. `/dev/sda1` or `/dev/xvda`.
    public var deviceName: String
    public var sizeGiB: Int
    /// `gp3`, `gp2`, `io1`, …
    public var volumeType: String
    public var deleteOnTermination: Bool

    public init(
        deviceName: String = "/dev/sda1", sizeGiB: Int, volumeType: String = "gp3", deleteOnTermination: Bool = true
    ) {
        self.deviceName = deviceName
        self.sizeGiB = sizeGiB
        self.volumeType = volumeType
        self.deleteOnTermination = deleteOnTermination
    }
}
