import AsyncHTTPClient
import Foundation
import Logging

/// Builds the credentials provider for a named profile of the shared config files, with
/// the AWS CLI's precedence: `role_arn` (with `source_profile` or `credential_source`),
/// then static keys, then `credential_process`.
public struct ProfileCredentials: Sendable {
    public var files: SharedConfigFiles
    public var environment: [String: String]
    /// STS for `role_arn` profiles.
    public var stsConfiguration: AWSServiceConfiguration
    public var httpClient: HTTPClient
    /// The renewal window for source credentials of assumed roles.
    public var cacheConfiguration: CredentialsCache.Configuration

    public init(
        files: SharedConfigFiles, environment: [String: String], stsConfiguration: AWSServiceConfiguration,
        httpClient: HTTPClient, cacheConfiguration: CredentialsCache.Configuration = .init()
    ) {
        self.files = files
        self.environment = environment
        self.stsConfiguration = stsConfiguration
        self.httpClient = httpClient
        self.cacheConfiguration = cacheConfiguration
    }

    /// The provider for `profile`.
    public func provider(for profile: String, logger: Logger) throws -> any CredentialsProvider {
        try provider(for: profile, visited: [], logger: logger)
    }

    private func provider(for profile: String, visited: [String], logger: Logger) throws -> any CredentialsProvider {
        guard !visited.contains(profile) else {
            throw CredentialsError(
                .invalidConfiguration, "source_profile cycle: \((visited + [profile]).joined(separator: " -> "))")
        }
        guard let settings = files.profile(profile) else {
            throw CredentialsError(
                .notFound, "profile \(profile) is not defined in the shared config or credentials file")
        }
        if let roleARN = settings["role_arn"] {
            let source: any CredentialsProvider
            if let sourceProfile = settings["source_profile"] {
                // A profile naming itself as source uses its own static keys (AWS CLI behaviour).
                if sourceProfile == profile, let keys = staticKeys(settings) {
                    source = StaticCredentialsProvider(keys)
                } else {
                    source = try provider(for: sourceProfile, visited: visited + [profile], logger: logger)
                }
            } else if let credentialSource = settings["credential_source"] {
                guard credentialSource == "Environment" else {
                    throw CredentialsError(
                        .invalidConfiguration,
                        "profile \(profile): credential_source \(credentialSource) is not supported")
                }
                source = EnvironmentCredentialsProvider(environment: environment)
            } else {
                throw CredentialsError(
                    .invalidConfiguration,
                    "profile \(profile) has role_arn but neither source_profile nor credential_source")
            }
            let duration = settings["duration_seconds"].flatMap(Int.init).map { Duration.seconds($0) }
            return AssumeRoleCredentialsProvider(
                roleARN: roleARN,
                sessionName: settings["role_session_name"],
                externalID: settings["external_id"],
                duration: duration,
                source: CredentialsCache(provider: source, configuration: cacheConfiguration, logger: logger),
                stsConfiguration: stsConfiguration,
                httpClient: httpClient,
                logger: logger)
        }
        if let keys = staticKeys(settings) {
            return StaticCredentialsProvider(keys)
        }
        if let command = settings["credential_process"] {
            return ProcessCredentialsProvider(command: command)
        }
        if let account = settings["sso_account_id"], let role = settings["sso_role_name"] {
            return try self.ssoProvider(profile: profile, settings: settings, account: account, role: role)
        }
        throw CredentialsError(
            .notFound, "profile \(profile) has no credentials (keys, credential_process, role_arn or sso_*)")
    }

    /// IAM Identity Center: `sso_session` (a `[sso-session NAME]` section with `sso_region`
    /// and `sso_start_url`), or the legacy `sso_start_url` + `sso_region` in the profile.
    private func ssoProvider(profile: String, settings: [String: String], account: String, role: String) throws
        -> SSOCredentialsProvider
    {
        let cacheKey: String
        let region: String?
        if let session = settings["sso_session"] {
            guard let section = files.ssoSessions[session] else {
                throw CredentialsError(
                    .invalidConfiguration,
                    "profile \(profile) names sso_session \(session), which has no [sso-session \(session)] section")
            }
            cacheKey = session
            region = section["sso_region"]
        } else {
            guard let start = settings["sso_start_url"] else {
                throw CredentialsError(
                    .invalidConfiguration,
                    "profile \(profile) has sso_account_id but neither sso_session nor sso_start_url")
            }
            cacheKey = start
            region = settings["sso_region"]
        }
        guard let region else { throw CredentialsError(.invalidConfiguration, "profile \(profile): no sso_region") }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let portal = (environment["AWS_ENDPOINT_URL_SSO"]).flatMap { $0.isEmpty ? nil : URL(string: $0) }
        return SSOCredentialsProvider(
            accountID: account, roleName: role, region: region, cacheKey: cacheKey,
            cacheDirectory: URL(fileURLWithPath: home).appendingPathComponent(".aws/sso/cache"),
            portal: portal, httpClient: httpClient)
    }

    private func staticKeys(_ settings: [String: String]) -> AWSCredentials? {
        guard let key = settings["aws_access_key_id"], !key.isEmpty,
            let secret = settings["aws_secret_access_key"], !secret.isEmpty
        else { return nil }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: settings["aws_session_token"])
    }
}
