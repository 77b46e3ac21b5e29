/// An instance's lifecycle state. An open set over EC2's names.
public struct EC2InstanceState: Sendable, Hashable, CustomStringConvertible {
    public var name: String

    public init(_ name: String) {
        self.name = name
    }

    public static let pending = EC2InstanceState("pending")
    public static let running = EC2InstanceState("running")
    public static let shuttingDown = EC2InstanceState("shutting-down")
    public static let terminated = EC2InstanceState("terminated")
    public static let stopping = EC2InstanceState("stopping")
    public static let stopped = EC2InstanceState("stopped")

    public var description: String { name }
}
