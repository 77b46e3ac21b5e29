import TestSupport
import Testing

@testable import AWSProvisioner

/// The request fields the server validates, judged here by the provisioner's own check: the
/// same table of cases (RequestValidationTests runs it through api_validate_request).
@Suite("ClusterSpec judges requests as the server does", .timeLimit(.minutes(1)))
struct ClusterSpecRulesTests {
    @Test("a DC/OS config with CR LF line ends and a leading --- merges as one document, its keys replacing ours")
    func dcosConfigLineEnds() {
        for lineEnd in ["\r\n", "\r", "\n", "\u{2028}"] {
            let overrides = ["# ours", "---", "cluster_name: renamed", "dns_search: example.com", ""]
                .joined(separator: lineEnd)
            let config = DCOSConfig.render(
                clusterName: "generated", bootstrapURL: "http://10.0.0.2:8081", masters: ["10.0.0.3"], agents: [],
                publicAgents: [], resolvers: ["10.0.0.2"], overrides: overrides)
            let lines = config.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(!lines.contains("---"), "\(lineEnd.debugDescription): \(config)")
            #expect(lines.filter { $0.hasPrefix("cluster_name:") } == ["cluster_name: renamed"], "\(config)")
            #expect(lines.contains("dns_search: example.com") && !config.contains("\r"), "\(config.debugDescription)")
        }
    }

    @Test("every node of the largest cluster a policy allows (100) and its bootstrap node is worked on at once")
    func parallelismCoversTheLargestCluster() throws {
        var spec = ClusterSpec(clusterID: "rules-2", installerURL: "https://example.com/dcos_generate_config.sh")
        spec.masters = 1
        spec.privateAgents = ClusterSpec.maximumNodes - 2
        spec.publicAgents = 1
        let nodes = spec.counts.map(\.count).reduce(0, +)
        #expect(
            nodes == 101 && spec.install.parallelism >= nodes, "\(spec.install.parallelism) at once, \(nodes) nodes")
        try spec.validate()
        for refused in [0, 1001] {
            spec.install.parallelism = refused
            #expect(throws: ProvisionError.self, "\(refused)") { try spec.validate() }
        }
    }

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
