import AWSProvisioner
import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing

@testable import Fleet

/// The janitor's AWS passes one at a time, against PostgreSQL and the emulator: what each
/// does on success, on failure, and when it must not act yet.
@Suite("Janitor passes, one at a time", .timeLimit(.minutes(5)))
struct JanitorPassTests {
    /// A context whose secret key is wrong: the emulator (signatures checked) refuses every call
    /// at once, as AWS does with revoked credentials. (A closed port would fail too, but only
    /// after the HTTP client's connect retries: 25 s a call.)
    static func refused(_ stack: FleetStack) throws -> AWSContext {
        var environment = stack.environment
        environment["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-key"
        return try AWSContext.fromEnvironment(environment, logger: FleetStack.logger)
    }

    static func withPasses(
        _ body: @Sendable (FleetStack, PostgresClient, ClusterStore, AWSContext, AWSContext) async throws -> Void
    ) async throws {
        let stack = try await FleetStack.make(sshDirectory: "/tmp/fl-" + UUID().uuidString.prefix(8).lowercased())
        let aws = try AWSContext.fromEnvironment(stack.environment, logger: FleetStack.logger)
        let broken = try Self.refused(stack)
        do {
            try await stack.database.withClient(maximumConnections: 4, logger: FleetStack.logger) { client in
                try await body(stack, client, ClusterStore(client: client, logger: FleetStack.logger), aws, broken)
            }
        } catch {
            await aws.shutdown()
            await broken.shutdown()
            throw error
        }
        await aws.shutdown()
        await broken.shutdown()
    }

    static func publicKey() -> String {
        SSHKeyPair.generate(comment: "janitor-tests").publicKeyLine
    }

    /// A cluster row in `state`, as the lifecycle would have left it.
    static func cluster(_ client: PostgresClient, state: String, region: String, expiresIn: Double? = nil) async throws
        -> String
    {
        let id = "c-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
        try await client.query(
            """
            INSERT INTO clusters (id, owner, masters, agents, public_agents, instance_type, request, lifetime, region)
            VALUES (\(id), 'janitor-tests', 1, 0, 0, 'm4.large', '{}', '2 hours', \(region))
            """, logger: FleetStack.logger)
        // Through the transitions the state machine allows, so the trigger stays satisfied.
        let path: [String] =
            switch state {
            case "ready": ["provisioning", "ready"]
            case "destroyed": ["provisioning", "failed", "tearing_down", "destroyed"]
            default: []
            }
        for next in path {
            try await client.query(
                """
                UPDATE clusters SET state = \(next),
                    ready_at = CASE WHEN \(next) = 'ready' THEN now() ELSE ready_at END,
                    expires_at = CASE WHEN \(next) = 'ready' THEN now() + make_interval(secs => \(expiresIn ?? 3600))
                                      ELSE expires_at END
                WHERE id = \(id)
                """, logger: FleetStack.logger)
        }
        return id
    }

    static func scalar<T: PostgresDecodable & Sendable>(_ client: PostgresClient, _ query: PostgresQuery, as: T.Type)
        async throws -> T
    {
        for try await value in try await client.query(query, logger: FleetStack.logger).decode(T.self) {
            return value
        }
        throw QueueError(.notFound, "no row")
    }

    @Test("key-pair deletion: a failure stays pending with its error, waits out a doubling backoff, then succeeds")
    func keyPairDeletionBackoff() async throws {
        try await Self.withPasses { _, client, store, aws, broken in
            let region = aws.region
            let name = "flotilla-janitor-" + UUID().uuidString.prefix(8).lowercased()
            _ = try await aws.ec2.importKeyPair(name: name, publicKey: Self.publicKey())
            try await store.scheduleKeyPairDeletion(region: region, keyPairName: name, clusterID: nil)
            func row() async throws -> (attempts: Int, waitSeconds: Double, error: String?, deleted: Bool) {
                let rows = try await client.query(
                    """
                    SELECT attempts, extract(epoch FROM next_attempt_at - now())::float8, last_error,
                           deleted_at IS NOT NULL
                    FROM key_pair_deletions WHERE region = \(region) AND key_pair_name = \(name)
                    """, logger: FleetStack.logger)
                for try await (attempts, wait, error, deleted) in rows.decode((Int, Double, String?, Bool).self) {
                    return (attempts, wait, error, deleted)
                }
                throw QueueError(.notFound, "no deletion row")
            }
            func makePass(_ context: AWSContext) -> KeyPairDeletionPass {
                KeyPairDeletionPass(
                    store: store, aws: context, interval: .seconds(5), credentialMargin: .seconds(60),
                    logger: FleetStack.logger)
            }

            _ = try await makePass(broken).pass()
            var now = try await row()
            #expect(now.attempts == 1 && !now.deleted && now.error?.isEmpty == false, "\(now)")
            #expect(now.error?.contains("not-the-secret-key") == false, "the kept error holds no secret")
            #expect((25...31).contains(now.waitSeconds), "first retry after 30 s: \(now)")
            // Not due yet: a pass leaves it alone, even with AWS reachable.
            _ = try await makePass(aws).pass()
            #expect(try await row().attempts == 1)
            #expect(try await aws.ec2.describeKeyPairs(names: [name]).count == 1)

            // Due again, failing again: the wait doubles.
            try await client.query(
                "UPDATE key_pair_deletions SET next_attempt_at = now() WHERE key_pair_name = \(name)",
                logger: FleetStack.logger)
            _ = try await makePass(broken).pass()
            now = try await row()
            #expect(now.attempts == 2 && !now.deleted, "\(now)")
            #expect((55...61).contains(now.waitSeconds), "second retry after 60 s: \(now)")

            // Due, AWS reachable: deleted in AWS, then the row is closed and its error cleared.
            try await client.query(
                "UPDATE key_pair_deletions SET next_attempt_at = now() WHERE key_pair_name = \(name)",
                logger: FleetStack.logger)
            _ = try await makePass(aws).pass()
            now = try await row()
            #expect(now.deleted && now.error == nil && now.attempts == 3, "\(now)")
            #expect(try await aws.ec2.describeKeyPairs(filters: [.init(name: "key-name", values: [name])]).isEmpty)
        }
    }

    @Test("expiry tags: written when ready, retried 5 minutes after a failure (not before), rewritten after an extend")
    func expiryTagRetry() async throws {
        try await Self.withPasses { _, client, store, aws, broken in
            let id = try await Self.cluster(client, state: "ready", region: aws.region)
            let group = try await aws.ec2.createSecurityGroup(
                name: "flotilla-\(id)", description: "janitor tests", vpcID: nil,
                tags: [EC2Tag(key: "cluster", value: id), EC2Tag(key: "managed-by", value: "flotilla")])
            func expiresTag() async throws -> String? {
                try await aws.ec2.describeSecurityGroups(groupIDs: [group]).first?.tags.first { $0.key == "expires" }?
                    .value
            }
            func expiry() async throws -> String {
                ISO8601DateFormatter().string(
                    from: try await Self.scalar(
                        client, "SELECT expires_at FROM clusters WHERE id = \(id)", as: Date.self))
            }
            func makePass(_ context: AWSContext) -> ExpiryTagPass {
                ExpiryTagPass(store: store, aws: context, interval: .seconds(5), logger: FleetStack.logger)
            }

            _ = try await makePass(broken).pass()
            #expect(try await expiresTag() == nil)
            #expect(
                try await Self.scalar(
                    client, "SELECT expiry_tag_failed_at IS NOT NULL FROM clusters WHERE id = \(id)", as: Bool.self))
            // Within the 5 minutes after a failure, even a working pass does not try again.
            _ = try await makePass(aws).pass()
            #expect(try await expiresTag() == nil)

            try await client.query(
                "UPDATE clusters SET expiry_tag_failed_at = now() - interval '6 minutes' WHERE id = \(id)",
                logger: FleetStack.logger)
            _ = try await makePass(aws).pass()
            #expect(try await expiresTag() == (try await expiry()))

            // An extend moves the expiry: the next pass moves the tag.
            try await client.query(
                "UPDATE clusters SET expires_at = expires_at + interval '1 hour' WHERE id = \(id)",
                logger: FleetStack.logger)
            _ = try await makePass(aws).pass()
            #expect(try await expiresTag() == (try await expiry()))
            try await aws.ec2.deleteSecurityGroup(groupID: group)
        }
    }

