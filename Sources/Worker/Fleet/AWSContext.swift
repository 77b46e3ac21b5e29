import AWSProvisioner
import AsyncHTTPClient
import Foundation
import Logging
import Queue
import Synchronization

/// The AWS side of a worker: one HTTP client, the credentials cache, the cluster settings,
/// and EC2 clients and provisioners for any region, all from the environment.
///
/// A cluster lives in the region recorded in its row. A worker builds and tears down in
/// that region, whatever its own `AWS_REGION` says: ``ec2(region:)`` signs for the region
/// and, unless an endpoint was configured explicitly, talks to that region's endpoint.
package struct AWSContext: Sendable {
    package let httpClient: HTTPClient
    package let credentials: CredentialsCache
    package let environment: AWSEnvironment
    package let settings: ClusterSettings
    let logger: Logger
    private let account = AccountCache()

    /// The worker's own region: new clusters are built here.
    package var region: String { self.environment.region }

    /// The EC2 client of the worker's own region.
    package var ec2: EC2Client { self.ec2(region: self.region) }

    package static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger
    ) throws -> AWSContext {
        let http = HTTPClient.makeForAWS(connectTimeout: .seconds(5))
        do {
            let aws = try AWSEnvironment.resolve(environment: environment, httpClient: http, logger: logger)
            let credentials = aws.makeCredentialsCache(logger: logger)
            let settings = try ClusterSettings.fromEnvironment(region: aws.region, environment)
            let removed = ClusterProvisioner.removeAbandonedShellFolders(in: settings.sshDirectory)
            if removed > 0 {
                logger.notice("removed SSH folders of workers that died", metadata: ["folders": "\(removed)"])
            }
            return AWSContext(
                httpClient: http, credentials: credentials, environment: aws, settings: settings, logger: logger)
        } catch {
            try? http.syncShutdown()
            throw error
        }
    }

    /// An EC2 client for `region`.
    package func ec2(region: String, logger: Logger? = nil) -> EC2Client {
        EC2Client(
            configuration: Self.configuration(
                self.environment.ec2Configuration, service: "ec2", from: self.region, to: region),
            credentials: self.credentials, httpClient: self.httpClient, logger: logger ?? self.logger)
    }

    /// A provisioner working in `region`.
    /// - Parameter capacity: where capacity failures are shared (the fleet's, for provisioning).
    package func provisioner(
        region: String, logger: Logger? = nil, capacity: any CapacityRecord = CapacityMemory.shared
    )
        -> ClusterProvisioner
    {
        ClusterProvisioner(
            ec2: self.ec2(region: region, logger: logger), credentials: self.credentials, logger: logger ?? self.logger,
            capacity: capacity, makeShell: ClusterProvisioner.openSSHShells(baseDirectory: self.settings.sshDirectory))
    }

    /// The account the credentials belong to, asked once (nil when STS does not answer).
    func accountID() async -> String? {
        if let known = self.account.value.withLock({ $0 }) { return known }
        let sts = STSClient(
            configuration: self.environment.stsConfiguration, credentials: self.credentials,
            httpClient: self.httpClient, logger: self.logger)
        guard let identity = try? await sts.getCallerIdentity() else { return nil }
        self.account.value.withLock { $0 = identity.account }
        return identity.account
    }

    /// The same service configuration for another region: the regional endpoint, unless
    /// the endpoint was configured explicitly (an emulator, a VPC endpoint), which is kept.
    static func configuration(_ base: AWSServiceConfiguration, service: String, from home: String, to region: String)
        -> AWSServiceConfiguration
    {
        guard region != home else { return base }
        var configuration = base
        configuration.region = region
        if base.endpoint == AWSServiceConfiguration.defaultEndpoint(service: service, region: home) {
            configuration.endpoint = AWSServiceConfiguration.defaultEndpoint(service: service, region: region)
        }
        return configuration
    }

    package func shutdown() async {
        try? await self.httpClient.shutdown()
    }
}

private final class AccountCache: Sendable {
    let value = Mutex<String?>(nil)
}
