import Foundation

/// Builds an HTML document; every value goes through ``text(_:)`` (escaped), only the
/// page's own markup through ``raw(_:)``.
struct HTML {
    private(set) var output = ""

    mutating func raw(_ markup: String) { self.output += markup }

    mutating func text(_ value: String) { self.output += Self.escape(value) }

    /// `<tag class="…">escaped text</tag>`.
    mutating func element(_ tag: String, _ value: String, class name: String? = nil) {
        self.raw("<\(tag)\(name.map { " class=\"\(Self.escape($0))\"" } ?? "")>")
        self.text(value)
        self.raw("</\(tag)>")
    }

    /// A link whose address and text are both escaped.
    mutating func link(_ href: String, _ value: String) {
        self.raw("<a href=\"\(Self.escape(href))\">")
        self.text(value)
        self.raw("</a>")
    }

    /// A table: the header, then rows whose cells each write their own (escaped) content.
    mutating func table(_ id: String, _ headers: [String], _ rows: [[(inout HTML) -> Void]], empty: String) {
        guard !rows.isEmpty else {
            self.raw("<p class=\"empty\" id=\"\(Self.escape(id))\">")
            self.text(empty)
            self.raw("</p>")
            return
        }
        self.raw("<table id=\"\(Self.escape(id))\"><thead><tr>")
        for header in headers { self.element("th", header) }
        self.raw("</tr></thead><tbody>")
        for row in rows {
            self.raw("<tr>")
            for cell in row {
                self.raw("<td>")
                cell(&self)
                self.raw("</td>")
            }
            self.raw("</tr>")
        }
        self.raw("</tbody></table>")
    }

    /// Escapes `& < > " '` so a value can sit in text or in a quoted attribute.
    static func escape(_ value: String) -> String {
        var out = ""
        out.reserveCapacity(value.utf8.count)
        for character in value.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }
}

/// `3h 12m`, `45s`: a span for people.
func humanSpan(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    if total < 0 { return "-" + humanSpan(-seconds) }
    let (d, h, m, s) = (total / 86400, (total % 86400) / 3600, (total % 3600) / 60, total % 60)
    if d > 0 { return "\(d)d \(h)h" }
    if h > 0 { return "\(h)h \(m)m" }
    if m > 0 { return "\(m)m \(s)s" }
    return "\(s)s"
}

func utc(_ date: Date) -> String {
    date.formatted(.iso8601)
}
