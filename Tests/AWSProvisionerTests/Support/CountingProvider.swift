import AWSProvisioner
import Logging
import Synchronization

/// Wraps a provider and counts how often it is asked for credentials.
final class CountingProvider: CredentialsProvider {
    private let base: any CredentialsProvider
    private let count = Mutex(0)

    init(_ base: any CredentialsProvider) {
        self.base = base
    }

    var calls: Int { count.withLock { $0 } }

    func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        count.withLock { $0 += 1 }
        return try await base.resolveCredentials(logger: logger)
    }
}
