/// Builds the flattened `Name.N.Field` parameters of the EC2 Query API.
struct EC2QueryParameters {
    private(set) var items: [(String, String)] = []

    mutating func add(_ name: String, _ value: String?) {
        if let value { items.append((name, value)) }
    }

    mutating func add(_ name: String, _ value: Int?) {
        if let value { items.append((name, String(value))) }
    }

    mutating func add(_ name: String, _ value: Bool?) {
        if let value { items.append((name, value ? "true" : "false")) }
    }

    /// `Name.1 = a`, `Name.2 = b`, …
    mutating func addList(_ name: String, _ values: [String]) {
        for (index, value) in values.enumerated() {
            items.append(("\(name).\(index + 1)", value))
        }
    }

    mutating func addFilters(_ filters: [EC2Filter]) {
        for (index, filter) in filters.enumerated() {
            items.append(("Filter.\(index + 1).Name", filter.name))
            addList("Filter.\(index + 1).Value", filter.values)
        }
    }

    mutating func addTags(_ name: String, _ tags: [EC2Tag]) {
        for (index, tag) in tags.enumerated() {
            items.append(("\(name).\(index + 1).Key", tag.key))
            items.append(("\(name).\(index + 1).Value", tag.value))
        }
    }

    /// Tags for the one resource a create call makes (nothing when `tags` is empty).
    mutating func addTagSpecification(for resourceType: String, _ tags: [EC2Tag]) {
        if !tags.isEmpty { self.addTagSpecifications([EC2TagSpecification(resourceType: resourceType, tags: tags)]) }
    }

    mutating func addTagSpecifications(_ specifications: [EC2TagSpecification]) {
        for (index, specification) in specifications.enumerated() {
            items.append(("TagSpecification.\(index + 1).ResourceType", specification.resourceType))
            addTags("TagSpecification.\(index + 1).Tag", specification.tags)
        }
    }
}
