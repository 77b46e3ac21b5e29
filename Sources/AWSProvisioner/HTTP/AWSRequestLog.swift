import Foundation
import Synchronization

/// When `FLOTILLA_AWS_REQUEST_LOG` names a file, every AWS Query call this process sends is
/// appended to it as one JSON line: service, API version, action, parameters and the program
/// that sent it. Tests check
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

    /// The program that sent it (`worker`, or the test runner), for the IAM policy check.
    static let process = ProcessInfo.processInfo.processName

    /// Parameters whose values are not written, only their length.
    static let redacted: Set<String> = ["PublicKeyMaterial", "UserData", "SerialNumber", "TokenCode", "Policy"]

    func record(service: String, version: String, action: String, parameters: [(String, String)]) {
        let values = parameters.map { name, value -> [String] in
            let leaf = name.split(separator: ".").last.map(String.init) ?? name
            return [name, Self.redacted.contains(leaf) ? "<\(value.utf8.count) bytes>" : String(value.prefix(200))]
        }
        let line: [String: Any] = [
            "service": service, "version": version, "action": action, "parameters": values, "process": Self.process,
        ]
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

/// Writes every AWS answer sent within its scope (``withRecorder(_:)``) to a folder, one file
/// per answer (`0001-RunInstances-200.xml`), so a run against a real account can become test
/// fixtures (`worker canary --record`). Credentials and key material are removed: the
/// elements below lose their text, and the request's parameters go through the same
/// redaction as ``AWSRequestLog``'s. Signatures and tokens travel in headers, which are never
/// written.
public final class AWSResponseRecorder: Sendable {
    @TaskLocal static var current: AWSResponseRecorder?

    /// Elements whose text is removed from answers.
    static let secretElements = [
        "SecretAccessKey", "SessionToken", "AccessKeyId", "keyMaterial", "publicKey", "Token", "accessToken",
    ]

    public let folder: URL
    private let count = Mutex(0)

    public init(folder: URL) throws {
        self.folder = folder
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    /// Runs `body` with every AWS answer within it recorded here.
    public func withRecorder<T>(_ body: () async throws -> T) async rethrows -> T {
        try await Self.$current.withValue(self) { try await body() }
    }

    func record(action: String, parameters: [(String, String)], status: Int, body: [UInt8]) {
        let number = self.count.withLock { count in
            count += 1
            return count
        }
        let request = parameters.map { name, value in
            let leaf = name.split(separator: ".").last.map(String.init) ?? name
            return "\(name)=\(AWSRequestLog.redacted.contains(leaf) ? "<\(value.utf8.count) bytes>" : value)"
        }
        let text = Self.redact(String(decoding: body, as: UTF8.self))
        let file = self.folder.appendingPathComponent(String(format: "%04d-%@-%d.xml", number, action, status))
        let header =
            "<!-- \(action): \(request.joined(separator: " ").replacingOccurrences(of: "--", with: "- -")) -->\n"
        try? Data((header + text).utf8).write(to: file)
    }

    /// `text` with the contents of every ``secretElements`` element replaced by `REMOVED`.
    static func redact(_ text: String) -> String {
        var result = text
        for name in Self.secretElements {
            var searchFrom = result.startIndex
            while let open = result.range(of: "<\(name)>", range: searchFrom..<result.endIndex),
                let close = result.range(of: "</\(name)>", range: open.upperBound..<result.endIndex)
            {
                result.replaceSubrange(open.upperBound..<close.lowerBound, with: "REMOVED")
                searchFrom = result.index(open.upperBound, offsetBy: "REMOVED".count)
            }
        }
        return result
    }
}
