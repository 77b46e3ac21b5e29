/// Credentials could not be resolved or renewed. Never contains a secret.
public struct CredentialsError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. An open set.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Kind: Hashable {
            case notFound, invalidConfiguration, processFailed, expired, assumeRoleFailed
        }

        private let kind: Kind

        /// No source of credentials is configured (no environment keys, no usable profile).
        public static let notFound = Code(kind: .notFound)
        /// A profile or file is malformed or inconsistent (unknown `source_profile`, a cycle).
        public static let invalidConfiguration = Code(kind: .invalidConfiguration)
        /// `credential_process` failed or printed something unusable.
        public static let processFailed = Code(kind: .processFailed)
        /// The only credentials available have expired, or would not last as long as required.
        public static let expired = Code(kind: .expired)
        /// `AssumeRole` failed.
        public static let assumeRoleFailed = Code(kind: .assumeRoleFailed)

        public var description: String {
            switch kind {
            case .notFound: "notFound"
            case .invalidConfiguration: "invalidConfiguration"
            case .processFailed: "processFailed"
            case .expired: "expired"
            case .assumeRoleFailed: "assumeRoleFailed"
            }
        }
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        var text = "CredentialsError(\(code)): \(message)"
        if let underlying { text += " (\(String(describing: underlying)))" }
        return text
    }
}
