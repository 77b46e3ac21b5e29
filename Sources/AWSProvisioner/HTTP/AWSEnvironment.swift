import AsyncHTTPClient
import Foundation
import Logging

/// Region, endpoints and credentials resolved as the AWS SDKs and CLI resolve them.
///
/// - Profile: `AWS_PROFILE`, else `default`.
/// - Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`.
/// - Endpoints: `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL_STS`, then `AWS_ENDPOINT_URL`,
///   then the profile's `endpoint_url`, then the public regional endpoint.
/// - Credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`),
///   else the profile from `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE` (see
///   `ProfileCredentials`).
///
/// ```swift
/// let http = HTTPClient.makeForAWS()
/// let aws = try AWSEnvironment.resolve(httpClient: http, logger: logger)
/// let credentials = aws.makeCredentialsCache(logger: logger)
/// let ec2 = EC2Client(configuration: aws.ec2Configuration, credentials: credentials, httpClient: http, logger: logger)
/// ```
public struct AWSEnvironment: Sendable {
    public var profile: String
    public var region: String
    public var ec2Configuration: AWSServiceConfiguration
    public var stsConfiguration: AWSServiceConfiguration
    public var credentialsProvider: any CredentialsProvider

    public init(
        profile: String, region: String, ec2Configuration: AWSServiceConfiguration,
        stsConfiguration: AWSServiceConfiguration, credentialsProvider: any CredentialsProvider
    ) {
        self.profile = profile
        self.region = region
        self.ec2Configuration = ec2Configuration
        self.stsConfiguration = stsConfiguration
        self.credentialsProvider = credentialsProvider
    }

    /// Resolves everything from `environment` and the shared files it names.
    /// - Parameter cacheConfiguration: the renewal window used for source credentials of assumed roles.
    public static func resolve(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        httpClient: HTTPClient,
        cacheConfiguration: CredentialsCache.Configuration = .init(),
        logger: Logger
    ) throws -> AWSEnvironment {
        let files = try SharedConfigFiles.load(environment: environment)
        let profile = nonEmpty(environment["AWS_PROFILE"]) ?? "default"
        let settings = files.profile(profile) ?? [:]
        guard
            let region = nonEmpty(environment["AWS_REGION"]) ?? nonEmpty(environment["AWS_DEFAULT_REGION"])
                ?? nonEmpty(settings["region"])
        else {
            throw CredentialsError(.invalidConfiguration, "no AWS region: set AWS_REGION or the profile's region")
        }
        func endpoint(_ service: String, _ variable: String) throws -> URL {
            guard
                let text = nonEmpty(environment[variable]) ?? nonEmpty(environment["AWS_ENDPOINT_URL"])
                    ?? nonEmpty(settings["endpoint_url"])
            else {
                return AWSServiceConfiguration.defaultEndpoint(service: service, region: region)
            }
            guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw CredentialsError(.invalidConfiguration, "\(variable) or AWS_ENDPOINT_URL is not an http(s) URL")
            }
            return url
        }
        let ec2 = AWSServiceConfiguration(region: region, endpoint: try endpoint("ec2", "AWS_ENDPOINT_URL_EC2"))
        let sts = AWSServiceConfiguration(region: region, endpoint: try endpoint("sts", "AWS_ENDPOINT_URL_STS"))

