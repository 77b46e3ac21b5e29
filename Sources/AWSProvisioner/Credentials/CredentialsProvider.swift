import Logging

/// Something that can produce AWS credentials: the environment, a profile, a
/// `credential_process`, an assumed role. Providers do not cache; wrap one in a
/// `CredentialsCache` to share and renew its credentials.
public protocol CredentialsProvider: Sendable {
    /// Fetches credentials anew.
    func resolveCredentials(logger: Logger) async throws -> AWSCredentials
    /// Temporary credentials this provider cannot renew (a session token given once), which
    /// then fail every call once they expire.
    var temporaryWithoutRenewal: Bool { get }
}

extension CredentialsProvider {
    public var temporaryWithoutRenewal: Bool { false }
}
