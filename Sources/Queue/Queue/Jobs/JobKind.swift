/// What a job does. An open set: the kinds a database accepts are the rows of
/// `job_kinds`, added by migrations; these are the ones Flotilla ships.
public struct JobKind: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    /// Does nothing: demos, tests and benchmarks.
    public static let noop: JobKind = "noop"
    /// Create a cluster's EC2 resources and install DC/OS on them.
    public static let provision: JobKind = "provision"
    /// Delete a cluster's EC2 resources.
    public static let teardown: JobKind = "teardown"

    public var description: String { self.rawValue }
}