    @Test("sweep --dry-run reports what it would remove and removes nothing; then a real sweep removes exactly that")
    func sweepDryRun() async throws {
        try await Self.withPasses { _, client, store, aws, _ in
            let ec2 = aws.ec2
            let deployment = try await Self.scalar(client, "SELECT id::text FROM deployment", as: String.self)
            let destroyed = try await Self.cluster(client, state: "destroyed", region: aws.region)
            let ready = try await Self.cluster(client, state: "ready", region: aws.region)
            let longAgo = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-7200))
            func tags(_ cluster: String, deployment: String = deployment, created: String? = nil) -> [EC2Tag] {
                [
                    EC2Tag(key: "managed-by", value: "flotilla"), EC2Tag(key: "deployment", value: deployment),
                    EC2Tag(key: "cluster", value: cluster),
                ] + (created.map { [EC2Tag(key: "created", value: $0)] } ?? [])
            }
            let suffix = UUID().uuidString.prefix(8).lowercased()
            // Swept: a destroyed cluster's group and key pair; an unknown cluster's, past the grace.
            let leakedGroup = try await ec2.createSecurityGroup(
                name: "sweep-destroyed-\(suffix)", description: "t", vpcID: nil, tags: tags(destroyed))
            let leakedKey = "sweep-unknown-\(suffix)"
            _ = try await ec2.importKeyPair(
                name: leakedKey, publicKey: Self.publicKey(), tags: tags("c-unknown\(suffix)", created: longAgo))
            // Kept: a ready cluster's, another deployment's, an unknown cluster's still in its grace.
            let kept = [
                try await ec2.createSecurityGroup(
                    name: "sweep-ready-\(suffix)", description: "t", vpcID: nil, tags: tags(ready)),
                try await ec2.createSecurityGroup(
                    name: "sweep-other-\(suffix)", description: "t", vpcID: nil,
                    tags: tags(destroyed, deployment: "another-deployment")),
                try await ec2.createSecurityGroup(
                    name: "sweep-young-\(suffix)", description: "t", vpcID: nil,
                    tags: tags("c-young\(suffix)", created: ISO8601DateFormatter().string(from: Date()))),
            ]
            func makePass(dryRun: Bool) -> SweepPass {
                SweepPass(
                    store: store, aws: aws, deployment: deployment, interval: .seconds(300), grace: .seconds(3600),
                    dryRun: dryRun, logger: FleetStack.logger)
            }

