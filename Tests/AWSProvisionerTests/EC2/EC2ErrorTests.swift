import Testing
import Timing

@testable import AWSProvisioner

@Suite("EC2Error decoding and retry classes", .timeLimit(.minutes(3)))
struct EC2ErrorTests {
    @Test("EC2 error shape")
    func ec2Shape() {
        let body =
            "<Response><Errors><Error><Code>InvalidKeyPair.Duplicate</Code><Message>exists</Message></Error></Errors>"
            + "<RequestID>r-1</RequestID></Response>"
        let error = EC2Error(httpStatus: 400, body: Array(body.utf8))
        #expect(error.code == "InvalidKeyPair.Duplicate")
        #expect(error.message == "exists")
        #expect(error.requestID == "r-1")
        #expect(error.httpStatus == 400)
        #expect(error.retryClass == .never)
    }

    @Test("auth error shape (ErrorResponse/Errors/Error)")
    func authShape() {
        let body =
            "<?xml version=\"1.0\"?>\n<ErrorResponse><Errors><Error><Code>AuthFailure</Code><Message>no</Message>"
            + "<Type>Sender</Type></Error></Errors></ErrorResponse>"
        let error = EC2Error(httpStatus: 401, body: Array(body.utf8))
        #expect(error.code == "AuthFailure")
        #expect(error.retryClass == .never)
    }

    @Test("STS error shape (ErrorResponse/Error)")
    func stsShape() {
        let body =
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
            + "<Code>ExpiredToken</Code><Message>expired</Message></Error><RequestId>abc</RequestId></ErrorResponse>"
        let error = EC2Error(httpStatus: 400, body: Array(body.utf8))
        #expect(error.code == "ExpiredToken")
        #expect(error.requestID == "abc")
        #expect(error.retryClass == .expiredCredentials)
    }

    @Test("a body that is not XML keeps the status and an excerpt")
    func nonXML() {
        let error = EC2Error(httpStatus: 502, body: Array("<html><body>Bad Gateway</body>".utf8))
        #expect(error.code == EC2Error.Code.unrecognizedErrorResponse)
        #expect(error.message.contains("Bad Gateway"))
        #expect(error.retryClass == .transient)
        #expect(EC2Error(httpStatus: 403, body: Array("Forbidden".utf8)).retryClass == .never)
    }

    @Test(
        "retry class is decided by code before status",
        arguments: [
            ("RequestLimitExceeded", 503, RetryClass.throttling),
            ("Throttling", 400, .throttling),
            ("InsufficientInstanceCapacity", 500, .capacity),
            ("InternalError", 500, .transient),
            ("ServiceUnavailable", 503, .transient),
            ("SomethingNew", 500, .transient),
            ("SomethingNew", 503, .throttling),
            ("SomethingNew", 429, .throttling),
            ("ExpiredToken", 400, .expiredCredentials),
            ("RequestExpired", 400, .expiredCredentials),
            ("AuthFailure", 401, .never),
            ("UnauthorizedOperation", 403, .never),
            ("InvalidParameterValue", 400, .never),
            ("DependencyViolation", 400, .never),
        ])
    func retryTable(code: String, status: Int, expected: RetryClass) {
        #expect(EC2Error(code: code, message: "", httpStatus: status).retryClass == expected)
    }

    @Test(
        "what can heal: throttling, capacity, transient, expiry and eventual consistency; refusals do not",
        arguments: [
            ("RequestLimitExceeded", 503, true), ("InsufficientInstanceCapacity", 500, true),
            ("InternalError", 500, true), ("ExpiredToken", 400, true),
            ("InvalidInstanceID.NotFound", 400, true), ("InvalidGroup.NotFound", 400, true),
            ("InvalidKeyPair.NotFound", 400, true),
            ("UnauthorizedOperation", 403, false), ("AuthFailure", 401, false), ("OptInRequired", 401, false),
            ("InvalidParameterValue", 400, false), ("InvalidParameterCombination", 400, false),
            ("InvalidAMIID.NotFound", 400, false), ("InvalidAMIID.Malformed", 400, false),
            ("InvalidSubnetID.NotFound", 400, false),
        ])
    func healing(code: String, status: Int, heals: Bool) {
        var error = EC2Error(code: code, message: "m", httpStatus: status)
        #expect(error.canHeal == heals)
        error.action = "RunInstances"
        #expect(error.description.hasPrefix("EC2Error(RunInstances: \(code), HTTP \(status)"))
        let wrapped = ProvisionError(.aws, "cannot launch: \(error)", underlying: error)
        #expect(wrapped.isRetryable == heals)
    }

    @Test("backoff: capped exponential bound, full jitter below it")
    func backoff() {
        let policy = RetryPolicy.aws
        #expect(policy.maximumAttempts == 5)
        #expect(policy.ceiling(afterAttempt: 1) == .milliseconds(200))
        #expect(policy.ceiling(afterAttempt: 3) == .milliseconds(800))
        #expect(policy.ceiling(afterAttempt: 10) == .seconds(20))
        for attempt in 1...8 {
            let delay = policy.delay(afterAttempt: attempt)
            #expect(delay >= .zero && delay <= policy.ceiling(afterAttempt: attempt))
        }
        #expect(policy.delay(afterAttempt: 2, random: 1) == .zero, "full jitter reaches zero")
    }
}
