import Foundation
import Logging
import PostgresNIO

/// What operators and `/metrics` read: counts and hours, never a secret. Each call is
/// one SECURITY DEFINER function of migration 0006, which the worker, client (cost only)
/// and operator roles may run.
public struct OperatorReports: Sendable {
    public let client: PostgresClient
    public let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// One gauge reading: a metric name, its label pairs and its value.
    public struct Gauge: Sendable, Hashable {
        public var metric: String
        public var labels: [(String, String)]
        public var value: Double

        public static func == (a: Gauge, b: Gauge) -> Bool {
            a.metric == b.metric && a.labels.elementsEqual(b.labels, by: ==) && a.value == b.value
        }
        public func hash(into hasher: inout Hasher) {
            hasher.combine(self.metric)
            for (key, value) in self.labels {
                hasher.combine(key)
                hasher.combine(value)
            }
            hasher.combine(self.value)
        }
    }

    /// The gauges read from the rows (`metrics_snapshot()`).
    public func gauges() async throws -> [Gauge] {
        try await self.mapErrors {
            var result: [Gauge] = []
            let rows = try await self.client.query(
                "SELECT metric, labels, value FROM metrics_snapshot()", logger: self.logger)
            for try await (metric, labels, value) in rows.decode((String, [String], Double).self) {
                let pairs = stride(from: 0, to: labels.count - 1, by: 2).map { (labels[$0], labels[$0 + 1]) }
                result.append(Gauge(metric: metric, labels: pairs, value: value))
            }
            return result
        }
    }

    /// Instance-hours of one owner on one instance type.
    public struct CostLine: Sendable, Hashable, Codable {
        public var owner: String
        public var instanceType: String
        public var clusters: Int
        public var nodes: Int
        public var instanceHours: Double
    }

    /// Instance-hours per owner and instance type over the last `since` (`cost_report`).
    public func cost(since: Duration) async throws -> [CostLine] {
        try await self.mapErrors {
            var result: [CostLine] = []
            let seconds = Double(since.components.seconds)
            let rows = try await self.client.query(
                """
                SELECT owner, instance_type, clusters, nodes, instance_hours
                FROM cost_report(make_interval(secs => \(seconds)))
                """, logger: self.logger)
            for try await (owner, type, clusters, nodes, hours) in rows.decode((String, String, Int, Int, Double).self)
            {
                result.append(
                    CostLine(owner: owner, instanceType: type, clusters: clusters, nodes: nodes, instanceHours: hours))
            }
            return result
        }
    }

    private func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError where error.sqlState == SQLState.insufficientPrivilege {
            throw QueueError(
                .invalidInput,
                "permission denied: \(error.serverInfo?[.message] ?? "this login may not read reports") "
                    + "(log in as a member of flotilla_operator, flotilla_worker or, for cost, flotilla_client)",
                underlying: error)
        } catch let error as PSQLError {
            throw QueueError(.database, DatabaseErrorDescription.describe(error), underlying: error)
        }
    }
}
