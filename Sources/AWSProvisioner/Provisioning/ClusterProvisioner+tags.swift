import Foundation

extension ClusterProvisioner {
    /// Writes `expiresAt` to the `expires` tag of every live resource tagged with the
    /// cluster: instances, volumes, network interfaces, the security group and the key pair.
    /// Returns how many resources were tagged.
    @discardableResult
    public func tagExpiry(clusterID: String, expiresAt: Date) async throws -> Int {
        let tag = EC2Filter.tag("cluster", clusterID)
        var ids: [String] = []
        do {
            ids += try await self.ec2.describeInstances(filters: [tag])
                .filter { $0.state != .terminated && $0.state != .shuttingDown }.map(\.instanceID)
            ids += try await self.ec2.describeVolumes(filters: [tag]).filter {
                !["deleted", "deleting"].contains($0.state)
            }.map(\.volumeID)
            ids += try await self.ec2.describeNetworkInterfaces(filters: [tag]).map(\.networkInterfaceID)
            ids += try await self.ec2.describeSecurityGroups(filters: [tag]).map(\.groupID)
            ids += try await self.ec2.describeKeyPairs(filters: [tag]).compactMap(\.keyPairID)
            guard !ids.isEmpty else { return 0 }
            // CreateTags takes up to 1000 resources per call.
            for start in stride(from: 0, to: ids.count, by: 1000) {
                try await self.ec2.createTags(
                    resourceIDs: Array(ids[start..<min(start + 1000, ids.count)]),
                    tags: [EC2Tag(key: "expires", value: ISO8601DateFormatter().string(from: expiresAt))])
            }
        } catch let error as EC2Error {
            throw ProvisionError(
                .aws, "cannot tag the resources of \(clusterID) with their expiry: \(error)", underlying: error)
        }
        return ids.count
    }
}
