/// One instance's transition as `TerminateInstances` reports it.
public struct EC2InstanceStateChange: Sendable, Hashable {
    public var instanceID: String
    public var previousState: EC2InstanceState
    public var currentState: EC2InstanceState

    init(xml: XMLNode) {
        instanceID = xml.string("instanceId") ?? ""
        previousState = EC2InstanceState(xml.string("previousState/name") ?? "unknown")
        currentState = EC2InstanceState(xml.string("currentState/name") ?? "unknown")
    }
}
