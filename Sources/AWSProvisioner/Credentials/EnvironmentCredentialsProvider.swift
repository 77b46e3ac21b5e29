import Foundation
import Logging

/// Credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
/// `AWS_SESSION_TOKEN` (and `AWS_CREDENTIAL_EXPIRATION`, ISO 8601), read at each resolve.
public struct EnvironmentCredentialsProvider: CredentialsProvider {
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// A session token from the environment is temporary and nothing here can renew it.
    public var temporaryWithoutRenewal: Bool { !(environment["AWS_SESSION_TOKEN"] ?? "").isEmpty }

    /// Whether the environment holds an access key and a secret.
    public var isConfigured: Bool {
        !(environment["AWS_ACCESS_KEY_ID"] ?? "").isEmpty && !(environment["AWS_SECRET_ACCESS_KEY"] ?? "").isEmpty
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        guard let key = environment["AWS_ACCESS_KEY_ID"], !key.isEmpty,
            let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty
        else {
            throw CredentialsError(.notFound, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set")
        }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let expiration = environment["AWS_CREDENTIAL_EXPIRATION"].flatMap(AWSTimestamp.parse)
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }
}
