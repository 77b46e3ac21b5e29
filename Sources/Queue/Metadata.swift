/// Logger metadata keys, from one place, so logs can be searched by them.
public enum MetadataKey {
    public static let jobID = "job.id"
    public static let jobKind = "job.kind"
    public static let jobAttempt = "job.attempt"
    public static let workerID = "worker.id"
    public static let clusterID = "cluster.id"
}
