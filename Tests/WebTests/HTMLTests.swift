import Testing

@testable import Web

@Suite("The web page's HTML builder", .timeLimit(.minutes(1)))
struct HTMLTests {
    static let hostile = #"<script>alert('x')</script> & "quoted" <img src=x onerror=y>"#

    @Test("every value is escaped, in text, attributes, links and table cells; only the page's own markup is raw")
    func escaping() {
        var html = HTML()
        html.text(Self.hostile)
        html.element("td", Self.hostile, class: #"a" onclick="b"#)
        html.link(#"javascript:"><script>"#, Self.hostile)
        html.table(
            #"t"><x id="y"#, [Self.hostile],
            [[{ (cell: inout HTML) in cell.text(Self.hostile) }]], empty: Self.hostile)
        let page = html.output
        #expect(!page.contains("<script"), "\(page)")
        #expect(!page.contains("<img"), "\(page)")
        #expect(!page.contains(#"" onclick"#) && !page.contains(#"<x id"#), "no attribute is broken out of: \(page)")
        #expect(page.contains(#"<a href="javascript:&quot;&gt;&lt;script&gt;">"#), "\(page)")
        #expect(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"))
        // The builder's own tags are there, in order.
        #expect(page.contains(#"<td class="a&quot; onclick=&quot;b">"#), "\(page)")
        #expect(page.contains(#"<table id="t&quot;&gt;&lt;x id=&quot;y"><thead><tr><th>"#), "\(page)")
    }

    @Test("an empty table says so, escaped, instead of an empty table")
    func emptyTable() {
        var html = HTML()
        html.table("clusters", ["id"], [], empty: "no <clusters>")
        #expect(html.output == #"<p class="empty" id="clusters">no &lt;clusters&gt;</p>"#)
    }

    @Test("escape leaves other text alone, multi-byte characters included")
    func plainText() {
        #expect(HTML.escape("cluster c-1 — ready ✓") == "cluster c-1 — ready ✓")
        #expect(HTML.escape("") == "")
    }

    @Test("spans for people: seconds, minutes, hours, days, and negative spans")
    func spans() {
        #expect(humanSpan(45) == "45s")
        #expect(humanSpan(125) == "2m 5s")
        #expect(humanSpan(3 * 3600 + 12 * 60 + 30) == "3h 12m")
        #expect(humanSpan(2 * 86400 + 5 * 3600) == "2d 5h")
        #expect(humanSpan(-90) == "-1m 30s")
    }
}
