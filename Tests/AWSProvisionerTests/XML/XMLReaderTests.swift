import Testing

@testable import AWSProvisioner

@Suite("XML reader", .timeLimit(.minutes(3)))
struct XMLReaderTests {
    @Test("same element names at several depths are read by path")
    func pathsDisambiguate() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
              <item><privateIpAddress>127.0.1.4</privateIpAddress>
                <networkInterfaceSet><item><privateIpAddress>10.0.0.9</privateIpAddress></item></networkInterfaceSet>
                <instanceState><code>16</code><name>running</name></instanceState>
                <empty/><blank></blank>
              </item>
            </DescribeInstancesResponse>
            """
        let root = try XMLReader.parse(Array(xml.utf8))
        #expect(root.name == "DescribeInstancesResponse")
        let item = try #require(root.child("item"))
        #expect(item.string("privateIpAddress") == "127.0.1.4")
        #expect(item.items("networkInterfaceSet").first?.string("privateIpAddress") == "10.0.0.9")
        #expect(item.int("instanceState/code") == 16)
        #expect(item.string("empty") == nil)
        #expect(item.string("blank") == nil)
        #expect(item.string("missing") == nil)
    }

    @Test("entities, character references, CDATA and comments")
    func textDecoding() throws {
        let root = try XMLReader.parse(
            Array("<a><!-- c --><m>x &amp; y &lt;z&gt; &#65;&#x42; <![CDATA[<raw>]]></m></a>".utf8))
        #expect(root.string("m") == "x & y <z> AB <raw>")
    }

    @Test(
        "bodies that are not XML are rejected",
        arguments: [
            "<html><body>500 Internal Server Error<br></body></html>",
            "Service Unavailable",
            "",
            "<a><b></a>",
            "<a></a>trailing",
        ])
    func rejectsNonXML(_ body: String) {
        #expect(throws: XMLReader.Failure.self) { try XMLReader.parse(Array(body.utf8)) }
    }
}
