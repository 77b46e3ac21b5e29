/// Capped exponential backoff with jitter, for failed jobs and for AWS calls alike.
///
/// The ceiling after failed attempt `n` (1-based) is `base·2^(n-1)`, never more than
/// `maximum`; the delay is a uniformly random time in `[ceiling · (1 - jitter), ceiling]`.
/// `jitter` 1 is the AWS SDKs' "full jitter" (anything from zero to the ceiling); the job
/// queue uses 0.5, so a failed job always waits at least half its ceiling.
public struct RetryPolicy: Sendable, Hashable {
    public var base: Duration
    public var maximum: Duration
    /// The share of each delay that is random: 0 is none, 1 is full jitter.
    public var jitter: Double
    /// Attempts in all, the first one included, where the caller retries in place (the AWS
    /// clients). The job queue counts attempts per job instead (`max_attempts`).
    public var maximumAttempts: Int

    public init(
        base: Duration = .seconds(5), maximum: Duration = .seconds(600), jitter: Double = 0.5,
        maximumAttempts: Int = 5
    ) {
        precondition(maximumAttempts >= 1, "maximumAttempts must be at least 1")
        self.base = base
        self.maximum = maximum
        self.jitter = min(max(jitter, 0), 1)
        self.maximumAttempts = maximumAttempts
    }

    /// What the AWS clients use for throttled and transient failures: 5 attempts, full jitter
    /// under a ceiling that starts at 200 ms and stops at 20 s.
    public static let aws = RetryPolicy(
        base: .milliseconds(200), maximum: .seconds(20), jitter: 1, maximumAttempts: 5)

    /// The longest delay after failed attempt `attempt`.
    public func ceiling(afterAttempt attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 40)
        let seconds = min(self.base.seconds * Double(UInt64(1) << UInt64(exponent)), self.maximum.seconds)
        return .microseconds(Int64((seconds * 1e6).rounded()))
    }

    /// The delay after failed attempt `attempt`, with `random` in `0...1`.
    public func delay(afterAttempt attempt: Int, random: Double) -> Duration {
        let ceiling = self.ceiling(afterAttempt: attempt)
        let seconds = ceiling.seconds * (1 - self.jitter * min(max(random, 0), 1))
        return .microseconds(Int64((seconds * 1e6).rounded()))
    }

    /// The delay after failed attempt `attempt`, drawn from the system's generator.
    public func delay(afterAttempt attempt: Int) -> Duration {
        self.delay(afterAttempt: attempt, random: Double.random(in: 0...1))
    }
}
