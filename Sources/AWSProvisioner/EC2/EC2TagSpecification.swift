/// Tags applied at creation (`TagSpecification.N`), so nothing exists untagged even briefly.
public struct EC2TagSpecification: Sendable, Hashable {
    /// `instance`, `volume`, `security-group`, `key-pair`, `vpc`, `subnet`, …
    public var resourceType: String
    public var tags: [EC2Tag]

    public init(resourceType: String, tags: [EC2Tag]) {
        self.resourceType = resourceType
        self.tags = tags
    }
}
