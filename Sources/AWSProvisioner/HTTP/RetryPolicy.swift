/// Capped exponential backoff with full jitter, as the AWS SDKs use: before retry *n*
/// (1-based) wait a uniformly random time in `0 ... min(maximumDelay, baseDelay * 2^(n-1))`.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all for throttled and transient failures, the first one included.
    public var maximumAttempts: Int
    public var baseDelay: Duration
    public var maximumDelay: Duration

    public init(
        maximumAttempts: Int = 5, baseDelay: Duration = .milliseconds(200), maximumDelay: Duration = .seconds(20)
    ) {
        precondition(maximumAttempts >= 1, "maximumAttempts must be at least 1")
        self.maximumAttempts = maximumAttempts
        self.baseDelay = baseDelay
        self.maximumDelay = maximumDelay
    }

    public static let `default` = RetryPolicy()

    /// The upper bound of the jittered delay before retry number `retry` (1-based).
    public func delayCap(beforeRetry retry: Int) -> Duration {
        let exponent = min(max(retry - 1, 0), 30)
        let uncapped = baseDelay * (1 << exponent)
        return min(uncapped, maximumDelay)
    }

    /// A random delay in `0 ... delayCap(beforeRetry:)`.
    public func delay<G: RandomNumberGenerator>(beforeRetry retry: Int, using generator: inout G) -> Duration {
        let cap = delayCap(beforeRetry: retry)
        let capNanoseconds = max(Int64(cap.timeInterval * 1e9), 0)
        return .nanoseconds(Int64.random(in: 0...capNanoseconds, using: &generator))
    }

    /// A random delay in `0 ... delayCap(beforeRetry:)` from the system generator.
    public func delay(beforeRetry retry: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(beforeRetry: retry, using: &generator)
    }
}
