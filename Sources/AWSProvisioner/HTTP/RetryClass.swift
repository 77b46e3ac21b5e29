/// How a failed AWS call may be retried. An open set: new classes can be added.
public struct RetryClass: Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Hashable {
        case throttling, transient, capacity, expiredCredentials, never
    }

    private let kind: Kind

    /// Throttled (`RequestLimitExceeded`, `Throttling`, HTTP 503/429 without a known code):
    /// retried with capped exponential backoff and full jitter.
    public static let throttling = RetryClass(kind: .throttling)
    /// A transient server or network failure (5xx, timeouts, resets): retried like throttling.
    public static let transient = RetryClass(kind: .transient)
    /// Not enough capacity for the request (`InsufficientInstanceCapacity`): never retried
    /// blindly, surfaced so the caller can choose another instance type or zone.
    public static let capacity = RetryClass(kind: .capacity)
    /// The credentials were rejected as expired (`ExpiredToken`, `RequestExpired`): one
    /// credential refresh and one retry.
    public static let expiredCredentials = RetryClass(kind: .expiredCredentials)
    /// Authentication, authorisation, validation and every other client error: not retried.
    public static let never = RetryClass(kind: .never)

    /// Whether the transport retries this class with backoff on its own.
    public var isRetriedWithBackoff: Bool { kind == .throttling || kind == .transient }

    public var description: String {
        switch kind {
        case .throttling: "throttling"
        case .transient: "transient"
        case .capacity: "capacity"
        case .expiredCredentials: "expiredCredentials"
        case .never: "never"
        }
    }
}