        let provider = try Self.credentialsChain(
            environment: environment, files: files, profile: profile, sts: sts,
            httpClient: httpClient, cacheConfiguration: cacheConfiguration, logger: logger)
        return AWSEnvironment(
            profile: profile, region: region, ec2Configuration: ec2, stsConfiguration: sts,
            credentialsProvider: provider)
    }

    /// The first source configured, in the SDKs' order: environment keys, a web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), the profile (keys, role,
    /// `credential_process`, SSO), the container role (`AWS_CONTAINER_CREDENTIALS_*`), the
    /// instance role (IMDSv2; `AWS_EC2_METADATA_DISABLED=true` turns it off).
    static func credentialsChain(
        environment: [String: String], files: SharedConfigFiles, profile: String,
        sts: AWSServiceConfiguration, httpClient: HTTPClient,
        cacheConfiguration: CredentialsCache.Configuration, logger: Logger
    ) throws -> any CredentialsProvider {
        let provider = try Self.firstSource(
            environment: environment, files: files, profile: profile, sts: sts, httpClient: httpClient,
            cacheConfiguration: cacheConfiguration, logger: logger)
        if provider.temporaryWithoutRenewal {
            // Nothing can renew these: say so now, not when a key pair cannot be deleted.
            logger.warning(
                """
                AWS credentials are temporary (a session token in the environment or the profile) and nothing can \
                renew them: once they expire every AWS call (key-pair deletions included) fails until the worker \
                restarts with new ones. Prefer a role, a profile with role_arn, or instance credentials
                """)
        }
        return provider
    }

    private static func firstSource(
        environment: [String: String], files: SharedConfigFiles, profile: String,
        sts: AWSServiceConfiguration, httpClient: HTTPClient,
        cacheConfiguration: CredentialsCache.Configuration, logger: Logger
    ) throws -> any CredentialsProvider {
        let fromEnvironment = EnvironmentCredentialsProvider(environment: environment)
        if fromEnvironment.isConfigured {
            return fromEnvironment
        }
        if let tokenFile = nonEmpty(environment["AWS_WEB_IDENTITY_TOKEN_FILE"]) {
            guard let role = nonEmpty(environment["AWS_ROLE_ARN"]) else {
                throw CredentialsError(.invalidConfiguration, "AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN")
            }
            return WebIdentityCredentialsProvider(
                roleARN: role, tokenFile: tokenFile, sessionName: nonEmpty(environment["AWS_ROLE_SESSION_NAME"]),
                stsEndpoint: sts.endpoint, httpClient: httpClient)
        }
        let profiles = ProfileCredentials(
            files: files, environment: environment, stsConfiguration: sts,
            httpClient: httpClient, cacheConfiguration: cacheConfiguration)
        var profileError: CredentialsError?
        do {
            return try profiles.provider(for: profile, logger: logger)
        } catch let error as CredentialsError where error.code == .notFound {
            // A profile asked for by name must exist; only the implicit default may be absent.
            if nonEmpty(environment["AWS_PROFILE"]) != nil && files.profile(profile) == nil { throw error }
            profileError = error
        }
        if let container = try ContainerCredentialsProvider.fromEnvironment(environment, httpClient: httpClient) {
            return container
        }
        if nonEmpty(environment["AWS_EC2_METADATA_DISABLED"])?.lowercased() != "true" {
            // The last resort: on EC2 the instance role; anywhere else its failure names the
            // sources that were looked for.
            let timeout =
                nonEmpty(environment["AWS_METADATA_SERVICE_TIMEOUT"]).flatMap(Double.init).flatMap { $0 > 0 ? $0 : nil }
                ?? 1
            let attempts =
                nonEmpty(environment["AWS_METADATA_SERVICE_NUM_ATTEMPTS"]).flatMap(Int.init).flatMap {
                    $0 > 0 ? $0 : nil
                } ?? 2
            return InstanceMetadataCredentialsProvider(
                endpoint: nonEmpty(environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"]), httpClient: httpClient,
                otherwise:
                    "no AWS credentials in the environment, a web identity, profile \(profile) or a container role",
                timeout: .milliseconds(Int64(timeout * 1000)), attempts: attempts)
        }
        throw CredentialsError(
            .notFound,
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a web identity, profile \(profile), "
                + "a container role or an instance role",
            underlying: profileError)
    }

    /// A cache over the resolved provider, to share between the EC2 and STS clients.
    public func makeCredentialsCache(configuration: CredentialsCache.Configuration = .init(), logger: Logger)
        -> CredentialsCache
    {
        CredentialsCache(provider: credentialsProvider, configuration: configuration, logger: logger)
    }

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value = value?.trimmingWhitespace(), !value.isEmpty else { return nil }
        return value
    }
}
