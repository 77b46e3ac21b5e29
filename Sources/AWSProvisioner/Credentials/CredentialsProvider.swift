import Logging

/// Something that can produce AWS credentials: the environment, a profile, a
/// `credential_process`, an assumed role. Providers do not cache; wrap one in a
/// `CredentialsCache` to share and renew its credentials.
public protocol CredentialsProvider: Sendable {
    /// Fetches credentials anew.
    func resolveCredentials(logger: Logger) async throws -> AWSCredentials
}
