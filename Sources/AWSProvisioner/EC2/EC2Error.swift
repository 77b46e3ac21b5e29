import Foundation

/// A failed EC2 or STS call: AWS's error code and message, the request id, the HTTP status,
/// and the retry class derived from the code.
///
/// Failures that never reached AWS (a timeout, a refused connection, a response that could
/// not be decoded) carry one of the `EC2Error.Code` codes below, no request id and, when
/// there was no response, no HTTP status.
public struct EC2Error: Error, Sendable, CustomStringConvertible {
    /// AWS's error code, e.g. `InvalidKeyPair.Duplicate`, or one of `EC2Error.Code`.
    public var code: String
    public var message: String
    public var requestID: String?
    public var httpStatus: Int?
    /// What caused this error locally (a transport error), if anything.
    public var underlying: (any Error & Sendable)?
    /// The answer's `Date` header: AWS's clock, to correct a skewed local one.
    public var serverDate: Date?
    /// The API call that failed (`RunInstances`), set by the transport.
    public var action: String?

    public init(
        code: String, message: String, requestID: String? = nil, httpStatus: Int? = nil,
        underlying: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.message = message
        self.requestID = requestID
        self.httpStatus = httpStatus
        self.underlying = underlying
    }

    /// Codes for failures Flotilla detects itself.
    public enum Code {
        /// The request did not complete within the configured timeout.
        public static let requestTimeout = "Flotilla.RequestTimeout"
        /// The connection failed (refused, reset, connect timeout).
        public static let transport = "Flotilla.Transport"
        /// An error status with a body that is not an AWS error document.
        public static let unrecognizedErrorResponse = "Flotilla.UnrecognizedErrorResponse"
        /// A success status with a body that could not be decoded.
        public static let invalidResponse = "Flotilla.InvalidResponse"
    }

    /// How this failure may be retried, decided by the code first and the HTTP status only
    /// when the code is not known. Notably `InsufficientInstanceCapacity` (HTTP 500) is
    /// `.capacity`, not `.transient`.
    public var retryClass: RetryClass {
        if Self.throttlingCodes.contains(code) { return .throttling }
        if Self.capacityCodes.contains(code) { return .capacity }
        if Self.expiredCodes.contains(code) { return .expiredCredentials }
        if Self.transientCodes.contains(code) { return .transient }
        if Self.neverCodes.contains(code) { return .never }
        switch httpStatus {
        case 429, 503: return .throttling
        case .some(500...599): return .transient
        default: return .never
        }
    }

    /// Whether waiting and asking again can change the answer: throttling, capacity,
    /// transient failures, expired credentials, and the `NotFound` codes EC2 answers for a
    /// resource created moments before (its API is eventually consistent). Anything else (no
    /// permission, a malformed or impossible parameter, an unknown image or subnet, a
    /// Marketplace image without a subscription) stays as it is: retrying only delays the
    /// failure, and the attempt fails at once.
    public var canHeal: Bool {
        self.retryClass != .never || Self.eventuallyConsistentCodes.contains(self.code)
    }

    /// `NotFound` answers for resources Flotilla itself creates: right after creation, EC2 may
    /// not know them yet (AWS documents retrying these with backoff).
    static let eventuallyConsistentCodes: Set<String> = [
        "InvalidInstanceID.NotFound", "InvalidGroup.NotFound", "InvalidGroupId.NotFound",
        "InvalidKeyPair.NotFound", "InvalidVolume.NotFound", "InvalidNetworkInterfaceID.NotFound",
    ]

    static let throttlingCodes: Set<String> = [
        "RequestLimitExceeded", "Throttling", "ThrottlingException", "ThrottledException",
        "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
        "EC2ThrottledException", "PriorRequestNotComplete", "SlowDown", "BandwidthLimitExceeded",
    ]
    static let capacityCodes: Set<String> = [
        "InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity",
        "InsufficientAddressCapacity", "InsufficientCapacity", "InsufficientCapacityOnHost",
    ]
    static let expiredCodes: Set<String> = ["ExpiredToken", "ExpiredTokenException", "RequestExpired"]
    /// Codes AWS answers when the request's timestamp is too far from its clock.
    static let skewCodes: Set<String> = [
        "RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture", "InvalidSignatureException",
        "SignatureDoesNotMatch", "AuthFailure",
    ]
    static let transientCodes: Set<String> = [
        "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable",
        Code.requestTimeout, Code.transport,
    ]
    static let neverCodes: Set<String> = [
        "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
        "AccessDenied", "AccessDeniedException", "OptInRequired", "DependencyViolation",
        Code.invalidResponse,
    ]

    public var description: String {
        var text = "EC2Error(" + (action.map { "\($0): " } ?? "") + code
        if let httpStatus { text += ", HTTP \(httpStatus)" }
        if let requestID { text += ", request \(requestID)" }
        text += "): \(message)"
        if let underlying { text += " (\(String(describing: underlying)))" }
        return text
    }
}

extension EC2Error {
    /// Decodes an AWS error document. EC2 answers `<Response><Errors><Error>…`, auth errors
    /// come as `<ErrorResponse><Errors><Error>…`, STS as `<ErrorResponse><Error>…`: the first
    /// `Code`/`Message` under any `Error` wins. A body that is not XML, or XML without an
    /// error code, becomes `Code.unrecognizedErrorResponse` with a short excerpt.
    init(httpStatus: Int, body: [UInt8]) {
        if let root = try? XMLReader.parse(body),
            let error = root.name == "Error" ? root : root.firstDescendant(named: "Error"),
            let code = error.string("Code")
        {
            let requestID =
                root.string("RequestID") ?? root.string("RequestId")
                ?? root.firstDescendant(named: "RequestId")?.text.trimmingWhitespace()
                ?? root.firstDescendant(named: "RequestID")?.text.trimmingWhitespace()
            self.init(code: code, message: error.string("Message") ?? "", requestID: requestID, httpStatus: httpStatus)
        } else {
            let excerpt = String(decoding: body.prefix(200), as: UTF8.self)
                .replacingOccurrences(of: "\n", with: " ")
            self.init(
                code: Code.unrecognizedErrorResponse,
                message: "HTTP \(httpStatus) with a body that is not an AWS error: \(excerpt)",
                httpStatus: httpStatus)
        }
    }
}
