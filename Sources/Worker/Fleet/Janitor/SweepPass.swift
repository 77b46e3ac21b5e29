import AWSProvisioner
import Foundation
import Logging
import Queue
import Telemetry

/// Sweeps EC2 for resources of this deployment (`managed-by=flotilla` and
/// `deployment=<ours>`) whose cluster is destroyed, or unknown and older than the grace
/// period, in this worker's region and every region a cluster was recorded in. Another
/// deployment's resources in the same account are never touched.
struct SweepPass: JanitorPass {
    let store: ClusterStore
    let aws: AWSContext
    let deployment: String
    let interval: Duration
    let grace: Duration
    let dryRun: Bool
    let logger: Logger
    var name: String { "sweep" }

    /// What the sweep found (and, unless dry-run, removed).
    struct Report: Sendable {
        var instances: [String] = []
        var securityGroups: [String] = []
        var keyPairs: [String] = []
        var isEmpty: Bool { self.instances.isEmpty && self.securityGroups.isEmpty && self.keyPairs.isEmpty }
    }

    func pass() async throws -> Duration {
        for region in try await self.store.knownRegions(including: self.aws.region) {
            try await self.sweep(region: region)
        }
        return self.interval
    }

    @discardableResult
    func sweep(region: String) async throws -> Report {
        let ec2 = self.aws.ec2(region: region)
        let ours = [EC2Filter.tag("managed-by", "flotilla"), EC2Filter.tag("deployment", self.deployment)]
        let instances = try await ec2.describeInstances(filters: ours).filter { $0.state != .terminated }
        let groups = try await ec2.describeSecurityGroups(filters: ours)
        let keys = try await ec2.describeKeyPairs(filters: ours)
        func cluster(_ tags: [EC2Tag]) -> String? { tags.first { $0.key == "cluster" }?.value }
        let ids = Set(
            instances.compactMap { cluster($0.tags) } + groups.compactMap { cluster($0.tags) }
                + keys.compactMap { cluster($0.tags) })
        let states = try await self.store.states(of: Array(ids))
        let grace = self.grace.seconds
        // A resource may be swept when its cluster's row says destroyed, or when no row
        // knows its cluster and it is older than the grace period (by its `created` tag or
        // launch time; one without either is left to a person).
        func created(_ tags: [EC2Tag]) -> Date? {
            tags.first { $0.key == "created" }.flatMap { try? Date($0.value, strategy: .iso8601) }
        }
        func sweepable(_ tags: [EC2Tag], launched: Date? = nil) -> Bool {
            // The filters asked for these; checked again so a lax emulator or API cannot widen them.
            guard tags.contains(EC2Tag(key: "managed-by", value: "flotilla")),
                tags.contains(EC2Tag(key: "deployment", value: self.deployment))
            else { return false }
            if let id = cluster(tags), let state = states[id] { return state == .destroyed }
            guard let made = created(tags) ?? launched else { return false }
            return Date().timeIntervalSince(made) > grace
        }
        var report = Report()
        report.instances = instances.filter { sweepable($0.tags, launched: $0.launchTime) }.map(\.instanceID)
        report.securityGroups = groups.filter { sweepable($0.tags) }.map(\.groupID)
        report.keyPairs = keys.filter { sweepable($0.tags) }.map(\.keyName)
        try await self.store.recordSweep(
            region: region, instances: report.instances, securityGroups: report.securityGroups,
            keyPairs: report.keyPairs, dryRun: self.dryRun)
        if report.isEmpty { return report }
        self.logger.warning(
            "sweep found leaked resources",
            metadata: [
                MetadataKey.awsRegion: "\(region)", "instances": "\(report.instances)",
                "security_groups": "\(report.securityGroups)",
                "key_pairs": "\(report.keyPairs)", "dry_run": "\(self.dryRun)",
            ])
        guard !self.dryRun else { return report }
        if !report.instances.isEmpty { _ = try await ec2.terminateInstances(instanceIDs: report.instances) }
        for group in report.securityGroups {
            do {
                try await ec2.deleteSecurityGroup(groupID: group)
            } catch {
                self.logger.info(
                    "security group delete deferred", metadata: ["group": "\(group)", "error": "\(error)"])
            }
        }
        for key in report.keyPairs {
            try await self.store.scheduleKeyPairDeletion(region: region, keyPairName: key, clusterID: nil)
        }
        return report
    }
}
