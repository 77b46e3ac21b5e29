import AWSProvisioner
import Foundation
import Testing

/// moto never paginates (it ignores MaxResults), so the fault proxy answers both pages:
/// the first with a `nextToken`, the second only if the client sends that token back.
@Suite("EC2 pagination", .timeLimit(.minutes(3)))
struct EC2PaginationTests {
    static func page(instanceID: String, privateIP: String, nextToken: String?) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>\(instanceID)-page</requestId>
          <reservationSet><item><reservationId>r-\(instanceID)</reservationId>
            <instancesSet><item>
              <instanceId>\(instanceID)</instanceId>
              <instanceState><code>16</code><name>running</name></instanceState>
              <networkInterfaceSet><item><privateIpAddress>10.9.9.9</privateIpAddress></item></networkInterfaceSet>
              <privateIpAddress>\(privateIP)</privateIpAddress>
              <tagSet/>
            </item></instancesSet>
          </item></reservationSet>
          \(nextToken.map { "<nextToken>\($0)</nextToken>" } ?? "<nextToken/>")
        </DescribeInstancesResponse>
        """
    }

    @Test("DescribeInstances follows nextToken to the last page")
    func followsNextToken() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(
                .init(
                    action: "DescribeInstances", times: 1, status: 200, shape: "raw",
                    body: Self.page(instanceID: "i-0second", privateIP: "127.0.1.5", nextToken: nil),
                    match: "NextToken=token-page-2"),
                .init(
                    action: "DescribeInstances", times: 1, status: 200, shape: "raw",
                    body: Self.page(instanceID: "i-0first", privateIP: "127.0.1.4", nextToken: "token-page-2")))
            let ec2 = stack.ec2(region: "eu-north-1", endpoint: proxy.endpoint)
            let instances = try await ec2.describeInstances(filters: [.tag("flotilla-cluster", "paged")], pageSize: 5)
            #expect(instances.map(\.instanceID) == ["i-0first", "i-0second"])
            #expect(instances.map(\.privateIPAddress) == ["127.0.1.4", "127.0.1.5"])
            let stats = try #require(try await proxy.stats()["DescribeInstances"])
            #expect(stats.attempts == 2)
            #expect(stats.faulted == 2)
        }
    }
}
