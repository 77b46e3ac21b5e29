import AWSProvisioner
import Foundation
import Testing

@Suite("SigV4 signer", .timeLimit(.minutes(3)))
struct SigV4SignerTests {
    @Test("the fetched AWS test suite has exactly the 34 known cases")
    func suiteIsComplete() async throws {
        let root = try await SigV4TestSuite.directory()
        let enumerator = try #require(FileManager.default.enumerator(atPath: root.path))
        let cases = (enumerator.allObjects as? [String] ?? [])
            .filter { $0.hasSuffix(".req") }
            .map { ($0 as NSString).deletingLastPathComponent }
            .sorted()
        #expect(cases == SigV4TestSuite.caseNames.sorted())
        #expect(cases.count == 34)
    }

    @Test("AWS SigV4 test suite case", arguments: SigV4TestSuite.caseNames)
    func suiteCase(_ name: String) async throws {
        let testCase = try await SigV4TestSuite.load(name)
        let signer = SigV4Signer(
            credentials: testCase.credentials, region: SigV4TestSuite.region, service: SigV4TestSuite.service)
        var request = testCase.request
        signer.sign(&request, date: SigV4TestSuite.date)

        // Without the Authorization header the signed request's canonical form is the expected one.
        var unsigned = request
        unsigned.headers.removeAll { $0.name.lowercased() == "authorization" }
        let canonical = signer.canonicalRequest(unsigned)
        #expect(canonical == testCase.canonicalRequest)
        #expect(signer.stringToSign(canonicalRequest: canonical, date: SigV4TestSuite.date) == testCase.stringToSign)
        #expect(request.headerValues("Authorization") == [testCase.authorization])
    }

    @Test("a session token is added and signed exactly once")
    func sessionTokenSignedOnce() {
        let credentials = AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "token-1")
        let signer = SigV4Signer(credentials: credentials, region: "us-west-2", service: "ec2")
        var request = SigV4Request(
            method: "POST",
            headers: [
                .init(name: "Host", value: "example.com"),
                .init(name: "X-Amz-Security-Token", value: "stale"),
            ])
        signer.sign(&request, date: SigV4TestSuite.date)
        #expect(request.headerValues("x-amz-security-token") == ["token-1"])
        let authorization = try? #require(request.headerValues("Authorization").first)
        #expect(authorization?.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,") == true)
        #expect(authorization?.contains("/20150830/us-west-2/ec2/aws4_request") == true)
    }

    @Test("URI encoding keeps only RFC 3986 unreserved characters")
    func uriEncoding() {
        #expect(SigV4Signer.uriEncode("a-b_c.d~e") == "a-b_c.d~e")
        #expect(SigV4Signer.uriEncode("a b+c/d=e") == "a%20b%2Bc%2Fd%3De")
        #expect(SigV4Signer.uriEncode("ሴ") == "%E1%88%B4")
    }
}
