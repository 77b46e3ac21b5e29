/// A `HOST:PORT` to serve on, as `--metrics-address` and `--address` take it.
package struct HTTPAddress: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `127.0.0.1:9464`, `[::1]:9464` or `:9464` (loopback); port 0 takes any free port.
    package init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            return nil // an IPv6 address needs brackets: [::1]:9464
        }
        if host.isEmpty { host = "127.0.0.1" }
        guard !host.contains(" "), !host.contains("/") else { return nil }
        self.init(host: host, port: port)
    }

    /// Whether the host is a loopback address (127.0.0.0/8, ::1 or localhost).
    package var isLoopback: Bool {
        self.host == "localhost" || self.host == "::1" || self.host.hasPrefix("127.")
    }

    package var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}
