import AWSProvisioner
import Foundation
import Testing

/// Each retry rule, proved through scripts/fixtures/fault-proxy.py in front of moto_server
/// (a proxy per test; signatures stay valid because it keeps the Host header).
@Suite("Retries through the fault proxy", .timeLimit(.minutes(3)))
struct RetryTests {
    @Test("throttling (RequestLimitExceeded, HTTP 503) is retried with backoff")
    func throttlingRetried() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(.init(action: "DescribeVpcs", times: 2, status: 503, code: "RequestLimitExceeded"))
            let vpcs = try await stack.ec2(region: "us-east-1", endpoint: proxy.endpoint).describeVpcs()
            #expect(!vpcs.isEmpty)
            let stats = try #require(try await proxy.stats()["DescribeVpcs"])
            #expect(stats.attempts == 3)
            #expect(stats.faulted == 2)
        }
    }

    @Test("STS Throttling is retried")
    func stsThrottlingRetried() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(
                .init(action: "GetCallerIdentity", times: 1, status: 400, code: "Throttling", shape: "sts"))
            let identity = try await stack.sts(endpoint: proxy.endpoint).getCallerIdentity()
            #expect(identity.arn.hasSuffix("user/flotilla-test"))
            let seen = try await proxy.attempts("GetCallerIdentity")
            #expect(seen == 2)
        }
    }

    @Test("throttling that does not stop gives up after maximumAttempts")
    func throttlingExhausted() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(.init(action: "DescribeVpcs", times: 100, status: 503, code: "RequestLimitExceeded"))
            let ec2 = stack.ec2(region: "us-east-1", endpoint: proxy.endpoint, maximumAttempts: 3)
            let error = await #expect(throws: EC2Error.self) { _ = try await ec2.describeVpcs() }
            #expect(error?.code == "RequestLimitExceeded")
            #expect(error?.httpStatus == 503)
            #expect(error?.requestID == "fault-proxy-request")
            #expect(error?.retryClass == .throttling)
            let seen = try await proxy.attempts("DescribeVpcs")
            #expect(seen == 3)
        }
    }

    @Test("transient 5xx (InternalError 500, a non-XML 502) is retried")
    func transientRetried() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(
                .init(action: "DescribeSubnets", times: 1, status: 500, code: "InternalError"),
                .init(
                    action: "DescribeSubnets", times: 1, status: 502, shape: "raw",
                    body: "<html><body>502 Bad Gateway</body></html>"))
            let subnets = try await stack.ec2(region: "us-east-1", endpoint: proxy.endpoint).describeSubnets()
            #expect(!subnets.isEmpty)
            let stats = try #require(try await proxy.stats()["DescribeSubnets"])
            #expect(stats.attempts == 3 && stats.faulted == 2, "\(stats)")
        }
    }

    @Test("a non-XML 4xx body is surfaced with its status and not retried")
    func nonXMLClientError() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(
                .init(action: "DescribeVpcs", times: 1, status: 400, shape: "raw", body: "plain text, not XML"))
            let error = await #expect(throws: EC2Error.self) {
                _ = try await stack.ec2(region: "us-east-1", endpoint: proxy.endpoint).describeVpcs()
            }
            #expect(error?.code == EC2Error.Code.unrecognizedErrorResponse)
            #expect(error?.httpStatus == 400)
            #expect(error?.message.contains("plain text") == true)
            let seen = try await proxy.attempts("DescribeVpcs")
            #expect(seen == 1)
        }
    }

    @Test(
        "clock an hour off: RequestTimeTooSkewed fixed once by AWS's Date, used later; a clock put right is followed"
    )
    func clockSkewCorrected() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            let skewed = FaultProxy.Rule(
                action: "DescribeVpcs", status: 403, code: "RequestTimeTooSkewed",
                message: "The difference between the request time and the current time is too large.", dateOffset: 3600
            )
            try await proxy.add(skewed)
            let ec2 = stack.ec2(region: "us-east-1", endpoint: proxy.endpoint)
            _ = try await ec2.describeVpcs()
            _ = try await ec2.describeVpcs()
            var back = skewed
            back.dateOffset = 0
            try await proxy.add(back)
            _ = try await ec2.describeVpcs()
            let stats = try #require(try await proxy.stats()["DescribeVpcs"])
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
            let dates = stats.dates.compactMap(formatter.date(from:))
            // refused (local time), retried (+1 h), next call (+1 h), refused (+1 h), retried (local time)
            try #require(dates.count == 5, "\(stats.dates)")
            let offsets = dates.map { $0.timeIntervalSince(dates[0]) }
            #expect(
                abs(offsets[1] - 3600) < 60 && abs(offsets[2] - 3600) < 60 && abs(offsets[3] - 3600) < 60
                    && abs(offsets[4]) < 60,
                "\(stats.dates)")
            #expect(stats.faulted == 2)
        }
    }

    @Test("InsufficientInstanceCapacity (HTTP 500) is not retried but surfaced")
    func capacityNotRetried() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(
                .init(
                    action: "RunInstances", times: 1, status: 500, code: "InsufficientInstanceCapacity",
                    message:
                        "We currently do not have sufficient m5.xlarge capacity in the Availability Zone you requested")
            )
            let ec2 = stack.ec2(region: "sa-east-1", endpoint: proxy.endpoint)
            let error = await #expect(throws: EC2Error.self) {
                _ = try await ec2.runInstances(
                    EC2RunInstancesRequest(
                        imageID: "ami-12c6146b", instanceType: "m5.xlarge",
                        count: 1, clientToken: uniqueName("token")))
            }
            #expect(error?.code == "InsufficientInstanceCapacity")
            #expect(error?.httpStatus == 500)
            #expect(error?.retryClass == .capacity)
            #expect(error?.message.contains("m5.xlarge") == true)
            let seen = try await proxy.attempts("RunInstances")
            #expect(seen == 1)
        }
    }

    @Test("ExpiredToken leads to exactly one credential refresh and one retry")
    func expiredTokenRefreshesOnce() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(
                .init(
                    action: "DescribeVpcs", times: 1, status: 400, code: "ExpiredToken",
                    message: "The security token included in the request is expired"))
            let provider = CountingProvider(StaticCredentialsProvider(stack.credentials))
            let ec2 = stack.ec2(region: "us-east-1", endpoint: proxy.endpoint, credentials: stack.cache(provider))
            let vpcs = try await ec2.describeVpcs()
            #expect(!vpcs.isEmpty)
            #expect(provider.calls == 2)
            let seen = try await proxy.attempts("DescribeVpcs")
            #expect(seen == 2)
        }
    }

    @Test("a second ExpiredToken after the refresh is surfaced, not refreshed again")
    func expiredTokenTwice() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(.init(action: "DescribeVpcs", times: 10, status: 400, code: "RequestExpired"))
            let provider = CountingProvider(StaticCredentialsProvider(stack.credentials))
            let ec2 = stack.ec2(region: "us-east-1", endpoint: proxy.endpoint, credentials: stack.cache(provider))
            let error = await #expect(throws: EC2Error.self) { _ = try await ec2.describeVpcs() }
            #expect(error?.code == "RequestExpired")
            #expect(provider.calls == 2)
            let seen = try await proxy.attempts("DescribeVpcs")
            #expect(seen == 2)
        }
    }

    @Test(
        "AuthFailure and UnauthorizedOperation are never retried", arguments: ["AuthFailure", "UnauthorizedOperation"])
    func authNeverRetried(code: String) async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(
                .init(action: "DescribeInstances", times: 5, status: code == "AuthFailure" ? 401 : 403, code: code))
            let provider = CountingProvider(StaticCredentialsProvider(stack.credentials))
            let ec2 = stack.ec2(region: "us-east-1", endpoint: proxy.endpoint, credentials: stack.cache(provider))
            let error = await #expect(throws: EC2Error.self) { _ = try await ec2.describeInstances() }
            #expect(error?.code == code)
            #expect(provider.calls == 1)
            let seen = try await proxy.attempts("DescribeInstances")
            #expect(seen == 1)
        }
    }

    @Test("DependencyViolation on DeleteSecurityGroup is surfaced, not retried")
    func dependencyViolation() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            let ec2 = stack.ec2(region: "ca-central-1", endpoint: proxy.endpoint)
            let groupID = try await ec2.createSecurityGroup(name: uniqueName("sg"), description: "in use")
            try await proxy.add(
                .init(
                    action: "DeleteSecurityGroup", times: 1, status: 400, code: "DependencyViolation",
                    message: "resource \(groupID) has a dependent object"))
            let error = await #expect(throws: EC2Error.self) { try await ec2.deleteSecurityGroup(groupID: groupID) }
            #expect(error?.code == "DependencyViolation")
            #expect(error?.retryClass == .never)
            let seen = try await proxy.attempts("DeleteSecurityGroup")
            #expect(seen == 1)
            // Later, once the instances are gone, the delete goes through.
            try await ec2.deleteSecurityGroup(groupID: groupID)
        }
    }

    @Test("an answer slower than requestTimeout times out and is retried as transient")
    func requestTimeout() async throws {
        let stack = try TestStack.current()
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            try await proxy.add(.init(action: "DescribeVpcs", times: 2, delay: 2))
            let ec2 = stack.ec2(
                region: "us-east-1", endpoint: proxy.endpoint, maximumAttempts: 2, requestTimeout: .milliseconds(300))
            // The code says the deadline fired (not the proxy's late answer); no wall-clock bound,
            // which a loaded machine would make flaky.
            let error = await #expect(throws: EC2Error.self) { _ = try await ec2.describeVpcs() }
            #expect(error?.code == EC2Error.Code.requestTimeout)
            #expect(error?.retryClass == .transient)
            let seen = try await proxy.attempts("DescribeVpcs")
            #expect(seen == 2)
        }
    }

    @Test("a refused connection is a transport error")
    func connectionRefused() async throws {
        let stack = try TestStack.current()
        // Port 9 (discard) is not listened on here: the connection is refused at once.
        let ec2 = stack.ec2(region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:9")!, maximumAttempts: 2)
        let error = await #expect(throws: EC2Error.self) { _ = try await ec2.describeVpcs() }
        #expect(error?.code == EC2Error.Code.transport)
        #expect(error?.retryClass == .transient)
        #expect(error?.httpStatus == nil)
    }
}
