import AWSProvisioner
import TestSupport
import Testing

/// The request fields the server validates, judged here by the provisioner's own check: the
/// same table of cases (RequestValidationTests runs it through api_validate_request).
@Suite("ClusterSpec judges requests as the server does", .timeLimit(.minutes(1)))
struct ClusterSpecRulesTests {
    @Test("installer URLs: the server's accepted and refused cases, alike")
    func installerURLs() throws {
        for url in InstallerURLCases.accepted {
            #expect(throws: Never.self, "\(url)") {
                try ClusterSpec(clusterID: "rules-1", installerURL: url).validate()
            }
        }
        for url in InstallerURLCases.refused {
            let error = #expect(throws: ProvisionError.self, "\(url)") {
                try ClusterSpec(clusterID: "rules-1", installerURL: url).validate()
            }
            #expect(error?.message.contains("installer URL must be an http:// or https:// URL") == true, "\(url)")
        }
    }
}
