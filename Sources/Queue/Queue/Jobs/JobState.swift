/// Where a job is in its life: `queued` → `running` → `succeeded` | `failed` | `cancelled`,
/// with `running` → `queued` on a retry, a rescue or a hand-back at shutdown.
public struct JobState: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        guard Self.all.contains(where: { $0.rawValue == rawValue }) else { return nil }
        self.rawValue = rawValue
    }

    private init(_ rawValue: String) { self.rawValue = rawValue }

    public static let queued = JobState("queued")
    public static let running = JobState("running")
    public static let succeeded = JobState("succeeded")
    public static let failed = JobState("failed")
    public static let cancelled = JobState("cancelled")

    public static let all: [JobState] = [.queued, .running, .succeeded, .failed, .cancelled]

    /// `true` for the states a job never leaves.
    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }

    public var description: String { self.rawValue }
}
