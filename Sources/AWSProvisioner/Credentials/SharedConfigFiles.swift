import Foundation

/// The AWS shared `config` and `credentials` files, parsed the way the AWS CLI reads them.
///
/// `config` names sections `[default]` and `[profile NAME]`; `credentials` names them
/// `[NAME]`. For a profile, keys from the credentials file win over keys from the config
/// file. Lines starting with `#` or `;` are comments; indented lines under a key with an
/// empty value (nested settings such as `s3 =`) are ignored.
public struct SharedConfigFiles: Sendable, Equatable {
    /// Settings per profile name, keys lower-cased.
    public var profiles: [String: [String: String]]
    /// `[sso-session NAME]` sections of the config file, keys lower-cased.
    public var ssoSessions: [String: [String: String]] = [:]

    public init(profiles: [String: [String: String]] = [:]) {
        self.profiles = profiles
    }

    /// Reads the files named by `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE`, or
    /// `~/.aws/config` and `~/.aws/credentials`. Missing files count as empty.
    public static func load(environment: [String: String]) throws -> SharedConfigFiles {
        let home = environment["HOME"] ?? NSHomeDirectory()
        let configPath = expand(environment["AWS_CONFIG_FILE"] ?? "~/.aws/config", home: home)
        let credentialsPath = expand(environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "~/.aws/credentials", home: home)
        let config = try readIfPresent(configPath)
        let credentials = try readIfPresent(credentialsPath)
        return SharedConfigFiles(config: config ?? "", credentials: credentials ?? "")
    }

    /// Parses file contents; `config` uses `[profile NAME]` sections, `credentials` `[NAME]`.
    public init(config: String, credentials: String) {
        var profiles: [String: [String: String]] = [:]
        var sessions: [String: [String: String]] = [:]
        for (section, values) in Self.parse(config) {
            let name: String
            if section == "default" {
                name = "default"
            } else if section.hasPrefix("profile ") || section.hasPrefix("profile\t") {
                name = String(section.dropFirst("profile".count)).trimmingWhitespace()
            } else if section.hasPrefix("sso-session ") || section.hasPrefix("sso-session\t") {
                sessions[String(section.dropFirst("sso-session".count)).trimmingWhitespace(), default: [:]]
                    .merge(values) { _, new in new }
                continue
            } else {
                continue // services and other non-profile sections
            }
            profiles[name, default: [:]].merge(values) { _, new in new }
        }
        for (section, values) in Self.parse(credentials) {
            profiles[section, default: [:]].merge(values) { _, new in new }
        }
        self.profiles = profiles
        self.ssoSessions = sessions
    }

    /// The settings of one profile, or `nil` if neither file defines it.
    public func profile(_ name: String) -> [String: String]? {
        profiles[name]
    }

    static func parse(_ text: String) -> [(String, [String: String])] {
        var sections: [(String, [String: String])] = []
        var current: Int?
        var inNestedBlock = false
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = String(rawLine)
            let trimmed = line.trimmingWhitespace()
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix(";") { continue }
            if trimmed.hasPrefix("[") {
                inNestedBlock = false
                guard let close = trimmed.firstIndex(of: "]") else {
                    current = nil
                    continue
                }
                let name = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close]).trimmingWhitespace()
                sections.append((name, [:]))
                current = sections.count - 1
                continue
            }
            guard let current else { continue }
            let indented = line.first == " " || line.first == "\t"
            if indented && inNestedBlock { continue }
            guard let equals = trimmed.firstIndex(of: "=") else { continue }
            let key = String(trimmed[..<equals]).trimmingWhitespace().lowercased()
            var value = String(trimmed[trimmed.index(after: equals)...]).trimmingWhitespace()
            // An inline comment needs whitespace before the marker.
            for marker in [" #", " ;", "\t#", "\t;"] {
                if let range = value.range(of: marker) {
                    value = String(value[..<range.lowerBound]).trimmingWhitespace()
                }
            }
            if value.isEmpty && !indented {
                inNestedBlock = true
                continue
            }
            inNestedBlock = false
            sections[current].1[key] = value
        }
        return sections
    }

    private static func expand(_ path: String, home: String) -> String {
        if path == "~" { return home }
        if path.hasPrefix("~/") { return home + path.dropFirst(1) }
        return path
    }

    private static func readIfPresent(_ path: String) throws -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CredentialsError(.invalidConfiguration, "cannot read \(path)")
        }
    }
}
