import AWSProvisioner
import Foundation

/// scripts/fixtures/credential-process.py with its own state folder: hands out the given
/// credentials with an `Expiration` `lifetime` seconds ahead, and counts its invocations.
struct CredentialProcessFixture: Sendable {
    let directory: URL

    init(credentials: AWSCredentials, lifetime: TimeInterval) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("flotilla-credproc"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var payload = ["AccessKeyId": credentials.accessKeyID, "SecretAccessKey": credentials.secretAccessKey]
        payload["SessionToken"] = credentials.sessionToken
        try JSONSerialization.data(withJSONObject: payload).write(
            to: directory.appendingPathComponent("credentials.json"))
        guard
            FileManager.default.createFile(
                atPath: directory.appendingPathComponent("invocations").path, contents: Data())
        else {
            throw FixtureError(message: "cannot create the invocations file")
        }
        try setLifetime(lifetime)
    }

    /// The `credential_process` command line.
    var command: String {
        "python3 '\(Repository.fixture("credential-process.py"))' '\(directory.path)'"
    }

    var provider: ProcessCredentialsProvider { ProcessCredentialsProvider(command: command) }

    func setLifetime(_ seconds: TimeInterval) throws {
        try String(seconds).write(to: directory.appendingPathComponent("lifetime"), atomically: true, encoding: .utf8)
    }

    func setFailing(_ failing: Bool) throws {
        let path = directory.appendingPathComponent("fail")
        if failing {
            try "injected failure\n".write(to: path, atomically: true, encoding: .utf8)
        } else {
            try? FileManager.default.removeItem(at: path)
        }
    }

    var invocations: Int {
        get throws {
            let text = try String(contentsOf: directory.appendingPathComponent("invocations"), encoding: .utf8)
            return text.split(separator: "\n").count
        }
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}
