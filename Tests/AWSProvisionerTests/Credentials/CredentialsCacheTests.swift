import AWSProvisioner
import Foundation
import Testing

/// The credentials cache with scripts/fixtures/credential-process.py, which hands out
/// short-lived credentials and counts its invocations. Time moves with a `TestClock`.
@Suite("Credentials cache with credential_process", .timeLimit(.minutes(3)))
struct CredentialsCacheTests {
    private func makeCache(_ fixture: CredentialProcessFixture, clock: TestClock, window: Duration = .seconds(15 * 60))
        -> CredentialsCache
    {
        CredentialsCache(
            provider: fixture.provider,
            configuration: .init(refreshWindow: window, now: clock.now), logger: TestStack.logger)
    }

    @Test("credentials are renewed ahead of expiry, inside the refresh window, not before")
    func renewsAheadOfExpiry() async throws {
        let stack = try TestStack.current()
        let fixture = try CredentialProcessFixture(credentials: stack.credentials, lifetime: 20 * 60)
        defer { fixture.remove() }
        let clock = TestClock()
        let cache = makeCache(fixture, clock: clock)

        let first = try await cache.credentials()
        #expect(first.accessKeyID == stack.accessKeyID)
        #expect(first.expiration != nil)
        _ = try await cache.credentials()
        #expect(try fixture.invocations == 1)

        clock.advance(by: 4 * 60) // 16 minutes left: outside the 15-minute window
        _ = try await cache.credentials()
        #expect(try fixture.invocations == 1)

        // From now on the process hands out hour-long credentials.
        try fixture.setLifetime(3600)
        clock.advance(by: 2 * 60) // 14 minutes left: renew now, before expiry
        let renewed = try await cache.credentials()
        #expect(try fixture.invocations == 2)
        #expect(try #require(renewed.expiration) > (try #require(first.expiration)))

        // The renewed credentials sign requests that moto accepts.
        let ec2 = stack.ec2(region: "ap-northeast-1", credentials: cache)
        let vpcs = try await ec2.describeVpcs()
        #expect(!vpcs.isEmpty)
        #expect(try fixture.invocations == 2)
    }

    @Test("many concurrent callers share one refresh")
    func singleRefreshForConcurrentCallers() async throws {
        let stack = try TestStack.current()
        let fixture = try CredentialProcessFixture(credentials: stack.credentials, lifetime: 3600)
        defer { fixture.remove() }
        let cache = makeCache(fixture, clock: TestClock())
        let keys = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<16 {
                group.addTask { try await cache.credentials().accessKeyID }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(keys.count == 16)
        #expect(Set(keys) == [stack.accessKeyID])
        #expect(try fixture.invocations == 1)
    }

    @Test("a failed refresh is not cached: the next caller tries again")
    func failedRefreshNotCached() async throws {
        let stack = try TestStack.current()
        let fixture = try CredentialProcessFixture(credentials: stack.credentials, lifetime: 3600)
        defer { fixture.remove() }
        try fixture.setFailing(true)
        let cache = makeCache(fixture, clock: TestClock())

        let first = await #expect(throws: CredentialsError.self) { _ = try await cache.credentials() }
        #expect(first?.code == .processFailed)
        #expect(first?.message.contains("injected failure") == true)
        await #expect(throws: CredentialsError.self) { _ = try await cache.credentials() }
        #expect(try fixture.invocations == 2)

        try fixture.setFailing(false)
        let credentials = try await cache.credentials()
        #expect(credentials.accessKeyID == stack.accessKeyID)
        #expect(try fixture.invocations == 3)
    }

    @Test("a failed renewal inside the window falls back to still-valid credentials, never past a demanded margin")
    func failedRenewalFallsBack() async throws {
        let stack = try TestStack.current()
        let fixture = try CredentialProcessFixture(credentials: stack.credentials, lifetime: 20 * 60)
        defer { fixture.remove() }
        let clock = TestClock()
        let cache = makeCache(fixture, clock: clock)
        let first = try await cache.credentials()

        try fixture.setFailing(true)
        clock.advance(by: 6 * 60) // 14 minutes left
        let fallback = try await cache.credentials(validFor: .seconds(10 * 60))
        #expect(fallback == first)
        #expect(try fixture.invocations == 2)

        let error = await #expect(throws: CredentialsError.self) {
            _ = try await cache.credentials(validFor: .seconds(15 * 60))
        }
        #expect(error?.code == .processFailed)
        #expect(try fixture.invocations == 3)
    }

