import Foundation
import Testing

@testable import AWSProvisioner

/// Reading cloud-init's verdict on the SSH key from a console, and the canary's redaction of
/// recorded AWS answers (pure logic).
@Suite("cloud-init console lines and recorded AWS answers")
struct CloudInitConsoleTests {
    @Test("authorized keys, no keys, not yet; the fingerprint of a key line is the one cloud-init prints")
    func verdicts() throws {
        let key = SSHKeyPair.generate(comment: "flotilla-c-1")
        let fingerprint = try #require(CloudInitConsole.fingerprint(ofPublicKeyLine: key.publicKeyLine))
        #expect(fingerprint.count == 32 * 3 - 1 && fingerprint.allSatisfy { $0.isHexDigit || $0 == ":" })
        let authorized = CloudInitConsole(
            """
            [   12.4] cloud-init[812]: Cloud-init v. 18.5 running 'init'
            ci-info: ++++++Authorized keys from /home/centos/.ssh/authorized_keys for user centos++++++
            ci-info: +---------+----------------------+---------+---------+
            ci-info: | Keytype | Fingerprint (sha256) | Options | Comment |
            ci-info: | ssh-ed25519 | \(fingerprint) | - | flotilla-c-1 |
            """)
        #expect(authorized.keys == .authorized([fingerprint]))
        let none = CloudInitConsole(
            """
            [   13.0] cloud-init[812]: util.py[WARNING]: Failed fetching metadata from url http://169.254.169.254/x
            [  252.1] cloud-init[812]: DataSourceEc2.py[CRITICAL]: Giving up on md from ['http://…'] after 240 seconds
            ci-info: no authorized SSH keys fingerprints found for user centos.
            """)
        #expect(none.keys == .none)
        #expect(none.warnings.count == 2 && none.warnings[1].contains("Giving up on md"))
        #expect(CloudInitConsole("[    0.0] Linux version 3.10.0\n").keys == .notYet)
        #expect(CloudInitConsole.fingerprint(ofPublicKeyLine: "not a key") == nil)
    }

    @Test("a recorded answer keeps its shape and loses credentials and key material")
    func redaction() {
        let answer = """
            <AssumeRoleResponse><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId>\
            <SecretAccessKey>wJalr/secret</SecretAccessKey><SessionToken>FwoG//token</SessionToken>\
            </Credentials></AssumeRoleResponse><keySet><item><publicKey>ssh-ed25519 AAAAC3</publicKey>\
            <keyName>flotilla-c-1</keyName></item><item><publicKey>ssh-ed25519 AAAAD4</publicKey></item></keySet>
            """
        let redacted = AWSResponseRecorder.redact(answer)
        for secret in ["ASIAEXAMPLE", "wJalr/secret", "FwoG//token", "AAAAC3", "AAAAD4"] {
            #expect(!redacted.contains(secret), "\(secret) in \(redacted)")
        }
        #expect(redacted.contains("<keyName>flotilla-c-1</keyName>"))
        #expect(redacted.components(separatedBy: "<publicKey>REMOVED</publicKey>").count == 3)
    }
}
