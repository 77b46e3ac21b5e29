import AsyncHTTPClient
import NIOCore
import Timing

extension HTTPClient {
    /// An HTTP client for the AWS clients with a connect timeout. The caller owns it and
    /// must call `shutdown()`.
    ///
    /// A request that finds all `connectionsPerHost` connections busy waits in the client's
    /// queue, and fails (`getConnectionFromPoolTimeout`) when the connect timeout passes
    /// there: AsyncHTTPClient bounds the queue wait by the connect timeout. One client serves
    /// every job of a worker (and every node step of a job at once), so the limit is well
    /// above AsyncHTTPClient's default of 8; connections open only as requests need them.
    public static func makeForAWS(connectTimeout: Duration = .seconds(5), connectionsPerHost: Int = 32) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .nanoseconds(Int64(connectTimeout.seconds * 1e9))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connectionsPerHost
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
