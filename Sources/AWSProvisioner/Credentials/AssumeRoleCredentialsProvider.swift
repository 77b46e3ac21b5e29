import AsyncHTTPClient
import Foundation
import Logging

/// Temporary credentials from STS `AssumeRole`, signed with source credentials — the shared
/// config's `role_arn` + `source_profile`.
public struct AssumeRoleCredentialsProvider: CredentialsProvider {
    public var roleARN: String
    public var sessionName: String
    public var externalID: String?
    public var duration: Duration?
    let sts: STSClient

    /// - Parameters:
    ///   - source: the credentials that call `AssumeRole`.
    ///   - stsConfiguration: where STS is (honours `AWS_ENDPOINT_URL_STS` when built by `AWSEnvironment`).
    public init(
        roleARN: String,
        sessionName: String? = nil,
        externalID: String? = nil,
        duration: Duration? = nil,
        source: CredentialsCache,
        stsConfiguration: AWSServiceConfiguration,
        httpClient: HTTPClient,
        logger: Logger
    ) {
        self.roleARN = roleARN
        self.sessionName = sessionName ?? "flotilla-\(Int(Date().timeIntervalSince1970))"
        self.externalID = externalID
        self.duration = duration
        sts = STSClient(configuration: stsConfiguration, credentials: source, httpClient: httpClient, logger: logger)
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        logger.debug("assuming role", metadata: ["aws.role_arn": "\(roleARN)"])
        do {
            return try await sts.assumeRole(
                roleARN: roleARN, sessionName: sessionName, duration: duration, externalID: externalID
            ).credentials
        } catch let error as EC2Error {
            throw CredentialsError(.assumeRoleFailed, "AssumeRole \(roleARN) failed", underlying: error)
        }
    }
}
