import Foundation

/// A job a worker holds. Every state change it makes is fenced on `leaseToken`.
public struct ClaimedJob: Sendable, Hashable {
    public var id: Int64
    public var kind: JobKind
    /// The job's JSON object, as text.
    public var payload: String
    /// 1 on the first run, counting runs that failed or whose lease expired.
    public var attempt: Int
    public var maxAttempts: Int
    /// A fresh token per claim. Pass it into external calls as an idempotency handle.
    public var leaseToken: UUID
    public var leaseExpiresAt: Date
    public var createdAt: Date
    /// Seconds from the job becoming runnable (`run_after`) to this claim, by the database's clock.
    public var waitedSeconds: Double = 0

    /// Decodes the payload.
    public func decodePayload<Payload: Decodable>(_ type: Payload.Type = Payload.self) throws -> Payload {
        try JSONDecoder().decode(type, from: Data(self.payload.utf8))
    }
}

/// A job as an operator sees it.
public struct JobRecord: Sendable, Hashable {
    public var id: Int64
    public var kind: JobKind
    public var payload: String
    public var state: JobState
    public var priority: Int
    public var attempt: Int
    public var maxAttempts: Int
    public var runAfter: Date
    public var idempotencyKey: String?
    public var leaseOwner: String?
    public var leaseExpiresAt: Date?
    public var heartbeatAt: Date?
    public var cancelRequested: Bool
    public var lastError: String?
    public var createdAt: Date
    public var finishedAt: Date?
}
