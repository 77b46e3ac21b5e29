import AWSProvisioner
import AsyncHTTPClient
import Foundation
import Logging
import Timing

/// The local stack that `./scripts/test` starts (see scripts/lib/moto.sh): moto_server with
/// signature checking on and an IAM user allowed ec2:*, sts:*, iam:*.
struct TestStack: Sendable {
    struct Missing: Error, CustomStringConvertible {
        var variable: String
        var description: String { "\(variable) is not set: run ./scripts/test, which starts moto_server and sets it" }
    }

    var endpoint: URL
    var accessKeyID: String
    var secretAccessKey: String
    var region: String
    var roleARN: String

    var credentials: AWSCredentials {
        AWSCredentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey)
    }

    /// The stack's settings; throws (failing the test) when `./scripts/test` did not start it.
    static func current() throws -> TestStack {
        let environment = ProcessInfo.processInfo.environment
        func value(_ name: String) throws -> String {
            guard let value = environment[name], !value.isEmpty else { throw Missing(variable: name) }
            return value
        }
        guard let endpoint = URL(string: try value("FLOTILLA_TEST_AWS_ENDPOINT")) else {
            throw Missing(variable: "FLOTILLA_TEST_AWS_ENDPOINT (a valid URL)")
        }
        return TestStack(
            endpoint: endpoint,
            accessKeyID: try value("FLOTILLA_TEST_AWS_ACCESS_KEY_ID"),
            secretAccessKey: try value("FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY"),
            region: try value("FLOTILLA_TEST_AWS_REGION"),
            roleARN: environment["FLOTILLA_TEST_AWS_ROLE_ARN"] ?? "arn:aws:iam::123456789012:role/flotilla-test-role")
    }

    /// One HTTP client for the whole test process (never shut down: it lives as long as the process).
    /// Every suite that talks to the emulator shares it, so its pool is wider than a worker's.
    static let httpClient = HTTPClient.makeForAWS(connectTimeout: .seconds(2), connectionsPerHost: 64)

    static let logger: Logger = {
        var logger = Logger(label: "flotilla.tests.aws")
        logger.logLevel = .critical
        return logger
    }()

    /// A service configuration for `endpoint` (moto or a fault proxy) with fast retries. The
    /// request timeout is long: moto builds a region's backend on its first request, which
    /// took over 20 s while every suite started at once on a loaded 2-core machine, and a
    /// timeout there is a retry that tests counting attempts would see (the timeout rule has
    /// its own test, with its own short limit).
    func configuration(
        region: String? = nil, endpoint: URL? = nil, maximumAttempts: Int = 4,
        requestTimeout: Duration = .seconds(90)
    ) -> AWSServiceConfiguration {
        AWSServiceConfiguration(
            region: region ?? self.region,
            endpoint: endpoint ?? self.endpoint,
            retryPolicy: RetryPolicy(
                base: .milliseconds(5), maximum: .milliseconds(40), jitter: 1, maximumAttempts: maximumAttempts),
            requestTimeout: requestTimeout)
    }

    func cache(_ provider: (any CredentialsProvider)? = nil) -> CredentialsCache {
        CredentialsCache(provider: provider ?? StaticCredentialsProvider(credentials), logger: Self.logger)
    }

    func ec2(
        region: String? = nil, endpoint: URL? = nil, credentials: CredentialsCache? = nil, maximumAttempts: Int = 4,
        requestTimeout: Duration = .seconds(90)
    ) -> EC2Client {
        EC2Client(
            configuration: configuration(
                region: region, endpoint: endpoint, maximumAttempts: maximumAttempts, requestTimeout: requestTimeout),
            credentials: credentials ?? cache(), httpClient: Self.httpClient, logger: Self.logger)
    }

    func sts(region: String? = nil, endpoint: URL? = nil, credentials: CredentialsCache? = nil) -> STSClient {
        STSClient(
            configuration: configuration(region: region, endpoint: endpoint),
            credentials: credentials ?? cache(), httpClient: Self.httpClient, logger: Self.logger)
    }
}

/// Paths inside the repository.
enum Repository {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func fixture(_ name: String) -> String {
        root.appendingPathComponent("scripts/fixtures/\(name)").path
    }
}

/// A unique suffix for names of things created in the shared emulator.
func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}
