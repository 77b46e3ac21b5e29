import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import Synchronization
import Telemetry
import Timing

/// Sends one AWS Query API call (`Action=…&Version=…` form POST), signed with SigV4, and
/// applies the retry rules:
///
/// | class | codes | action |
/// |---|---|---|
/// | throttling | `RequestLimitExceeded`, `Throttling`, …, or HTTP 503/429 | backoff, retry |
/// | transient | `InternalError`, `ServiceUnavailable`, other 5xx, timeouts, connection errors | backoff, retry |
/// | capacity | `InsufficientInstanceCapacity`, … | surfaced at once |
/// | expiredCredentials | `ExpiredToken`, `RequestExpired` | one refresh, one retry |
/// | never | `AuthFailure`, `UnauthorizedOperation`, validation, other 4xx | surfaced at once |
struct AWSQueryTransport: Sendable {
    let service: String
    let apiVersion: String
    let configuration: AWSServiceConfiguration
    let credentials: CredentialsCache
    let httpClient: HTTPClient
    let logger: Logger

    /// Sends `action` and returns the root element of the successful answer.
    func send(action: String, parameters: [(String, String)]) async throws -> XMLNode {
        AWSRequestLog.shared?.record(
            service: self.service, version: self.apiVersion, action: action, parameters: parameters)
        var logger = self.logger
        logger[metadataKey: MetadataKey.awsAction] = "\(action)"
        logger[metadataKey: MetadataKey.awsRegion] = "\(self.configuration.region)"
        var attempt = 0
        var refreshedAfterExpiry = false
        var correctedSkew = false
        while true {
            attempt += 1
            try Task.checkCancellation()
            let signingCredentials = try await credentials.credentials(
                validFor: configuration.minimumCredentialValidity)
            let skew = ClockSkew.of(self.configuration.endpoint.absoluteString)
            let offsetUsed = skew.offset
            let error: EC2Error
            do {
                let answer = try await sendOnce(
                    action: action, parameters: parameters, credentials: signingCredentials,
                    date: Date().addingTimeInterval(offsetUsed), logger: logger)
                FlotillaMetric.increment(
                    FlotillaMetric.awsCalls, [("service", self.service), ("action", action), ("code", "ok")])
                logger.debug("AWS call answered", metadata: attempt > 1 ? [MetadataKey.awsAttempt: "\(attempt)"] : nil)
                return answer
            } catch var failure as EC2Error {
                failure.action = action
                error = failure
            }
            FlotillaMetric.increment(
                FlotillaMetric.awsCalls, [("service", self.service), ("action", action), ("code", error.code)])
            var errorLogger = logger
            errorLogger[metadataKey: MetadataKey.awsErrorCode] = "\(error.code)"
            if let requestID = error.requestID { errorLogger[metadataKey: MetadataKey.awsRequestID] = "\(requestID)" }
            // A clock off by minutes makes every signature "expired" or "too skewed": take
            // AWS's time from the answer's Date header and sign again, once.
            // Another request may have corrected the skew while this one was on its way.
            if !correctedSkew, EC2Error.skewCodes.contains(error.code), let serverDate = error.serverDate,
                skew.correct(serverDate: serverDate) != nil || skew.offset != offsetUsed
            {
                correctedSkew = true
                errorLogger.notice(
                    """
                    the local clock is \(Int(skew.offset)) s off AWS's (from the answer's Date header): \
                    signing with AWS's time and retrying
                    """)
                attempt -= 1
                continue
            }
            switch error.retryClass {
            case .expiredCredentials where !refreshedAfterExpiry:
                refreshedAfterExpiry = true
                errorLogger.notice("credentials rejected as expired; refreshing once and retrying")
                FlotillaMetric.increment(FlotillaMetric.awsRetries, [("action", action), ("code", error.code)])
                try await credentials.refresh(replacing: signingCredentials)
                attempt -= 1 // the retry after a refresh does not use up a backoff attempt
            case let retryClass
            where retryClass.isRetriedWithBackoff && attempt < configuration.retryPolicy.maximumAttempts:
                let delay = configuration.retryPolicy.delay(afterAttempt: attempt)
                errorLogger.info(
                    "retrying after \(retryClass) failure",
                    metadata: [MetadataKey.awsAttempt: "\(attempt)", "aws.delay": "\(delay)"])
                FlotillaMetric.increment(FlotillaMetric.awsRetries, [("action", action), ("code", error.code)])
                try await Task.sleep(for: delay)
            default:
                errorLogger.debug("AWS call failed", metadata: ["aws.retry_class": "\(error.retryClass)"])
                throw error
            }
        }
    }

