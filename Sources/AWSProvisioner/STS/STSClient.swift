import AsyncHTTPClient
import Foundation
import Logging
import Timing

/// The AWS Security Token Service Query API (`Version=2011-06-15`): `AssumeRole` and
/// `GetCallerIdentity`.
public struct STSClient: Sendable {
    let transport: AWSQueryTransport

    /// - Parameters:
    ///   - configuration: region and endpoint (the regional `sts.REGION.amazonaws.com` by default).
    ///   - credentials: the caller's credentials.
    ///   - httpClient: shared; the caller shuts it down.
    public init(
        configuration: AWSServiceConfiguration, credentials: CredentialsCache, httpClient: HTTPClient, logger: Logger
    ) {
        transport = AWSQueryTransport(
            service: "sts", apiVersion: "2011-06-15", configuration: configuration,
            credentials: credentials, httpClient: httpClient, logger: logger)
    }

    /// Who the credentials belong to.
    public func getCallerIdentity() async throws -> CallerIdentity {
        let root = try await transport.send(action: "GetCallerIdentity", parameters: [])
        guard let result = root.child("GetCallerIdentityResult"), let arn = result.string("Arn") else {
            throw EC2Error(code: EC2Error.Code.invalidResponse, message: "GetCallerIdentity answer lacks Arn")
        }
        return CallerIdentity(account: result.string("Account") ?? "", arn: arn, userID: result.string("UserId") ?? "")
    }

    /// Temporary credentials for `roleARN`.
    /// - Parameter duration: how long they last (AWS allows 15 minutes up to the role's maximum).
    public func assumeRole(roleARN: String, sessionName: String, duration: Duration? = nil, externalID: String? = nil)
        async throws -> AssumedRole
    {
        var parameters = [("RoleArn", roleARN), ("RoleSessionName", sessionName)]
        if let duration { parameters.append(("DurationSeconds", String(Int(duration.seconds)))) }
        if let externalID { parameters.append(("ExternalId", externalID)) }
        let root = try await transport.send(action: "AssumeRole", parameters: parameters)
        guard let result = root.child("AssumeRoleResult"),
            let key = result.string("Credentials/AccessKeyId"),
            let secret = result.string("Credentials/SecretAccessKey"),
            let expirationText = result.string("Credentials/Expiration"),
            let expiration = AWSTimestamp.parse(expirationText)
        else {
            throw EC2Error(
                code: EC2Error.Code.invalidResponse, message: "AssumeRole answer lacks credentials or their expiration")
        }
        let credentials = AWSCredentials(
            accessKeyID: key, secretAccessKey: secret,
            sessionToken: result.string("Credentials/SessionToken"), expiration: expiration)
        return AssumedRole(
            credentials: credentials, arn: result.string("AssumedRoleUser/Arn") ?? "",
            assumedRoleID: result.string("AssumedRoleUser/AssumedRoleId") ?? "")
    }
}
