/// A provisioning or teardown failure: what went wrong, for a person, and the install
/// logs of the nodes that failed (`<phase>-<ip>-journald.log` → contents).
public struct ProvisionError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let value: String
        private init(_ value: String) { self.value = value }

        /// The cluster spec was refused; nothing was created.
        public static let invalidSpec = Code("invalid spec")
        /// A wait ran past its deadline; the message says what it waited for.
        public static let timeout = Code("timeout")
        /// SSH itself failed (unreachable node, refused key, changed host key).
        public static let ssh = Code("ssh")
        /// An installer phase failed on some nodes; `logs` holds their journals.
        public static let installFailed = Code("install failed")
        /// EC2 refused or failed a call; `underlying` is the `EC2Error`.
        public static let aws = Code("aws")
        /// What EC2 holds does not match what was recorded (for example a key pair of the
        /// same name with another public key).
        public static let conflict = Code("conflict")
        /// Teardown finished but resources tagged with the cluster remain.
        public static let leftovers = Code("leftovers")

        public var description: String { self.value }
        /// The code as one word (`install_failed`), for metric labels.
        public var label: String { self.value.replacingOccurrences(of: " ", with: "_") }
    }

    public var code: Code
    public var message: String
    /// Install logs by file name, for the caller to store.
    public var logs: [String: String]
    public var underlying: (any Error & Sendable)?

    public init(
        _ code: Code, _ message: String, logs: [String: String] = [:], underlying: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.message = message
        self.logs = logs
        self.underlying = underlying
    }

    /// `true` when running the same step again may succeed (timeouts, SSH and AWS hiccups);
    /// `false` for a refused spec, a failed install, a conflict, and an AWS refusal that
    /// retrying cannot change (``EC2Error/canHeal``).
    public var isRetryable: Bool {
        if self.code == .aws, let refusal = self.underlying as? EC2Error { return refusal.canHeal }
        return [.timeout, .ssh, .aws].contains(self.code)
    }

    public var description: String { self.message }
}
