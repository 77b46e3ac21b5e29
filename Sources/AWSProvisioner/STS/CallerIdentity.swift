/// The answer to `GetCallerIdentity`.
public struct CallerIdentity: Sendable, Hashable {
    public var account: String
    public var arn: String
    public var userID: String

    public init(account: String, arn: String, userID: String) {
        self.account = account
        self.arn = arn
        self.userID = userID
    }
}
