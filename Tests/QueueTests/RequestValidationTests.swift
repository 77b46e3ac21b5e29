import Foundation
import PostgresNIO
import Queue
import TestSupport
import Testing

/// The server is where a cluster request is validated (api_validate_request, migration 0011):
/// these cases call it directly, as api_request and pool_set do before they record anything.
@Suite("Request rules in the server", .timeLimit(.minutes(2)))
struct RequestValidationTests {
    static var base: [String: Any] {
        [
            "masters": 1, "agents": 0, "publicAgents": 0, "instanceType": "m4.large", "adminLocation": "0.0.0.0/0",
            "installerURL": "https://downloads.example.com/dcos/stable/dcos_generate_config.sh", "genconfFiles": [],
            "lifetimeSeconds": 3600,
        ]
    }

    /// The server's refusal of `request`, or nil when it accepts it.
    static func refusal(_ client: PostgresClient, _ changes: [String: Any]) async throws -> String? {
        let request = Self.base.merging(changes) { $1 }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        do {
            // The refusal comes after the row description: it is thrown while the rows are read.
            let rows = try await client.query(
                "SELECT api_validate_request(\(json)::jsonb, '*')", logger: TestDatabase.logger)
            for try await _ in rows {}
            return nil
        } catch let error as PSQLError {
            return error.serverInfo?[.message] ?? "\(error)"
        }
    }

    @Test("a DC/OS config is a YAML block mapping of top-level keys; anything else is refused with its line")
    func dcosConfigMapping() async throws {
        let accepted = [
            "",
            "   \n# only a comment\n",
            "dns_search: example.com\n",
            "---\nresolvers:\n- 10.0.0.2\n- 10.0.0.3\ncheck_time: false\n",
            "# the team's settings\nsecurity: permissive\nmesos_container_log_sink: journald\n"
                + "\"quoted key\": 1\n'single': 2\nnested:\n  deeper:\n    - a\n  other: |\n    text block\n",
            "telemetry_enabled: 'false'\r\noauth_enabled: false\r\n",
            "ip_detect_contents: |\n  #!/bin/sh\n  \techo 10.0.0.1\n\nanchored: &defaults\n  x: 1\n",
        ]
        let refused: [(String, String)] = [
            ("- a\n- b\n", "it is a YAML list, not a mapping"),
            ("just words\n", "line 1 is not a top-level \"key: value\" line"),
            ("{dns_search: example.com}\n", "line 1 is not a top-level"),
            ("  indented: first\nkey: value\n", "line 1 is indented, but no top-level key comes before it"),
            ("key:\n\t- tabbed\n", "line 2 is indented with a tab"),
            ("a: 1\n---\nb: 2\n", "line 2 starts or ends a YAML document"),
            ("a: 1\n...\n", "line 2 starts or ends a YAML document"),
            ("a: 1\nsecret_password hunter2\n", "line 2 is not a top-level"),
            ("# comment\n---\n---\na: 1\n", "line 3 starts or ends a YAML document"),
            ("a: 1\n- x\n", "line 2 is a list item under a key whose value is already given"),
            ("a: 1\n  b: 2\n", "line 2 is indented under a key whose value is already on its line"),
            ("# x\r- a\r- b\r", "it is a YAML list, not a mapping"),
            ("a: 1\u{2028}---\u{2028}b: 2", "line 2 starts or ends a YAML document"),
            ("text: |\n  ok\nafter: 1\n  stray: 2\n", "line 4 is indented under a key whose value"),
        ]
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            for yaml in accepted {
                let refusal = try await Self.refusal(client, ["dcosConfig": yaml])
                #expect(refusal == nil, "\(yaml.debugDescription): \(refusal ?? "")")
            }
            for (yaml, words) in refused {
                let refusal = try await Self.refusal(client, ["dcosConfig": yaml]) ?? "accepted"
                #expect(refusal.contains("must be a YAML mapping of config.yaml keys"), "\(yaml.debugDescription)")
                #expect(refusal.contains(words), "\(yaml.debugDescription): \(refusal)")
                #expect(!refusal.contains("hunter2"), "a refusal never repeats the line: \(refusal)")
            }
            let notText = try await Self.refusal(client, ["dcosConfig": ["a": 1]])
            #expect(notText == "dcosConfig must be the text of a YAML file")
        }
    }

    @Test("an installer URL is http(s), a host, a port, printable ASCII: no spaces, no user:password@")
    func installerURL() async throws {
        let db = try await TestDatabase.migrated()
        try await db.withClient { client in
            for url in InstallerURLCases.accepted {
                let refusal = try await Self.refusal(client, ["installerURL": url])
                #expect(refusal == nil, "\(url): \(refusal ?? "")")
            }
            for url in InstallerURLCases.refused {
                let refusal = try await Self.refusal(client, ["installerURL": url])
                #expect(
                    refusal == "installer URL must be an http:// or https:// URL of dcos_generate_config.sh",
                    "\(url): \(refusal ?? "accepted")")
            }
        }
    }
}
