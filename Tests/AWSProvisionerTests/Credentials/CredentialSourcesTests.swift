import AWSProvisioner
import AsyncHTTPClient
import Foundation
import Logging
import Synchronization
import Testing

/// The credential sources a fleet really uses, each resolved through the chain from an
/// environment that configures only it, against its endpoint emulated on loopback
/// (scripts/fixtures/credential-endpoints.py), and then used for a signed EC2 call to the
/// emulator (signature checking on): instance role (IMDSv2), container role, web identity,
/// SSO; and temporary keys in the environment, reported as not renewable.
@Suite("Credential sources: instance role, container role, web identity, SSO", .timeLimit(.minutes(3)))
struct CredentialSourcesTests {
    struct Secrets: Encodable {
        var ecsToken = "ecs-" + UUID().uuidString
        var oidcToken = "eyJhbGciOiJSUzI1NiJ9.e30." + UUID().uuidString
        var roleARN = "arn:aws:iam::123456789012:role/flotilla-oidc"
        var ssoToken = "sso-" + UUID().uuidString
        var ssoAccount = "123456789012"
        var ssoRole = "FlotillaWorker"

        enum CodingKeys: String, CodingKey {
            case ecsToken = "ecs_token"
            case oidcToken = "oidc_token"
            case roleARN = "role_arn"
            case ssoToken = "sso_token"
            case ssoAccount = "sso_account"
            case ssoRole = "sso_role"
        }
    }

