import Foundation

/// When `FLOTILLA_AWS_REQUEST_LOG` names a file, every AWS Query call this process sends is
/// appended to it as one JSON line: service, API version, action and parameters. Tests check
/// every line against botocore's service models (scripts/fixtures/check-aws-requests.py), so a
/// misspelt parameter or filter name fails a test instead of a real account. Values that
/// could be long or sensitive are replaced by their length; credentials never appear here
/// (they travel in headers).
final class AWSRequestLog: Sendable {
    static let shared: AWSRequestLog? = {
        guard let path = ProcessInfo.processInfo.environment["FLOTILLA_AWS_REQUEST_LOG"], !path.isEmpty else {
            return nil
        }
        return AWSRequestLog(path: path)
    }()

    private let path: String

    init(path: String) {
        self.path = path
    }

    /// Parameters whose values are not written, only their length.
    static let redacted: Set<String> = ["PublicKeyMaterial", "UserData", "SerialNumber", "TokenCode", "Policy"]

    func record(service: String, version: String, action: String, parameters: [(String, String)]) {
        let values = parameters.map { name, value -> [String] in
            let leaf = name.split(separator: ".").last.map(String.init) ?? name
            return [name, Self.redacted.contains(leaf) ? "<\(value.utf8.count) bytes>" : String(value.prefix(200))]
        }
        let line: [String: Any] = ["service": service, "version": version, "action": action, "parameters": values]
        guard var data = try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]) else { return }
        data.append(0x0A)
        // Many processes (workers, janitors, tests) and tasks append to one file: O_APPEND with
        // one write() per line, so lines never overlap and a second creator never truncates.
        let descriptor = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        data.withUnsafeBytes { buffer in
            _ = write(descriptor, buffer.baseAddress, buffer.count)
        }
    }
}
