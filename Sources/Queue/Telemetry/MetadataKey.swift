/// Logger metadata keys, from one list every part uses (the queue, the fleet, the AWS and
/// SSH code, the executables), so a cluster's whole story can be filtered from the logs by
/// `cluster.id`, and an AWS call or an SSH host by theirs.
public enum MetadataKey {
    public static let jobID = "job.id"
    public static let jobKind = "job.kind"
    public static let jobAttempt = "job.attempt"
    public static let workerID = "worker.id"
    public static let clusterID = "cluster.id"
    public static let clusterOwner = "cluster.owner"
    public static let clusterPhase = "cluster.phase"
    public static let poolName = "pool.name"
    public static let awsAction = "aws.action"
    public static let awsRegion = "aws.region"
    public static let awsErrorCode = "aws.error_code"
    public static let awsRequestID = "aws.request_id"
    public static let awsAttempt = "aws.attempt"
    public static let sshHost = "ssh.host"
    public static let sshPort = "ssh.port"
    public static let httpPath = "http.path"
    public static let error = "error"
}