    /// A folder with the emulator's secrets, the token file and an SSO cache, as HOME.
    static func home() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flotilla-creds-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent(".aws/sso/cache"), withIntermediateDirectories: true)
        return folder
    }

    /// Resolves credentials from `environment` (plus region, emulator, no shared files) and
    /// signs a DescribeVpcs to the emulator with them.
    static func resolveAndCall(_ environment: [String: String], home: URL) async throws -> (
        any CredentialsProvider, AWSCredentials
    ) {
        let stack = try TestStack.current()
        let empty = home.appendingPathComponent("empty-config").path
        FileManager.default.createFile(atPath: empty, contents: Data((environment["CONFIG"] ?? "").utf8))
        var env = [
            "AWS_REGION": stack.region, "AWS_ENDPOINT_URL_EC2": stack.endpoint.absoluteString, "HOME": home.path,
            "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty, "AWS_EC2_METADATA_DISABLED": "true",
        ]
        env.merge(environment.filter { $0.key != "CONFIG" }) { $1 }
        let resolved = try AWSEnvironment.resolve(
            environment: env, httpClient: TestStack.httpClient, logger: TestStack.logger)
        let cache = resolved.makeCredentialsCache(logger: TestStack.logger)
        let credentials = try await cache.credentials(validFor: .seconds(60))
        let ec2 = EC2Client(
            configuration: resolved.ec2Configuration, credentials: cache, httpClient: TestStack.httpClient,
            logger: TestStack.logger)
        _ = try await ec2.describeVpcs()
        return (resolved.credentialsProvider, credentials)
    }

    @Test("each source resolves through the chain to temporary credentials that sign calls the emulator accepts")
    func sources() async throws {
        let stack = try TestStack.current()
        let home = try Self.home()
        defer { try? FileManager.default.removeItem(at: home) }
        let secrets = Secrets()
        let secretsFile = home.appendingPathComponent("secrets.json")
        try JSONEncoder().encode(secrets).write(to: secretsFile)
        let fixture = try await LoopbackFixture.start(
            "credential-endpoints.py", [stack.endpoint.absoluteString, secretsFile.path])
        do {
            let endpoint = fixture.endpoint.absoluteString

            // EC2 instance role, IMDSv2 only.
            let (imds, fromIMDS) = try await Self.resolveAndCall(
                // A loaded test machine answers slower than a real metadata service: the SDKs' knob.
                [
                    "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
                    "AWS_METADATA_SERVICE_TIMEOUT": "20",
                ], home: home)
            #expect(imds is InstanceMetadataCredentialsProvider)
            #expect(fromIMDS.sessionToken != nil && fromIMDS.expiration != nil)

            // ECS container role with its authorization token (from a file, as EKS Pod Identity does).
            let tokenFile = home.appendingPathComponent("ecs-token")
            try Data(secrets.ecsToken.utf8).write(to: tokenFile)
            let (ecs, fromECS) = try await Self.resolveAndCall(
                [
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint + "/ecs/credentials",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile.path,
                ],
                home: home)
            #expect(ecs is ContainerCredentialsProvider)
            #expect(fromECS.sessionToken != nil)

            // Web identity (EKS service account, CI OIDC): unsigned AssumeRoleWithWebIdentity.
            let oidc = home.appendingPathComponent("oidc-token")
            try Data(secrets.oidcToken.utf8).write(to: oidc)
            let (web, fromWeb) = try await Self.resolveAndCall(
                [
                    "AWS_WEB_IDENTITY_TOKEN_FILE": oidc.path, "AWS_ROLE_ARN": secrets.roleARN,
                    "AWS_ENDPOINT_URL_STS": endpoint,
                ], home: home)
            #expect(web is WebIdentityCredentialsProvider)
            #expect(fromWeb.expiration != nil)

            // SSO: the token `aws sso login` cached for the sso-session, exchanged at the portal.
            let cache = home.appendingPathComponent(".aws/sso/cache").appendingPathComponent(
                SSOCredentialsProvider.cacheFileName("corp"))
            let expires = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
            try Data(
                #"{"accessToken": "\#(secrets.ssoToken)", "expiresAt": "\#(expires)", "region": "us-east-1"}"#.utf8
            ).write(to: cache)
            let config = """
                [default]
                sso_session = corp
                sso_account_id = \(secrets.ssoAccount)
                sso_role_name = \(secrets.ssoRole)
                [sso-session corp]
                sso_region = us-east-1
                sso_start_url = https://corp.awsapps.com/start
                """
            let (sso, fromSSO) = try await Self.resolveAndCall(
                ["CONFIG": config, "AWS_ENDPOINT_URL_SSO": endpoint], home: home)
            #expect(sso is SSOCredentialsProvider)
            #expect(fromSSO.sessionToken != nil && fromSSO.expiration != nil)

            // An expired SSO token says what to do, before any call.
            let stale = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-60))
            try Data(#"{"accessToken": "\#(secrets.ssoToken)", "expiresAt": "\#(stale)"}"#.utf8).write(to: cache)
            let expired = await #expect(throws: CredentialsError.self) {
                _ = try await Self.resolveAndCall(["CONFIG": config, "AWS_ENDPOINT_URL_SSO": endpoint], home: home)
            }
            #expect(
                expired?.code == .expired && expired?.message.contains("aws sso login") == true,
                "\(String(describing: expired))")

            // A wrong OIDC token is refused by STS and reported as such.
            try Data("not-the-token".utf8).write(to: oidc)
            let refused = await #expect(throws: CredentialsError.self) {
                _ = try await Self.resolveAndCall(
                    [
                        "AWS_WEB_IDENTITY_TOKEN_FILE": oidc.path, "AWS_ROLE_ARN": secrets.roleARN,
                        "AWS_ENDPOINT_URL_STS": endpoint,
                    ], home: home)
            }
            #expect(
                refused?.code == .assumeRoleFailed && "\(String(describing: refused))".contains("InvalidIdentityToken"))

            // What the endpoints saw: IMDSv2 tokens and never a token-less (IMDSv1) read.
            let stats = try await Self.stats(fixture.endpoint)
            #expect((stats["imds token"] ?? 0) >= 1 && stats["imds refused: no token (IMDSv1)"] == nil, "\(stats)")
            #expect((stats["ecs credentials"] ?? 0) >= 1 && stats["ecs refused"] == nil, "\(stats)")
            // The wrong token was tried three times (STS may refuse a token the IdP has not published yet).
            #expect((stats["web identity credentials"] ?? 0) >= 1 && stats["web identity refused"] == 3, "\(stats)")
            #expect((stats["sso credentials"] ?? 0) >= 1 && stats["sso refused"] == nil, "\(stats)")
        } catch {
            await fixture.stop()
            throw error
        }
        await fixture.stop()
    }

    @Test(
        "the container token goes over plain http only to loopback or the container agent; a named profile must exist"
    )
    func refusals() throws {
        let http = TestStack.httpClient
        for url in ["http://10.0.0.5/credentials", "http://169.254.169.254/latest"] {
            #expect(throws: CredentialsError.self, "\(url)") {
                _ = try ContainerCredentialsProvider.fromEnvironment(
                    ["AWS_CONTAINER_CREDENTIALS_FULL_URI": url], httpClient: http)
            }
        }
        for url in [
            "http://127.0.0.1:8080/credentials", "http://169.254.170.23/v1/credentials",
            "https://credentials.example/role",
        ] {
            #expect(
                try ContainerCredentialsProvider.fromEnvironment(
                    ["AWS_CONTAINER_CREDENTIALS_FULL_URI": url], httpClient: http) != nil, "\(url)")
        }
        let home = try Self.home()
        defer { try? FileManager.default.removeItem(at: home) }
        let config = home.appendingPathComponent("config").path
        FileManager.default.createFile(atPath: config, contents: Data("[profile other]\nregion = us-east-1\n".utf8))
        let missing = #expect(throws: CredentialsError.self) {
            _ = try AWSEnvironment.resolve(
                environment: [
                    "AWS_PROFILE": "ci", "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": config,
                    "AWS_SHARED_CREDENTIALS_FILE": config, "HOME": home.path,
                ],
                httpClient: http, logger: TestStack.logger)
        }
        #expect(missing?.message.contains("profile ci") == true, "\(String(describing: missing))")
    }

    @Test("temporary keys in the environment are reported at start as not renewable")
    func temporaryEnvironmentKeys() throws {
        let messages = CapturingHandler.Messages()
        var logger = Logger(label: "test") { _ in CapturingHandler(messages: messages) }
        logger.logLevel = .info
        let home = try Self.home()
        defer { try? FileManager.default.removeItem(at: home) }
        let empty = home.appendingPathComponent("empty").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        let base = [
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
        ]
        _ = try AWSEnvironment.resolve(environment: base, httpClient: TestStack.httpClient, logger: logger)
        #expect(messages.all.isEmpty, "long-term keys are not warned about")
        _ = try AWSEnvironment.resolve(
            environment: base.merging(["AWS_SESSION_TOKEN": "token"]) { $1 },
            httpClient: TestStack.httpClient, logger: logger)
        let said = messages.all
        #expect(
            said.count == 1 && said[0].contains("nothing can renew them") && said[0].contains("key-pair deletions"),
            "\(said)")
        #expect(!said.joined().contains("secret") && !said.joined().contains("token\""))
    }

    @Test(
        "a key-pair deletion with temporary credentials nothing can renew, about to expire, says so and sends nothing")
    func unrenewableKeyPairDeletion() async throws {
        let cluster = try LoopbackCluster.current()
        let expiring = ISO8601DateFormatter().string(from: Date().addingTimeInterval(120))
        let provider = EnvironmentCredentialsProvider(environment: [
            "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token",
            "AWS_CREDENTIAL_EXPIRATION": expiring,
        ])
        #expect(provider.temporaryWithoutRenewal)
        let observer = RecordingObserver()
        let provisioner = cluster.provisioner(
            credentials: CredentialsCache(provider: provider, logger: TestStack.logger))
        let error = await #expect(throws: ProvisionError.self) {
            _ = try await provisioner.deleteKeyPair(
                named: "flotilla-unrenewable", margin: .seconds(600), observer: observer)
        }
        #expect(
            error?.message.contains("nothing can renew them") == true
                && error?.message.contains("stays pending deletion") == true,
            "\(String(describing: error))")
        #expect(observer.mutations == 0, "no deletion was attempted")
    }

    static func stats(_ endpoint: URL) async throws -> [String: Int] {
        let request = HTTPClientRequest(url: endpoint.appendingPathComponent("__stats__").absoluteString)
        let response = try await TestStack.httpClient.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 16)
        return try JSONDecoder().decode([String: Int].self, from: Data(body.readableBytesView))
    }
}

/// Keeps the messages logged through it.
struct CapturingHandler: LogHandler {
    final class Messages: Sendable {
        private let value = Mutex<[String]>([])
        var all: [String] { self.value.withLock { $0 } }
        func append(_ message: String) { self.value.withLock { $0.append(message) } }
    }
    let messages: Messages
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        self.messages.append(message.description)
    }
}
