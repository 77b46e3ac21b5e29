import AWSProvisioner
import Foundation
import Testing

@Suite("Shared config files, profiles and AWSEnvironment", .timeLimit(.minutes(3)))
struct SharedConfigTests {
    static let config = """
        # comment
        [default]
        region = us-west-2
        output = json

        [profile base]
        region = eu-west-3   ; inline comment
        s3 =
          max_concurrent_requests = 20
          region = never-this
        credential_process = /bin/false

        [profile deploy]
        role_arn = arn:aws:iam::123456789012:role/flotilla-test-role
        source_profile = base
        role_session_name = flotilla-deploy

        [sso-session corp]
        sso_region = us-east-1
        """
    static let credentials = """
        [base]
        aws_access_key_id = AKIABASE
        aws_secret_access_key = base-secret

        [default]
        aws_access_key_id = AKIADEFAULT
        aws_secret_access_key = default-secret
        aws_session_token = default-token
        """

    @Test("config and credentials files merge per profile; comments and nested blocks are skipped")
    func parsing() throws {
        let files = SharedConfigFiles(config: Self.config, credentials: Self.credentials)
        let base = try #require(files.profile("base"))
        #expect(base["region"] == "eu-west-3")
        #expect(base["aws_access_key_id"] == "AKIABASE")
        #expect(base["credential_process"] == "/bin/false")
        #expect(base["max_concurrent_requests"] == nil)
        #expect(files.profile("default")?["aws_session_token"] == "default-token")
        #expect(files.profile("deploy")?["source_profile"] == "base")
        #expect(files.profile("corp") == nil)
        #expect(files.profile("missing") == nil)
    }

