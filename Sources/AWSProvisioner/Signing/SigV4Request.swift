/// An HTTP request as AWS Signature Version 4 sees it: the method, the path and query
/// *before* percent-encoding, the headers in the order they will be sent (a name may
/// repeat), and the body.
public struct SigV4Request: Sendable, Equatable {
    /// One header line; names compare case-insensitively when signing.
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// One query parameter, not percent-encoded.
    public struct QueryItem: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public var method: String
    /// The decoded path, e.g. `/` or `/example space/`.
    public var path: String
    /// The decoded query parameters.
    public var query: [QueryItem]
    public var headers: [Header]
    public var body: [UInt8]

    public init(method: String, path: String = "/", query: [QueryItem] = [], headers: [Header] = [], body: [UInt8] = [])
    {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// Replaces every header with this name (case-insensitive) by one with `value`, kept at
    /// the position of the first one, or appends it.
    public mutating func setHeader(_ name: String, _ value: String) {
        let lower = name.lowercased()
        if let first = headers.firstIndex(where: { $0.name.lowercased() == lower }) {
            headers[first].value = value
            var index = headers.index(after: first)
            while index < headers.endIndex {
                if headers[index].name.lowercased() == lower {
                    headers.remove(at: index)
                } else {
                    index = headers.index(after: index)
                }
            }
        } else {
            headers.append(Header(name: name, value: value))
        }
    }

    /// The values of every header with this name (case-insensitive), in order.
    public func headerValues(_ name: String) -> [String] {
        let lower = name.lowercased()
        return headers.filter { $0.name.lowercased() == lower }.map(\.value)
    }
}
