/// A resource tag.
public struct EC2Tag: Codable, Sendable, Hashable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    init(xml: XMLNode) {
        self.init(key: xml.string("key") ?? "", value: xml.string("value") ?? "")
    }

    static func list(_ xml: XMLNode) -> [EC2Tag] {
        xml.items("tagSet").map(EC2Tag.init(xml:))
    }
}

extension Array where Element == EC2Tag {
    /// The value of the tag with this key.
    public subscript(key key: String) -> String? {
        first { $0.key == key }?.value
    }
}
