import AsyncHTTPClient
import NIOCore

extension HTTPClient {
    /// An HTTP client for the AWS clients with a connect timeout. The caller owns it and
    /// must call `shutdown()`.
    public static func makeForAWS(connectTimeout: Duration = .seconds(5)) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .nanoseconds(Int64(connectTimeout.timeInterval * 1e9))
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
