import PostgresNIO

extension PSQLError {
    /// The five-character SQLSTATE the server sent, if it sent one.
    var sqlState: String? { self.serverInfo?[.sqlState] }
}

/// SQLSTATE codes the queue branches on.
enum SQLState {
    static let foreignKeyViolation = "23503"
    static let checkViolation = "23514"
    static let uniqueViolation = "23505"
    static let invalidTextRepresentation = "22P02"
    static let undefinedTable = "42P01"
    /// Raised by the cluster functions of migration 0003.
    static let invalidTransition = "FLT01"
    static let leaseLost = "FLT02"
    static let clusterState = "FLT03"
    static let noSuchCluster = "FLT04"
    /// Raised by the client API of migration 0004.
    static let policyRefused = "FLT05"
    static let invalidParameter = "22023"
    static let insufficientPrivilege = "42501"
}
