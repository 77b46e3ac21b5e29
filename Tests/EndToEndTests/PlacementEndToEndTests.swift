import Foundation
import Testing

/// A capacity fallback through `worker run`: the fault proxy in front of the emulator answers
/// InsufficientInstanceCapacity in the first zone.
@Suite("Capacity fallback through the worker", .timeLimit(.minutes(10)))
struct PlacementEndToEndTests {
    @Test(
        "InsufficientInstanceCapacity in a zone: next zone, same attempt; events, capacity record say so; no leftovers"
    )
    func fallbackThroughTheWorker() async throws {
        try await Fleet.with { fleet in
            let environment = ProcessInfo.processInfo.environment
            let zoneB = try #require(environment["FLOTILLA_TEST_SUBNET_B_ID"])
            let zoneA = try #require(environment["FLOTILLA_TEST_SUBNET_ID"])
            let proxy = try await FaultProxy(
                rules: """
                    [{"action": "RunInstances", "times": 20, "status": 500, "code": "InsufficientInstanceCapacity",
                      "message": "We currently do not have sufficient m4.xlarge capacity in the Availability Zone \
                    you requested (us-west-2b).",
                      "match": "SubnetId=\(zoneB)"}]
                    """)
            defer { proxy.stop() }

            try fleet.start(
                ["run", "--worker-id", "w1"] + LifecycleTests.fastWorker,
                environment: [
                    "AWS_ENDPOINT_URL": proxy.endpoint, "FLOTILLA_SUBNET_ID": "\(zoneB),\(zoneA)",
                ])
            try fleet.start(["janitor", "--interval-seconds", "1"])
            let request = try await fleet.run(["client", "request", "--nodes", "1", "--json"])
            try #require(request.status == 0, "\(request.stderr) \(proxy.fixture.errors())")
            let object = try jsonObject(request.output)
            let id = try #require(object["id"] as? String)
            let token = try #require(object["lease_token"] as? String)

            let events = try await fleet.scalar(
                """
                SELECT string_agg(detail ->> 'phase', ' | ' ORDER BY at) FROM cluster_events
                WHERE cluster_id = \(id) AND kind = 'phase'
                """, as: String.self)
            #expect(
                events.contains(
                    "fallback: us-west-2b m4.xlarge: InsufficientInstanceCapacity; now us-west-2a m4.large"),
                "\(events)")
            #expect(
                try await fleet.scalar("SELECT attempt FROM jobs WHERE kind = 'provision'", as: Int.self) == 1,
                "no job attempt burned")
            #expect(try await fleet.scalar("SELECT subnet_id FROM clusters WHERE id = \(id)", as: String.self) == zoneA)
            #expect(
                try await fleet.scalar(
                    """
                    SELECT count(*)::int FROM capacity_failures
                    WHERE zone = 'us-west-2b' AND instance_type = 'm4.xlarge' AND until > now()
                    """, as: Int.self) == 1)

            #expect(try await fleet.run(["client", "release", id, "--lease-token", token]).status == 0)
            try await LifecycleTests.expectDestroyed(
                fleet, id, path: "release after a capacity fallback", since: Date())
            try await fleet.expectNothingLeft(id)
        }
    }
}
