import AWSProvisioner
import Foundation
import Logging
import Queue

/// The fleet's capacity record, in PostgreSQL (`capacity_failures`): a zone and type one
/// worker found full is skipped by every worker's clusters until it expires. When the
/// database cannot be reached the process's own memory still answers (and remembers).
package struct FleetCapacityRecord: CapacityRecord {
    let store: ClusterStore
    let local: CapacityMemory
    let logger: Logger
    package var lifetime: Duration { self.local.lifetime }

    package init(store: ClusterStore, local: CapacityMemory = .shared, logger: Logger) {
        self.store = store
        self.local = local
        self.logger = logger
    }

    package func remember(region: String, zone: String, instanceType: String, code: String) async {
        await self.local.remember(region: region, zone: zone, instanceType: instanceType, code: code)
        do {
            try await self.store.rememberCapacityFailure(
                region: region, zone: zone, instanceType: instanceType, code: code,
                lifetime: self.lifetime)
        } catch {
            self.logger.warning(
                "cannot share a capacity failure with the fleet; this worker remembers it",
                metadata: [
                    "aws.region": "\(region)", "zone": "\(zone)",
                    "error": "\(DatabaseErrorDescription.describe(error))",
                ])
        }
    }

    package func failures(region: String) async -> [String: String] {
        var known = await self.local.failures(region: region)
        do {
            known.merge(try await self.store.capacityFailures(region: region)) { mine, _ in mine }
        } catch {
            self.logger.warning(
                "cannot read the fleet's capacity failures; using this worker's",
                metadata: [
                    "error": "\(DatabaseErrorDescription.describe(error))"
                ])
        }
        return known
    }
}
