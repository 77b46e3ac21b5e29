import AsyncHTTPClient
import Logging

/// The EC2 Query API (`Version=2016-11-15`), the calls Flotilla needs.
///
/// Every call is signed with credentials from the `CredentialsCache` that are valid for at
/// least `configuration.minimumCredentialValidity`, and retried per `AWSQueryTransport`'s
/// rules. Failures are `EC2Error`s; `Describe…` calls follow `nextToken` to the end.
public struct EC2Client: Sendable {
    public let configuration: AWSServiceConfiguration
    let transport: AWSQueryTransport

    /// - Parameter httpClient: shared; the caller shuts it down (see `HTTPClient.makeForAWS`).
    public init(
        configuration: AWSServiceConfiguration, credentials: CredentialsCache, httpClient: HTTPClient, logger: Logger
    ) {
        self.configuration = configuration
        transport = AWSQueryTransport(
            service: "ec2", apiVersion: "2016-11-15", configuration: configuration,
            credentials: credentials, httpClient: httpClient, logger: logger)
    }

    func send(_ action: String, _ parameters: EC2QueryParameters) async throws -> XMLNode {
        try await transport.send(action: action, parameters: parameters.items)
    }

    /// Calls a `Describe…` action page by page until `nextToken` is absent, collecting `extract` of each page.
    func describeAll<T>(_ action: String, _ parameters: EC2QueryParameters, extract: (XMLNode) -> [T]) async throws
        -> [T]
    {
        var results: [T] = []
        var nextToken: String?
        var seenTokens: Set<String> = []
        repeat {
            var page = parameters
            page.add("NextToken", nextToken)
            let root = try await send(action, page)
            results += extract(root)
            nextToken = root.string("nextToken")
            if let token = nextToken {
                guard seenTokens.insert(token).inserted else {
                    throw EC2Error(code: EC2Error.Code.invalidResponse, message: "\(action) repeated a nextToken")
                }
            }
        } while nextToken != nil
        return results
    }
}

extension XMLNode {
    /// The direct child `name`, which every well-formed answer to `action` has.
    func required(_ name: String, answering action: String) throws -> XMLNode {
        guard let child = self.child(name) else {
            throw EC2Error(code: EC2Error.Code.invalidResponse, message: "\(action) answer lacks \(name)")
        }
        return child
    }
}