    private func sendOnce(
        action: String, parameters: [(String, String)], credentials: AWSCredentials, date: Date,
        logger: Logger
    ) async throws -> XMLNode {
        let body = Self.formBody([("Action", action), ("Version", apiVersion)] + parameters)
        let endpoint = configuration.endpoint
        guard let host = endpoint.host else {
            throw EC2Error(code: EC2Error.Code.transport, message: "endpoint \(endpoint) has no host")
        }
        let defaultPort = endpoint.scheme == "https" ? 443 : 80
        let hostHeader = endpoint.port.map { $0 == defaultPort ? host : "\(host):\($0)" } ?? host
        var path = endpoint.path
        if path.isEmpty { path = "/" }

        var signable = SigV4Request(
            method: "POST", path: path,
            headers: [
                .init(name: "Host", value: hostHeader),
                .init(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8"),
            ], body: Array(body.utf8))
        SigV4Signer(credentials: credentials, region: configuration.region, service: service).sign(
            &signable, date: date)

        var request = HTTPClientRequest(url: endpoint.absoluteString)
        request.method = .POST
        for header in signable.headers {
            request.headers.add(name: header.name, value: header.value)
        }
        request.headers.add(name: "User-Agent", value: "flotilla")
        request.body = .bytes(ByteBuffer(bytes: signable.body))

        let timeout = configuration.requestTimeout
        let httpClient = self.httpClient
        let preparedRequest = request
        let (status, bytes, date): (Int, [UInt8], String?)
        do {
            let answer = try await withTimeout(timeout) {
                let response = try await httpClient.execute(
                    preparedRequest, timeout: .nanoseconds(Int64(timeout.seconds * 1e9)))
                var buffer = try await response.body.collect(upTo: 64 << 20)
                return (
                    Int(response.status.code), buffer.readBytes(length: buffer.readableBytes) ?? [],
                    response.headers.first(name: "Date")
                )
            }
            guard let answer else { throw TimeoutMarker() }
            (status, bytes, date) = answer
        } catch is TimeoutMarker {
            throw EC2Error(code: EC2Error.Code.requestTimeout, message: "\(action) did not complete within \(timeout)")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw EC2Error(
                code: EC2Error.Code.requestTimeout, message: "\(action) did not complete within \(timeout)",
                underlying: error)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw EC2Error(
                code: EC2Error.Code.transport, message: "\(action) failed to reach \(hostHeader)", underlying: error)
        }

        AWSResponseRecorder.current?.record(action: action, parameters: parameters, status: status, body: bytes)
        guard (200..<300).contains(status) else {
            var error = EC2Error(httpStatus: status, body: bytes)
            error.serverDate = date.flatMap(ClockSkew.parseHTTPDate)
            throw error
        }
        do {
            return try XMLReader.parse(bytes)
        } catch {
            throw EC2Error(
                code: EC2Error.Code.invalidResponse,
                message: "\(action) answered HTTP \(status) with a body that is not XML",
                httpStatus: status, underlying: error)
        }
    }

    private struct TimeoutMarker: Error {}

    /// `application/x-www-form-urlencoded` as botocore sends it: RFC 3986 encoding with
    /// spaces as `+`. (moto re-encodes the parsed form this way to check the payload hash.)
    static func formBody(_ parameters: [(String, String)]) -> String {
        func encode(_ text: String) -> String {
            SigV4Signer.uriEncode(text).replacingOccurrences(of: "%20", with: "+")
        }
        return parameters.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }
}

/// How far the local clock is from an endpoint's (keyed by its URL), learnt from the `Date`
/// header of an answer that refused a signature for its time; every later signature for that
/// endpoint, in the whole process, uses the corrected time.
final class ClockSkew: Sendable {
    private static let byEndpoint = Mutex<[String: ClockSkew]>([:])
    private let storedOffset = Mutex<TimeInterval>(0)

    /// The skew of one endpoint (`host:port`).
    static func of(_ endpoint: String) -> ClockSkew {
        self.byEndpoint.withLock { known in
            if let skew = known[endpoint] { return skew }
            let skew = ClockSkew()
            known[endpoint] = skew
            return skew
        }
    }

    /// Seconds to add to the local clock.
    var offset: TimeInterval { self.storedOffset.withLock { $0 } }

    /// Takes AWS's time as the signing time when it differs by more than a minute from it;
    /// returns the skew corrected, or `nil` when the clocks agree (the refusal was not the clock's).
    func correct(serverDate: Date) -> TimeInterval? {
        let skew = serverDate.timeIntervalSinceNow
        return self.storedOffset.withLock { offset in
            guard abs(skew - offset) > 60 else { return nil }
            offset = skew
            return skew
        }
    }

    /// An RFC 7231 date: `Thu, 03 Dec 2026 01:29:55 GMT`.
    static func parseHTTPDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}
