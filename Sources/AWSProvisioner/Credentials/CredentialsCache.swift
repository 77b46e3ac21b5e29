import Foundation
import Logging

/// Shares one provider's credentials among many callers and renews them before they expire.
///
/// - Credentials are renewed once they are within `refreshWindow` of expiring (default
///   15 minutes), or sooner when a caller asks for more validity than is left.
/// - Concurrent callers that need a renewal wait for the same single call to the provider.
/// - A failed renewal is not remembered: the next caller tries again. While a renewal
///   fails, callers still get the old credentials if those satisfy them; otherwise they
///   get the error.
/// - Nothing expired, or valid for less than the caller asked, is ever returned, so a
///   request is never signed with expired credentials.
///
/// An actor because callers must wait for a shared refresh.
public actor CredentialsCache {
    /// When to renew, and the clock that decides it.
    public struct Configuration: Sendable {
        /// How long before expiry credentials are renewed.
        public var refreshWindow: Duration
        /// The clock for expiry decisions; a test can move it forward.
        public var now: @Sendable () -> Date

        public init(refreshWindow: Duration = .seconds(15 * 60), now: @escaping @Sendable () -> Date = { Date() }) {
            self.refreshWindow = refreshWindow
            self.now = now
        }
    }

    public nonisolated let provider: any CredentialsProvider
    public nonisolated let configuration: Configuration
    private let logger: Logger
    private var current: AWSCredentials?
    private var refreshing: Task<AWSCredentials, any Error>?

    public init(provider: any CredentialsProvider, configuration: Configuration = Configuration(), logger: Logger) {
        self.provider = provider
        self.configuration = configuration
        self.logger = logger
    }

    /// Credentials that remain valid for at least `validFor` from now.
    ///
    /// Teardown asks for a margin (`credentials(validFor: .seconds(600))`) before deleting
    /// key pairs so that its credentials outlive the calls it is about to make.
    public func credentials(validFor: Duration = .zero) async throws -> AWSCredentials {
        let now = configuration.now()
        if let current, current.isValid(at: now, for: max(validFor, configuration.refreshWindow)) {
            return current
        }
        do {
            let fresh = try await refresh()
            guard fresh.isValid(at: configuration.now(), for: validFor) else {
                let expiration = fresh.expiration.map { $0.formatted(.iso8601) } ?? "none"
                throw CredentialsError(
                    .expired,
                    "the provider returned credentials that expire too soon"
                        + " (need \(validFor) of validity, expiration \(expiration))")
            }
            return fresh
        } catch {
            // Renewal ahead of expiry failed: old credentials still do if they satisfy the caller.
            if let current, current.isValid(at: configuration.now(), for: validFor) {
                logger.warning(
                    "credential renewal failed; using current credentials until they expire",
                    metadata: ["error": "\(String(describing: error))"])
                return current
            }
            throw error
        }
    }

    /// Renews the credentials now unless someone already replaced `stale` — used after AWS
    /// answered `ExpiredToken` for a request signed with `stale`.
    @discardableResult
    public func refresh(replacing stale: AWSCredentials) async throws -> AWSCredentials {
        if let current, current != stale, current.isValid(at: configuration.now()) {
            return current
        }
        current = nil
        return try await refresh()
    }

    /// Forgets the cached credentials; the next call fetches new ones.
    public func invalidate() {
        current = nil
    }

    /// Runs one provider call for all waiting callers; stores the result only on success.
    private func refresh() async throws -> AWSCredentials {
        if let refreshing {
            return try await refreshing.value
        }
        let provider = self.provider
        let logger = self.logger
        let task = Task<AWSCredentials, any Error> {
            try await provider.resolveCredentials(logger: logger)
        }
        refreshing = task
        defer { refreshing = nil }
        do {
            let fresh = try await task.value
            if fresh.isValid(at: configuration.now()) {
                current = fresh
            }
            logger.debug(
                "credentials renewed",
                metadata: [
                    "aws.credentials_expiration": "\(fresh.expiration.map { $0.formatted(.iso8601) } ?? "never")"
                ])
            return fresh
        } catch {
            logger.warning("credential renewal failed", metadata: ["error": "\(String(describing: error))"])
            throw error
        }
    }
}