            let report = try await makePass(dryRun: true).sweep(region: aws.region)
            #expect(report.securityGroups == [leakedGroup] && report.keyPairs == [leakedKey], "\(report)")
            #expect(
                try await ec2.describeSecurityGroups(groupIDs: [leakedGroup]).count == 1, "a dry run deletes nothing")
            #expect(try await ec2.describeKeyPairs(names: [leakedKey]).count == 1)
            #expect(
                try await Self.scalar(client, "SELECT count(*)::int FROM key_pair_deletions", as: Int.self) == 0,
                "nor schedules a deletion")
            #expect(
                try await Self.scalar(
                    client,
                    """
                    SELECT dry_run AND security_groups = \([leakedGroup])::text[] FROM sweep_reports
                    WHERE region = \(aws.region)
                    """, as: Bool.self),
                "the report says what a real sweep would remove")

            let real = try await makePass(dryRun: false).sweep(region: aws.region)
            #expect(real.securityGroups == [leakedGroup] && real.keyPairs == [leakedKey], "\(real)")
            #expect(
                try await ec2.describeSecurityGroups(filters: [.init(name: "group-id", values: [leakedGroup])])
                    .isEmpty)
            #expect(
                try await Self.scalar(
                    client, "SELECT count(*)::int FROM key_pair_deletions WHERE key_pair_name = \(leakedKey)",
                    as: Int.self) == 1, "the key pair goes through the renewing deletion pass")
            for group in kept {
                #expect(try await ec2.describeSecurityGroups(groupIDs: [group]).count == 1, "kept: \(group)")
                try await ec2.deleteSecurityGroup(groupID: group)
            }
        }
    }
}
