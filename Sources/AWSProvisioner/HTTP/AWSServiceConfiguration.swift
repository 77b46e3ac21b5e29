import Foundation
import Timing

/// Where and how to reach one AWS Query service (EC2 or STS): region, endpoint, retries
/// and timeouts. Built by hand or by `AWSEnvironment`.
public struct AWSServiceConfiguration: Sendable {
    /// The signing region, e.g. `us-west-2`.
    public var region: String
    /// The service endpoint, e.g. `https://ec2.us-west-2.amazonaws.com` or a local emulator.
    public var endpoint: URL
    public var retryPolicy: RetryPolicy
    /// The limit for one attempt, from sending the request to the last byte of the answer.
    /// The connect timeout is a property of the `HTTPClient` (see `HTTPClient.makeForAWS`).
    public var requestTimeout: Duration
    /// Requests are signed only with credentials valid for at least this long.
    public var minimumCredentialValidity: Duration

    public init(
        region: String,
        endpoint: URL,
        retryPolicy: RetryPolicy = .aws,
        requestTimeout: Duration = .seconds(30),
        minimumCredentialValidity: Duration = .seconds(60)
    ) {
        self.region = region
        self.endpoint = endpoint
        self.retryPolicy = retryPolicy
        self.requestTimeout = requestTimeout
        self.minimumCredentialValidity = minimumCredentialValidity
    }

    /// The public endpoint of `service` (`ec2`, `sts`) in `region`.
    public static func defaultEndpoint(service: String, region: String) -> URL {
        let suffix = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
        return URL(string: "https://\(service).\(region).\(suffix)")!
    }
}
