import CoreMetrics
import Foundation

/// The names of the metrics Flotilla's processes record, from one place. Each process
/// records through swift-metrics; `worker run` and `worker janitor` export them in the
/// Prometheus text format on `/metrics`, beside the gauges read from the database.
public enum FlotillaMetric {
    /// Counter: jobs finished by this process, by `kind` and `outcome` (completed, retried,
    /// failed, cancelled, handed_back).
    public static let jobsFinished = "flotilla_jobs_finished_total"
    /// Histogram: seconds from a job being runnable (its `run_after`) to a worker starting it, by `kind`.
    public static let claimToStart = "flotilla_job_claim_to_start_seconds"
    /// Counter: job failures that will be retried, by `kind`.
    public static let jobRetries = "flotilla_job_retries_total"
    /// Histogram: seconds each provisioning phase took, by `phase`.
    public static let provisionPhase = "flotilla_provision_phase_seconds"
    /// Counter: how this process's provision and teardown attempts ended, by `outcome` (ready;
    /// failed, the cluster's last attempt; retrying, an attempt that will be retried; destroyed;
    /// teardown_failed, a teardown attempt that failed and will be retried) and `reason` (none,
    /// or the failure's kind: install_failed, aws, ssh, timeout, conflict, leftovers, …).
    public static let clusterOutcomes = "flotilla_cluster_outcomes_total"
    /// Counter: AWS API calls answered, by `service`, `action` and `code` (`ok` or the error code).
    public static let awsCalls = "flotilla_aws_calls_total"
    /// Counter: AWS calls sent again after a throttling, transient or expired-credentials answer, by `action` and
    /// `code`.
    public static let awsRetries = "flotilla_aws_retries_total"
    /// Counter: SSH connections opened to nodes (one multiplexed master connection per node).
    public static let sshConnections = "flotilla_ssh_connections_total"
    /// Counter: SSH commands run on nodes, by `outcome` (ok, failed, timeout).
    public static let sshCommands = "flotilla_ssh_commands_total"

    /// Buckets for provisioning phases and job waits: a second to an hour.
    public static let slowBuckets: [Duration] = [
        0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600,
    ]
    .map { Duration.milliseconds(Int64($0 * 1000)) }
    /// Buckets for a job's wait to start: a millisecond to ten minutes.
    public static let waitBuckets: [Duration] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600,
    ]
    .map { Duration.milliseconds(Int64($0 * 1000)) }

    public static func increment(_ name: String, _ dimensions: [(String, String)] = [], by amount: Int = 1) {
        Counter(label: name, dimensions: dimensions).increment(by: amount)
    }

    public static func record(_ name: String, _ dimensions: [(String, String)] = [], seconds: Double) {
        CoreMetrics.Timer(label: name, dimensions: dimensions).recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }
}
