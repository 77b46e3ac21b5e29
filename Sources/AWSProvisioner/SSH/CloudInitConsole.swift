import Crypto
import Foundation

/// What cloud-init says on an instance's console about the login's SSH keys
/// (`cc_ssh_authkey_fingerprints`): the fingerprints of the keys it authorized, or that it
/// found none, which is how an image whose cloud-init could not read the metadata (tokens
/// required before cloud-init 19.4) boots: SSH then never opens.
public struct CloudInitConsole: Sendable, Equatable {
    public enum Keys: Sendable, Equatable {
        /// cloud-init has not printed its key table yet (still booting, or no cloud-init).
        case notYet
        /// The fingerprints (hex pairs, as cloud-init prints them) of the authorized keys.
        case authorized([String])
        /// `no authorized SSH keys fingerprints found for user …`.
        case none
    }

    public var keys: Keys
    /// cloud-init's WARNING and CRITICAL lines (metadata it could not read, say), at most 10.
    public var warnings: [String]

    public init(_ output: String) {
        var keys = Keys.notYet
        var fingerprints: [String] = []
        var warnings: [String] = []
        for line in output.split(whereSeparator: \.isNewline).map(String.init) {
            if line.contains("no authorized SSH keys fingerprints found") {
                keys = .none
            } else if line.hasPrefix("ci-info: |") {
                let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
                if cells.count >= 3, cells[2].contains(":"), !cells[2].hasPrefix("Fingerprint") {
                    fingerprints.append(cells[2])
                }
            } else if line.contains("[WARNING]") || line.contains("[CRITICAL]"), warnings.count < 10 {
                warnings.append(line.trimmingCharacters(in: .whitespaces))
            }
        }
        if !fingerprints.isEmpty { keys = .authorized(fingerprints) }
        self.keys = keys
        self.warnings = warnings
    }

    /// The fingerprint cloud-init prints for a public key line (`authkey_hash: sha256`, its
    /// default): the SHA-256 of the key blob, as colon-separated hex pairs.
    public static func fingerprint(ofPublicKeyLine line: String) -> String? {
        let fields = line.split(separator: " ")
        guard fields.count >= 2, let blob = Data(base64Encoded: String(fields[1])) else { return nil }
        return SHA256.hash(data: blob).map { String(format: "%02x", $0) }.joined(separator: ":")
    }
}
