import Foundation

/// Writes the installer's `genconf/config.yaml` from the cluster's nodes, and merges the
/// request's own YAML over it by top-level key.
enum DCOSConfig {
    /// The generated configuration, with `overrides` merged on top: every top-level key the
    /// overrides name replaces the generated key of that name (with everything nested
    /// under it); other keys of the overrides are added.
    static func render(
        clusterName: String, bootstrapURL: String, masters: [String], agents: [String],
        publicAgents: [String], resolvers: [String], overrides: String?
    ) -> String {
        func list(_ values: [String]) -> String {
            values.isEmpty ? " []" : "\n" + values.map { "- \($0)" }.joined(separator: "\n")
        }
        var generated: [(key: String, text: String)] = [
            ("cluster_name", "cluster_name: \(clusterName)"),
            ("bootstrap_url", "bootstrap_url: \(bootstrapURL)"),
            ("exhibitor_storage_backend", "exhibitor_storage_backend: static"),
            ("master_discovery", "master_discovery: static"),
            ("master_list", "master_list:" + list(masters)),
            ("agent_list", "agent_list:" + list(agents)),
            ("public_agent_list", "public_agent_list:" + list(publicAgents)),
            ("resolvers", "resolvers:" + list(resolvers)),
            ("platform", "platform: aws"),
            ("ip_detect_public_filename", "ip_detect_public_filename: genconf/ip-detect-public"),
            ("fault_domain_detect_filename", "fault_domain_detect_filename: genconf/fault-domain-detect"),
        ]
        guard let overrides = overrides.map({ withoutDocumentStart(withNewlines($0)) }),
            !overrides.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else {
            return generated.map(\.text).joined(separator: "\n") + "\n"
        }
        let overridden = topLevelKeys(of: overrides)
        generated.removeAll { overridden.contains($0.key) }
        return generated.map(\.text).joined(separator: "\n") + "\n" + overrides.trimmingCharacters(in: .newlines) + "\n"
    }

    /// The text with every line break YAML knows (CR LF, CR, NEL, LS, PS) as LF, as the
    /// server reads it (api_yaml_mapping_problem). Swift's String treats CR LF as one
    /// Character, so a split on "\n" alone would see a CR LF file as a single line.
    static func withNewlines(_ text: String) -> String {
        var result = text.replacingOccurrences(of: "\r\n", with: "\n")
        for lineBreak in ["\r", "\u{85}", "\u{2028}", "\u{2029}"] {
            result = result.replacingOccurrences(of: lineBreak, with: "\n")
        }
        return result
    }

    /// The overrides without a leading `---` line, which the server accepts (a YAML file often
    /// starts with one) and which, appended after the generated keys, would start a second
    /// document. The server refuses any later `---` or `...` (api_yaml_mapping_problem).
    static func withoutDocumentStart(_ yaml: String) -> String {
        var lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
        guard
            let first = lines.firstIndex(where: {
                let trimmed = $0.trimmingCharacters(in: .whitespaces)
                return !trimmed.isEmpty && !trimmed.hasPrefix("#")
            }),
            lines[first].wholeMatch(of: /---[ \t]*(#.*)?/) != nil
        else { return yaml }
        lines.remove(at: first)
        return lines.joined(separator: "\n")
    }

    /// The keys of a YAML mapping's top level: lines that start at column 0 with `key:`.
    static func topLevelKeys(of yaml: String) -> Set<String> {
        var keys: Set<String> = []
        for line in yaml.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let first = line.first, first != " ", first != "\t", first != "#", first != "-" else { continue }
            if let colon = line.firstIndex(of: ":") {
                keys.insert(
                    line[..<colon].trimmingCharacters(in: .whitespaces).trimmingCharacters(
                        in: CharacterSet(charactersIn: "\"'")))
            }
        }
        return keys
    }
}
