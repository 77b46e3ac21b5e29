import Logging

/// Metadata that follows a task and its child tasks into every log line, whichever logger
/// writes it: the job and cluster a worker task is busy with reach the AWS client's and
/// the SSH code's lines too, so a cluster's story can be filtered by `cluster.id`.
public enum LogContext {
    @TaskLocal public static var metadata: Logger.Metadata = [:]

    /// The provider ``LogFormat/bootstrap(_:level:)`` installs.
    public static let provider = Logger.MetadataProvider { LogContext.metadata }

    /// Runs `body` with `extra` added to the task's log metadata.
    public static func with<T>(
        _ extra: Logger.Metadata, isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> T
    ) async rethrows -> T {
        try await self.$metadata.withValue(
            self.metadata.merging(extra) { _, new in new }, operation: body, isolation: isolation)
    }
}
