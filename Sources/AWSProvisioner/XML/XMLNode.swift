/// An element of an AWS Query API response, reduced to what decoding needs: its local
/// name (namespace prefixes dropped), its child elements in document order and its text.
///
/// AWS responses reuse element names at several depths (`groupId`, `privateIpAddress`,
/// `code`), reorder children and omit optional ones, so values are read by path from a
/// known element rather than searched for by name.
struct XMLNode: Sendable, Equatable {
    var name: String
    var children: [XMLNode]
    /// The element's own character data, concatenated; whitespace kept as sent.
    var text: String

    init(name: String, children: [XMLNode] = [], text: String = "") {
        self.name = name
        self.children = children
        self.text = text
    }

    /// The first direct child with this name.
    func child(_ name: String) -> XMLNode? {
        children.first { $0.name == name }
    }

    /// Every direct child with this name.
    func children(_ name: String) -> [XMLNode] {
        children.filter { $0.name == name }
    }

    /// The element at a slash-separated path of direct children (`instanceState/name`).
    func node(at path: String) -> XMLNode? {
        var node = self
        for part in path.split(separator: "/") {
            guard let next = node.child(String(part)) else { return nil }
            node = next
        }
        return node
    }

    /// The trimmed text at `path`, or `nil` when the element is missing or empty.
    func string(_ path: String) -> String? {
        guard let text = node(at: path)?.text.trimmingWhitespace(), !text.isEmpty else { return nil }
        return text
    }

    /// The integer at `path`, or `nil` when missing or not a number.
    func int(_ path: String) -> Int? {
        string(path).flatMap { Int($0) }
    }

    /// The boolean at `path` (`true`/`false`), or `nil` when missing.
    func bool(_ path: String) -> Bool? {
        switch string(path)?.lowercased() {
        case "true": true
        case "false": false
        default: nil
        }
    }

    /// The `item` children of the list element at `path` (EC2 wraps lists as `xSet/item`).
    func items(_ path: String) -> [XMLNode] {
        node(at: path)?.children("item") ?? []
    }

    /// The first element with this name anywhere below this one, depth first.
    func firstDescendant(named name: String) -> XMLNode? {
        for child in children {
            if child.name == name { return child }
            if let found = child.firstDescendant(named: name) { return found }
        }
        return nil
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
