/// How long a failed job waits before it runs again: exponential backoff with full jitter,
/// capped. Attempt `n` (1-based) waits a uniformly random time in
/// `[base·2^(n-1) · (1 - jitter), base·2^(n-1)]`, never more than `maximum`.
public struct RetryPolicy: Sendable, Hashable {
    public var base: Duration = .seconds(5)
    public var maximum: Duration = .seconds(600)
    /// The share of each delay that is random: 0 is none, 1 is full jitter.
    public var jitter: Double = 0.5

    public init(base: Duration = .seconds(5), maximum: Duration = .seconds(600), jitter: Double = 0.5) {
        self.base = base
        self.maximum = maximum
        self.jitter = min(max(jitter, 0), 1)
    }

    /// The delay before the run after failed attempt `attempt`, with `random` in `0..<1`.
    public func delay(afterAttempt attempt: Int, random: Double) -> Duration {
        let ceiling = self.ceiling(afterAttempt: attempt)
        let seconds = ceiling.seconds * (1 - self.jitter * min(max(random, 0), 1))
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// The longest delay after failed attempt `attempt`.
    public func ceiling(afterAttempt attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 40)
        let seconds = min(self.base.seconds * Double(UInt64(1) << UInt64(exponent)), self.maximum.seconds)
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    public func delay(afterAttempt attempt: Int) -> Duration {
        self.delay(afterAttempt: attempt, random: Double.random(in: 0..<1))
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    public var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
