/// A small, strict reader for the XML that AWS Query APIs answer with: elements,
/// attributes (skipped), character data, CDATA, comments, processing instructions and the
/// predefined and numeric entities. No DTDs. Anything else is an error, which is how a
/// body that is not XML (an HTML error page, a proxy's plain text) is recognised.
struct XMLReader {
    struct Failure: Error, Sendable, Equatable {
        var offset: Int
        var reason: String
    }

    private let bytes: [UInt8]
    private var index = 0

    /// Parses a whole document and returns its root element.
    static func parse(_ bytes: some Sequence<UInt8>) throws(Failure) -> XMLNode {
        var reader = XMLReader(bytes: Array(bytes))
        return try reader.document()
    }

    private init(bytes: [UInt8]) {
        // Skip a UTF-8 byte order mark.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            self.bytes = Array(bytes.dropFirst(3))
        } else {
            self.bytes = bytes
        }
    }

    private mutating func document() throws(Failure) -> XMLNode {
        try skipMisc()
        guard peek() == UInt8(ascii: "<") else { throw fail("document does not start with an element") }
        let root = try element()
        try skipMisc()
        guard index == bytes.count else { throw fail("content after the root element") }
        return root
    }

    /// Skips whitespace, the XML declaration, processing instructions and comments.
    private mutating func skipMisc() throws(Failure) {
        while true {
            skipWhitespace()
            if starts(with: "<?") {
                try skip(past: "?>")
            } else if starts(with: "<!--") {
                try skip(past: "-->")
            } else {
                return
            }
        }
    }

    private mutating func element() throws(Failure) -> XMLNode {
        index += 1 // "<"
        let name = try readName()
        // Attributes are not needed for decoding; skip them, respecting quotes.
        var selfClosing = false
        while true {
            guard let byte = peek() else { throw fail("unterminated start tag") }
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                index += 1
                while let inner = peek(), inner != byte { index += 1 }
                guard peek() == byte else { throw fail("unterminated attribute value") }
                index += 1
            } else if byte == UInt8(ascii: "/") {
                index += 1
                guard peek() == UInt8(ascii: ">") else { throw fail("malformed empty-element tag") }
                index += 1
                selfClosing = true
                break
            } else if byte == UInt8(ascii: ">") {
                index += 1
                break
            } else if byte == UInt8(ascii: "<") {
                throw fail("'<' inside a tag")
            } else {
                index += 1
            }
        }
        var node = XMLNode(name: localName(name))
        if selfClosing { return node }

        var text: [UInt8] = []
        while true {
            guard let byte = peek() else { throw fail("unterminated element <\(name)>") }
            if byte == UInt8(ascii: "<") {
                if starts(with: "</") {
                    index += 2
                    let closing = try readName()
                    guard closing == name else { throw fail("</\(closing)> closes <\(name)>") }
                    skipWhitespace()
                    guard peek() == UInt8(ascii: ">") else { throw fail("malformed end tag") }
                    index += 1
                    node.text = String(decoding: text, as: UTF8.self)
                    return node
                } else if starts(with: "<!--") {
                    try skip(past: "-->")
                } else if starts(with: "<![CDATA[") {
                    index += 9
                    let start = index
                    try skip(past: "]]>")
                    text.append(contentsOf: bytes[start..<(index - 3)])
                } else if starts(with: "<?") {
                    try skip(past: "?>")
                } else if starts(with: "<!") {
                    throw fail("document type declarations are not supported")
                } else {
                    node.children.append(try element())
                }
            } else if byte == UInt8(ascii: "&") {
                text.append(contentsOf: try entity())
            } else {
                text.append(byte)
                index += 1
            }
        }
    }

    private mutating func entity() throws(Failure) -> [UInt8] {
        let start = index
        while let byte = peek(), byte != UInt8(ascii: ";") {
            index += 1
            if index - start > 12 { throw fail("unterminated entity") }
        }
        guard peek() == UInt8(ascii: ";") else { throw fail("unterminated entity") }
        let name = String(decoding: bytes[(start + 1)..<index], as: UTF8.self)
        index += 1
        switch name {
        case "amp": return Array("&".utf8)
        case "lt": return Array("<".utf8)
        case "gt": return Array(">".utf8)
        case "quot": return Array("\"".utf8)
        case "apos": return Array("'".utf8)
        default:
            var value: UInt32?
            if name.hasPrefix("#x") || name.hasPrefix("#X") {
                value = UInt32(name.dropFirst(2), radix: 16)
            } else if name.hasPrefix("#") {
                value = UInt32(name.dropFirst(1))
            }
            guard let value, let scalar = Unicode.Scalar(value) else { throw fail("unknown entity &\(name);") }
            return Array(String(Character(scalar)).utf8)
        }
    }

    private mutating func readName() throws(Failure) -> String {
        let start = index
        while let byte = peek(), !isWhitespace(byte), byte != UInt8(ascii: ">"), byte != UInt8(ascii: "/"),
            byte != UInt8(ascii: "<"), byte != UInt8(ascii: "=")
        {
            index += 1
        }
        guard index > start else { throw fail("missing element name") }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    private func localName(_ name: String) -> String {
        if let colon = name.lastIndex(of: ":") { return String(name[name.index(after: colon)...]) }
        return name
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private func starts(with literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        let pointer = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != pointer[offset] {
            return false
        }
        return true
    }

    private mutating func skip(past literal: StaticString) throws(Failure) {
        while index < bytes.count {
            if starts(with: literal) {
                index += literal.utf8CodeUnitCount
                return
            }
            index += 1
        }
        throw fail("missing \(literal)")
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), isWhitespace(byte) { index += 1 }
    }

    private func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private func fail(_ reason: String) -> Failure {
        Failure(offset: index, reason: reason)
    }
}
