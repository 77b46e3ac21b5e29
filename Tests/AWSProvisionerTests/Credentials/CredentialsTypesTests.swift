import Foundation
import Testing

@testable import AWSProvisioner

@Suite("Credentials values", .timeLimit(.minutes(3)))
struct CredentialsTypesTests {
    @Test("description never shows the secret or the session token")
    func redaction() {
        let credentials = AWSCredentials(
            accessKeyID: "AKIAEXAMPLE", secretAccessKey: "SECRET-VALUE", sessionToken: "TOKEN-VALUE",
            expiration: Date(timeIntervalSince1970: 0))
        for text in [credentials.description, String(reflecting: credentials), "\(credentials)"] {
            #expect(text.contains("AKIAEXAMPLE"))
            #expect(!text.contains("SECRET-VALUE"))
            #expect(!text.contains("TOKEN-VALUE"))
        }
    }

    @Test(
        "AWS timestamps with 0 to 6 fractional digits and offsets",
        arguments: [
            ("2026-11-25T12:45:07Z", 0.0),
            ("2026-11-25T12:45:07.5Z", 0.5),
            ("2026-11-25T12:45:07.526257Z", 0.526257),
            ("2026-11-25T13:45:07+01:00", 0.0),
            ("2026-11-25T12:45:07.000+00:00", 0.0),
        ])
    func timestamps(text: String, fraction: Double) throws {
        let date = try #require(AWSTimestamp.parse(text))
        let base = 1_795_610_707.0 // 2026-11-25T12:45:07Z
        #expect(abs(date.timeIntervalSince1970 - (base + fraction)) < 0.000_01)
    }

    @Test("malformed timestamps are refused", arguments: ["", "2026-11-25", "2026-11-25T12:45:07Q", "yesterday"])
    func badTimestamps(text: String) {
        #expect(AWSTimestamp.parse(text) == nil)
    }

    @Test("credential_process output: Version 1 with Expiration, or without it for long-term keys")
    func processOutput() throws {
        let json =
            #"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"S","SessionToken":"T","#
            + #""Expiration":"2026-11-25T12:45:07Z"}"#
        let temporary = try ProcessCredentialsProvider.decode(Data(json.utf8))
        #expect(temporary.sessionToken == "T")
        #expect(temporary.expiration == AWSTimestamp.parse("2026-11-25T12:45:07Z"))
        let longTerm = try ProcessCredentialsProvider.decode(
            Data(#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"S"}"#.utf8))
        #expect(longTerm.expiration == nil)
        #expect(throws: CredentialsError.self) {
            try ProcessCredentialsProvider.decode(Data(#"{"Version":2,"AccessKeyId":"A","SecretAccessKey":"S"}"#.utf8))
        }
        #expect(throws: CredentialsError.self) { try ProcessCredentialsProvider.decode(Data("not json".utf8)) }
    }
}
