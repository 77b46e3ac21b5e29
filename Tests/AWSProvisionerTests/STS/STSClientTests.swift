import AWSProvisioner
import Foundation
import Testing

@Suite("STS client against moto_server", .timeLimit(.minutes(3)))
struct STSClientTests {
    @Test("GetCallerIdentity names the IAM user")
    func callerIdentity() async throws {
        let stack = try TestStack.current()
        let identity = try await stack.sts().getCallerIdentity()
        #expect(identity.arn == "arn:aws:iam::123456789012:user/flotilla-test")
        #expect(identity.account == "123456789012")
        #expect(!identity.userID.isEmpty)
    }

    @Test("AssumeRole returns temporary credentials that sign EC2 and STS calls")
    func assumeRole() async throws {
        let stack = try TestStack.current()
        let session = uniqueName("session")
        let role = try await stack.sts().assumeRole(
            roleARN: stack.roleARN, sessionName: session, duration: .seconds(900))
        let expiration = try #require(role.credentials.expiration)
        #expect(abs(expiration.timeIntervalSinceNow - 900) < 120)
        #expect(role.credentials.sessionToken != nil)
        #expect(role.arn.hasSuffix("assumed-role/flotilla-test-role/\(session)"))
        #expect(!role.description.contains(role.credentials.secretAccessKey))

        let assumed = stack.cache(StaticCredentialsProvider(role.credentials))
        let identity = try await stack.sts(credentials: assumed).getCallerIdentity()
        #expect(identity.arn.contains("assumed-role/flotilla-test-role/\(session)"))
        let vpcs = try await stack.ec2(region: "ap-southeast-1", credentials: assumed).describeVpcs()
        #expect(vpcs.contains { $0.isDefault })
    }

    @Test("a wrong secret is rejected by STS with SignatureDoesNotMatch")
    func wrongSecret() async throws {
        let stack = try TestStack.current()
        var wrong = stack.credentials
        wrong.secretAccessKey = "not-the-secret"
        let error = await #expect(throws: EC2Error.self) {
            _ = try await stack.sts(credentials: stack.cache(StaticCredentialsProvider(wrong))).getCallerIdentity()
        }
        #expect(error?.code == "SignatureDoesNotMatch")
        #expect(error?.retryClass == .never)
    }
}
