import CoreMetrics
import Foundation
import Logging
import Prometheus
import Queue
import Synchronization
import Telemetry

/// The process's Prometheus registry: what this process recorded through swift-metrics
/// (jobs, phases, AWS calls, SSH), plus, when it has `reports` (the janitor), the fleet-wide
/// gauges read from the database on each scrape (``OperatorReports/gauges()``).
package final class MetricsExporter: Sendable {
    package let registry: PrometheusCollectorRegistry
    let reports: OperatorReports?
    let logger: Logger
    /// The database gauges set on the last scrape, so one that disappeared reads 0.
    private let lastGauges = Mutex<[GaugeKey: Prometheus.Gauge]>([:])
    private let scrapeErrors: Prometheus.Counter

    struct GaugeKey: Hashable {
        var metric: String
        var labels: [String]
    }

    /// Bootstraps swift-metrics with this registry (once per process) and returns the exporter.
    package static func bootstrap(reports: OperatorReports?, logger: Logger) -> MetricsExporter {
        let exporter = MetricsExporter(reports: reports, logger: logger)
        var factory = PrometheusMetricsFactory(registry: exporter.registry)
        factory.durationHistogramBuckets = [
            FlotillaMetric.provisionPhase: FlotillaMetric.slowBuckets,
            FlotillaMetric.claimToStart: FlotillaMetric.waitBuckets,
        ]
        MetricsSystem.bootstrap(factory)
        return exporter
    }

    init(reports: OperatorReports?, logger: Logger) {
        self.registry = PrometheusCollectorRegistry()
        self.reports = reports
        self.logger = logger
        self.scrapeErrors = self.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "flotilla_metrics_database_errors_total", unitName: "",
                helpText:
                    "Scrapes whose database gauges could not be read (the process's own metrics were still served)."))
    }

    /// The text exposition: database gauges refreshed first; if the database cannot be
    /// read, the process's own metrics are still served and the error counter moves.
    package func scrape() async -> [UInt8] {
        do {
            if let reports = self.reports { self.update(try await reports.gauges()) }
        } catch {
            self.scrapeErrors.increment()
            self.logger.warning("metrics: cannot read the database gauges", metadata: [MetadataKey.error: "\(error)"])
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 << 10)
        self.registry.emit(into: &buffer)
        return buffer
    }

    /// What each database gauge counts (the `# HELP` line).
    static let help: [String: String] = [
        "flotilla_jobs": "Jobs in the queue by kind and state (finished jobs are kept for the retention period).",
        "flotilla_clusters": "Clusters by state.",
        "flotilla_pool_clusters":
            "Warm-pool clusters by pool and status: ready, healthy (checked, can be handed out), building, claimed.",
        "flotilla_pool_target": "The number of ready clusters each warm pool aims to keep.",
        "flotilla_key_pair_deletions_pending": "EC2 key pairs waiting to be deleted (retried by the janitor).",
        "flotilla_sweep_leftovers": "Resources the last sweep of a region found without a live cluster, by kind.",
        "flotilla_instance_hours_30d": "Instance-hours per owner over the last 30 days, bootstrap nodes included.",
    ]

    func update(_ gauges: [OperatorReports.Gauge]) {
        self.lastGauges.withLock { last in
            var seen: Set<GaugeKey> = []
            for gauge in gauges {
                let key = GaugeKey(metric: gauge.metric, labels: gauge.labels.flatMap { [$0.0, $0.1] })
                seen.insert(key)
                let descriptor = MetricNameDescriptor(
                    metricName: gauge.metric, unitName: "",
                    helpText: Self.help[gauge.metric] ?? "Read from the database on each scrape.")
                let handle = last[key] ?? self.registry.makeGauge(descriptor: descriptor, labels: gauge.labels)
                last[key] = handle
                handle.set(to: gauge.value)
            }
            for (key, handle) in last where !seen.contains(key) {
                handle.set(to: 0)
            }
        }
    }
}
