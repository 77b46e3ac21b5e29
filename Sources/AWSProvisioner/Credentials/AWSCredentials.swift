import Foundation
import Timing

/// An AWS access key, its secret, and for temporary credentials a session token and the
/// moment they stop working.
///
/// `description` and `debugDescription` never show the secret or the session token, so
/// credentials can be logged or end up in an error message without leaking.
public struct AWSCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials expire; `nil` for long-term keys.
    public var expiration: Date?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    /// Whether the credentials are still usable at `date` for at least `margin`.
    public func isValid(at date: Date, for margin: Duration = .zero) -> Bool {
        guard let expiration else { return true }
        return expiration.timeIntervalSince(date) > margin.seconds
    }

    public var description: String {
        var text = "AWSCredentials(accessKeyID: \(accessKeyID), secretAccessKey: <redacted>"
        if sessionToken != nil { text += ", sessionToken: <redacted>" }
        if let expiration { text += ", expiration: \(expiration.formatted(.iso8601))" }
        return text + ")"
    }

    public var debugDescription: String { description }
}
