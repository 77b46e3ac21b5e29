/// The answer to `AssumeRole`: temporary credentials and the assumed-role user.
public struct AssumedRole: Sendable, Hashable, CustomStringConvertible {
    public var credentials: AWSCredentials
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    public var arn: String
    public var assumedRoleID: String

    public var description: String {
        "AssumedRole(arn: \(arn), credentials: \(credentials))"
    }
}