    @Test("credentials(validFor:) renews until the credentials outlive the demanded margin, or fails")
    func demandedMargin() async throws {
        let stack = try TestStack.current()
        let fixture = try CredentialProcessFixture(credentials: stack.credentials, lifetime: 20 * 60)
        defer { fixture.remove() }
        let cache = makeCache(fixture, clock: TestClock(), window: .seconds(60))
        _ = try await cache.credentials()
        #expect(try fixture.invocations == 1)

        // 10 minutes are available from the cached credentials: no renewal.
        _ = try await cache.credentials(validFor: .seconds(10 * 60))
        #expect(try fixture.invocations == 1)

        // 30 minutes are not: a renewal is tried, and its 20 minutes are not enough either.
        let error = await #expect(throws: CredentialsError.self) {
            _ = try await cache.credentials(validFor: .seconds(30 * 60))
        }
        #expect(error?.code == .expired)
        #expect(try fixture.invocations == 2)

        try fixture.setLifetime(3600)
        let long = try await cache.credentials(validFor: .seconds(30 * 60))
        #expect(try #require(long.expiration).timeIntervalSinceNow > 30 * 60)
        #expect(try fixture.invocations == 3)
    }

    @Test("a request is never signed with expired credentials")
    func neverSignsExpired() async throws {
        let stack = try TestStack.current()
        let fixture = try CredentialProcessFixture(credentials: stack.credentials, lifetime: 120)
        defer { fixture.remove() }
        let clock = TestClock()
        let cache = makeCache(fixture, clock: clock, window: .seconds(30))
        try await FaultProxy.with(upstream: stack.endpoint) { proxy in
            let ec2 = stack.ec2(region: "ap-northeast-2", endpoint: proxy.endpoint, credentials: cache)
            _ = try await ec2.describeVpcs()
            #expect(try fixture.invocations == 1)
            let sentBefore = try await proxy.attempts("DescribeVpcs")
            #expect(sentBefore == 1)

            // Ten minutes later the cached credentials have expired, and the process only
            // hands out credentials that are already expired too.
            clock.advance(by: 10 * 60)
            let error = await #expect(throws: CredentialsError.self) { _ = try await ec2.describeVpcs() }
            #expect(error?.code == .expired)
            #expect(try fixture.invocations == 2)
            let sentAfter = try await proxy.attempts("DescribeVpcs")
            #expect(sentAfter == 1)

            // Once the process hands out fresh credentials again, calls go through.
            try fixture.setLifetime(3600)
            _ = try await ec2.describeVpcs()
            #expect(try fixture.invocations == 3)
            let sentLast = try await proxy.attempts("DescribeVpcs")
            #expect(sentLast == 2)
        }
    }

    @Test("a credential_process that outlives its timeout is refused with the limit, and is ended and awaited")
    func processTimeout() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("flotilla-credproc-pid"))
        defer { try? FileManager.default.removeItem(at: pidFile) }
        let provider = ProcessCredentialsProvider(
            command: "echo $$ > '\(pidFile.path)'; exec sleep 60", timeout: .milliseconds(500))
        let started = ContinuousClock.now
        let error = await #expect(throws: CredentialsError.self) {
            try await provider.resolveCredentials(logger: TestStack.logger)
        }
        #expect(error?.message.contains("did not finish within") == true, "\(String(describing: error))")
        #expect(ContinuousClock.now - started < .seconds(30))
        let pid = try #require(
            Int32(try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(pid, 0) != 0, "the command (pid \(pid)) still runs")
    }
}
