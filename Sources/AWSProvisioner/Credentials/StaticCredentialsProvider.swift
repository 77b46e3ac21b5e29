import Logging

/// Hands out the same credentials every time (long-term keys, or keys from a profile).
public struct StaticCredentialsProvider: CredentialsProvider {
    public var credentials: AWSCredentials

    public init(_ credentials: AWSCredentials) {
        self.credentials = credentials
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        credentials
    }

    /// A profile's `aws_session_token` is given once: nothing renews it.
    public var temporaryWithoutRenewal: Bool { credentials.sessionToken != nil }
}
