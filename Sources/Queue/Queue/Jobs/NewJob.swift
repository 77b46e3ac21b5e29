import Foundation

/// A job to enqueue, validated before anything is written.
public struct NewJob: Sendable {
    public var kind: JobKind
    /// A JSON object, as text.
    public var payload: String
    /// Higher runs first; 0 to 32767.
    public var priority: Int
    public var maxAttempts: Int
    /// Not runnable before this moment; `nil` means now.
    public var runAfter: Date?
    /// Enqueueing a job with a key that is already taken returns the job that holds it.
    public var idempotencyKey: String?

    public init(
        kind: JobKind, payload: String = "{}", priority: Int = 0, maxAttempts: Int = 5,
        runAfter: Date? = nil, idempotencyKey: String? = nil
    ) {
        self.kind = kind
        self.payload = payload
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.runAfter = runAfter
        self.idempotencyKey = idempotencyKey
    }

    /// Encodes `payload` as the job's JSON object.
    public init<Payload: Encodable>(
        kind: JobKind, payload: Payload, priority: Int = 0, maxAttempts: Int = 5,
        runAfter: Date? = nil, idempotencyKey: String? = nil
    ) throws {
        let data = try JSONEncoder().encode(payload)
        self.init(
            kind: kind, payload: String(decoding: data, as: UTF8.self), priority: priority,
            maxAttempts: maxAttempts, runAfter: runAfter, idempotencyKey: idempotencyKey)
    }

    /// `^[a-z][a-z0-9_.-]{0,62}$`, checked by hand: enqueueing is a hot path, and building a
    /// regular expression per call showed up as a fifth of the enqueuer's CPU time.
    static func isWellFormedKind(_ kind: String) -> Bool {
        let bytes = kind.utf8
        guard (1...63).contains(bytes.count), let first = bytes.first,
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first)
        else {
            return false
        }
        return bytes.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
        }
    }

    /// Refuses what the database would refuse, with a message that says what is accepted.
    public func validate() throws {
        guard Self.isWellFormedKind(self.kind.rawValue) else {
            throw QueueError(
                .invalidInput,
                "job kind '\(self.kind.rawValue.prefix(64))' is malformed: use 1 to 63 lower-case letters, digits, "
                    + "'_', '.', '-', starting with a letter")
        }
        guard (0...Int(Int16.max)).contains(self.priority) else {
            throw QueueError(
                .invalidInput, "priority \(self.priority) is out of range: use 0 to \(Int16.max) (higher runs first)")
        }
        guard (1...1000).contains(self.maxAttempts) else {
            throw QueueError(.invalidInput, "max attempts \(self.maxAttempts) is out of range: use 1 to 1000")
        }
        if let key = self.idempotencyKey, !(1...200).contains(key.count) {
            throw QueueError(.invalidInput, "an idempotency key must be 1 to 200 characters long")
        }
        let object = try? JSONSerialization.jsonObject(with: Data(self.payload.utf8), options: [.fragmentsAllowed])
        guard object is [String: Any] else {
            throw QueueError(.invalidInput, "a job payload must be a JSON object, like {\"cluster\": \"c-1\"}")
        }
    }
}
