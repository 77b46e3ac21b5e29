import Glibc

/// The worker's limit of open files. Each node of a step it works on holds an `ssh` client with
/// its standard input, output and error pipes and its process descriptor: about 4 files per node,
/// and every node of a cluster is worked on at once (``InstallSettings/parallelism``). The usual
/// soft limit (1,024, as systemd and most shells set it) would run out at about 2 clusters of 100
/// nodes, so the worker raises it to the hard limit at start, as servers commonly do.
public enum OpenFileLimit {
    /// Files one node of a running step holds in the worker.
    public static let filesPerNode = 4
    /// What the worker holds besides: database connections, HTTP, logs.
    public static let baseFiles = 256

    /// The files a worker needs for `concurrency` clusters of up to `nodes` nodes each.
    public static func needed(concurrency: Int, nodes: Int) -> Int {
        Self.baseFiles + concurrency * nodes * Self.filesPerNode
    }

    /// Raises the soft limit to the hard one; returns the soft limit now in force, or nil when
    /// the limits cannot be read.
    @discardableResult
    public static func raiseToHardLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}
