/// A `Filter.N` of an EC2 `Describe…` call, e.g. `EC2Filter(name: "tag:flotilla-cluster", values: [id])`.
public struct EC2Filter: Sendable, Hashable {
    public var name: String
    public var values: [String]

    public init(name: String, values: [String]) {
        self.name = name
        self.values = values
    }

    /// Resources carrying tag `key` with one of `values`.
    public static func tag(_ key: String, _ values: String...) -> EC2Filter {
        EC2Filter(name: "tag:\(key)", values: values)
    }
}