    /// Writes the two files to a fresh folder and returns the environment naming them.
    private func environment(config: String, credentials: String, _ extra: [String: String]) throws -> [String: String]
    {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("flotilla-aws-config"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configPath = directory.appendingPathComponent("config").path
        let credentialsPath = directory.appendingPathComponent("credentials").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        try credentials.write(toFile: credentialsPath, atomically: true, encoding: .utf8)
        return ["AWS_CONFIG_FILE": configPath, "AWS_SHARED_CREDENTIALS_FILE": credentialsPath, "HOME": directory.path]
            .merging(extra) { _, new in new }
    }

    @Test("region and endpoint precedence")
    func regionAndEndpoints() throws {
        let http = TestStack.httpClient
        let logger = TestStack.logger
        var env = try environment(config: Self.config, credentials: Self.credentials, ["AWS_PROFILE": "base"])
        var resolved = try AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger)
        #expect(resolved.region == "eu-west-3")
        #expect(resolved.ec2Configuration.endpoint.absoluteString == "https://ec2.eu-west-3.amazonaws.com")
        #expect(resolved.stsConfiguration.endpoint.absoluteString == "https://sts.eu-west-3.amazonaws.com")

        env["AWS_DEFAULT_REGION"] = "ap-south-1"
        #expect(try AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger).region == "ap-south-1")
        env["AWS_REGION"] = "ca-central-1"
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:5000"
        resolved = try AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger)
        #expect(resolved.region == "ca-central-1")
        #expect(resolved.ec2Configuration.endpoint.absoluteString == "http://127.0.0.1:5000")
        #expect(resolved.stsConfiguration.endpoint.absoluteString == "http://127.0.0.1:5000")
        env["AWS_ENDPOINT_URL_EC2"] = "http://127.0.0.1:5001"
        env["AWS_ENDPOINT_URL_STS"] = "http://127.0.0.1:5002"
        resolved = try AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger)
        #expect(resolved.ec2Configuration.endpoint.absoluteString == "http://127.0.0.1:5001")
        #expect(resolved.stsConfiguration.endpoint.absoluteString == "http://127.0.0.1:5002")
        #expect(resolved.ec2Configuration.region == "ca-central-1")

        env["AWS_ENDPOINT_URL_EC2"] = "not a url"
        #expect(throws: CredentialsError.self) {
            try AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger)
        }
    }

    @Test("credentials: environment first, then the profile's static keys, then credential_process")
    func credentialPrecedence() async throws {
        let http = TestStack.httpClient
        let logger = TestStack.logger
        var env = try environment(config: Self.config, credentials: Self.credentials, [:])
        let fromDefault = try await AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger)
            .credentialsProvider.resolveCredentials(logger: logger)
        #expect(fromDefault.accessKeyID == "AKIADEFAULT")
        #expect(fromDefault.sessionToken == "default-token")

        env["AWS_PROFILE"] = "base" // keys in the credentials file beat its credential_process
        let fromBase = try await AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger)
            .credentialsProvider.resolveCredentials(logger: logger)
        #expect(fromBase.accessKeyID == "AKIABASE")

        env["AWS_ACCESS_KEY_ID"] = "AKIAENV"
        env["AWS_SECRET_ACCESS_KEY"] = "env-secret"
        let fromEnvironment = try await AWSEnvironment.resolve(environment: env, httpClient: http, logger: logger)
            .credentialsProvider.resolveCredentials(logger: logger)
        #expect(fromEnvironment.accessKeyID == "AKIAENV")

        let processOnly = try environment(
            config: "[profile p]\ncredential_process = /bin/false\nregion = us-east-1\n", credentials: "",
            ["AWS_PROFILE": "p"])
        let failing = try AWSEnvironment.resolve(environment: processOnly, httpClient: http, logger: logger)
        let error = await #expect(throws: CredentialsError.self) {
            _ = try await failing.credentialsProvider.resolveCredentials(logger: logger)
        }
        #expect(error?.code == .processFailed)

        // Nothing configured and the instance role turned off (the chain would otherwise end
        // at the metadata service).
        let nothing = try environment(
            config: "[default]\nregion = us-east-1\n", credentials: "", ["AWS_EC2_METADATA_DISABLED": "true"])
        #expect(throws: CredentialsError.self) {
            try AWSEnvironment.resolve(environment: nothing, httpClient: http, logger: logger)
        }
        let cycle = try environment(
            config: "[profile a]\nrole_arn = r\nsource_profile = b\n[profile b]\nrole_arn = r\nsource_profile = a\n",
            credentials: "", ["AWS_PROFILE": "a", "AWS_REGION": "us-east-1"])
        let cycleError = #expect(throws: CredentialsError.self) {
            try AWSEnvironment.resolve(environment: cycle, httpClient: http, logger: logger)
        }
        #expect(cycleError?.code == .invalidConfiguration)
    }

    @Test("role_arn + source_profile assumes the role through STS (against moto)")
    func assumeRoleProfile() async throws {
        let stack = try TestStack.current()
        let config = """
            [profile deploy]
            role_arn = \(stack.roleARN)
            source_profile = base
            role_session_name = flotilla-profile-test
            duration_seconds = 1200
            region = \(stack.region)
            """
        let credentials =
            "[base]\naws_access_key_id = \(stack.accessKeyID)\naws_secret_access_key = \(stack.secretAccessKey)\n"
        let env = try environment(
            config: config, credentials: credentials,
            ["AWS_PROFILE": "deploy", "AWS_ENDPOINT_URL": stack.endpoint.absoluteString])
        let resolved = try AWSEnvironment.resolve(
            environment: env, httpClient: TestStack.httpClient, logger: TestStack.logger)
        let cache = resolved.makeCredentialsCache(logger: TestStack.logger)
        let assumed = try await cache.credentials(validFor: .seconds(10 * 60))
        #expect(assumed.sessionToken != nil)
        #expect(assumed.accessKeyID != stack.accessKeyID)
        #expect(abs(try #require(assumed.expiration).timeIntervalSinceNow - 1200) < 120)

        let sts = STSClient(
            configuration: resolved.stsConfiguration, credentials: cache, httpClient: TestStack.httpClient,
            logger: TestStack.logger)
        let identity = try await sts.getCallerIdentity()
        #expect(identity.arn.hasSuffix("assumed-role/flotilla-test-role/flotilla-profile-test"))
        let ec2 = EC2Client(
            configuration: resolved.ec2Configuration, credentials: cache, httpClient: TestStack.httpClient,
            logger: TestStack.logger)
        let vpcs = try await ec2.describeVpcs()
        #expect(!vpcs.isEmpty)
    }

    @Test("role_arn with a credential_process source profile (against moto)")
    func assumeRoleFromProcessProfile() async throws {
        let stack = try TestStack.current()
        let fixture = try CredentialProcessFixture(credentials: stack.credentials, lifetime: 3600)
        defer { fixture.remove() }
        let config = """
            [profile tool]
            credential_process = \(fixture.command)
            [profile deploy]
            role_arn = \(stack.roleARN)
            source_profile = tool
            """
        let env = try environment(
            config: config, credentials: "",
            [
                "AWS_PROFILE": "deploy", "AWS_REGION": stack.region,
                "AWS_ENDPOINT_URL_STS": stack.endpoint.absoluteString,
                "AWS_ENDPOINT_URL_EC2": stack.endpoint.absoluteString,
            ])
        let resolved = try AWSEnvironment.resolve(
            environment: env, httpClient: TestStack.httpClient, logger: TestStack.logger)
        let sts = STSClient(
            configuration: resolved.stsConfiguration,
            credentials: resolved.makeCredentialsCache(logger: TestStack.logger),
            httpClient: TestStack.httpClient, logger: TestStack.logger)
        let identity = try await sts.getCallerIdentity()
        #expect(identity.arn.contains("assumed-role/flotilla-test-role/"))
        #expect(try fixture.invocations == 1)
    }
}
