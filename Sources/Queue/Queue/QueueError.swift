/// The one error type of the `Queue` module.
///
/// `code` says what went wrong in a way callers can branch on; `message` says it for a
/// person and never carries a secret; `underlying` keeps the cause (for example a
/// `PSQLError`, whose details are logged with `String(reflecting:)`).
public struct QueueError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is. An open set: compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case invalidInput = "invalid input"
            case unknownKind = "unknown job kind"
            case leaseLost = "lease lost"
            case notFound = "not found"
            case schemaBehind = "schema behind"
            case schemaAhead = "schema ahead"
            case migrationChanged = "migration changed"
            case invalidMigration = "invalid migration"
            case configuration = "configuration"
            case database = "database"
            case conflict = "conflict"
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A value was refused before anything was written.
        public static let invalidInput = Code(.invalidInput)
        /// The job kind is not registered in `job_kinds`.
        public static let unknownKind = Code(.unknownKind)
        /// The caller no longer holds the job's lease: it expired and was rescued, or the
        /// job was handed to another worker. Nothing was changed.
        public static let leaseLost = Code(.leaseLost)
        /// No row with that id.
        public static let notFound = Code(.notFound)
        /// The database lacks migrations this binary needs: run `worker migrate`.
        public static let schemaBehind = Code(.schemaBehind)
        /// The database has migrations this binary does not know.
        public static let schemaAhead = Code(.schemaAhead)
        /// An applied migration's file no longer matches the checksum recorded when it ran.
        public static let migrationChanged = Code(.migrationChanged)
        /// A migration file is malformed or misnamed.
        public static let invalidMigration = Code(.invalidMigration)
        /// The database settings (URL, `PG*` variables) are unusable.
        public static let configuration = Code(.configuration)
        /// The cluster is not in a state that allows the change (the state machine refused it).
        public static let conflict = Code(.conflict)
        /// PostgreSQL answered with an error not covered above.
        public static let database = Code(.database)

        public var description: String { self.value.rawValue }
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { self.message }
}
