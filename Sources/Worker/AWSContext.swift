import AWSProvisioner
import AsyncHTTPClient
import Foundation
import Logging
import Queue

/// The AWS side of a worker: one HTTP client, the credentials cache, the EC2 client, the
/// provisioner and the cluster settings, all from the environment.
struct AWSContext: Sendable {
    let httpClient: HTTPClient
    let credentials: CredentialsCache
    let ec2: EC2Client
    let provisioner: ClusterProvisioner
    let settings: ClusterSettings

    static func fromEnvironment(logger: Logger) throws -> AWSContext {
        let http = HTTPClient.makeForAWS(connectTimeout: .seconds(5))
        do {
            let aws = try AWSEnvironment.resolve(httpClient: http, logger: logger)
            let credentials = aws.makeCredentialsCache(logger: logger)
            let ec2 = EC2Client(configuration: aws.ec2Configuration, credentials: credentials, httpClient: http, logger: logger)
            let settings = try ClusterSettings.fromEnvironment(region: aws.region)
            let provisioner = ClusterProvisioner(ec2: ec2, credentials: credentials, logger: logger,
                                                 makeShell: ClusterProvisioner.openSSHShells(baseDirectory: settings.sshDirectory))
            return AWSContext(httpClient: http, credentials: credentials, ec2: ec2, provisioner: provisioner, settings: settings)
        } catch {
            try? http.syncShutdown()
            throw error
        }
    }

    func shutdown() async {
        try? await self.httpClient.shutdown()
    }
}
