import AWSProvisioner
import Foundation
import TestSupport

/// The AWS Signature Version 4 test suite from botocore's source distribution, fetched by
/// scripts/fixtures/aws-sigv4-suite.py into a cache (not committed).
enum SigV4TestSuite {
    /// The 34 cases, by folder.
    static let caseNames = [
        "get-header-key-duplicate", "get-header-value-multiline", "get-header-value-order", "get-header-value-trim",
        "get-unreserved", "get-utf8", "get-vanilla", "get-vanilla-empty-query-key", "get-vanilla-query",
        "get-vanilla-query-order-encoded", "get-vanilla-query-order-key", "get-vanilla-query-order-key-case",
        "get-vanilla-query-order-value", "get-vanilla-query-unreserved", "get-vanilla-utf8-query",
        "get-vanilla-with-session-token", "normalize-path/get-relative", "normalize-path/get-relative-relative",
        "normalize-path/get-slash", "normalize-path/get-slash-dot-slash", "normalize-path/get-slash-pointless-dot",
        "normalize-path/get-slashes", "normalize-path/get-space", "normalize-path/get-special-character",
        "post-header-key-case", "post-header-key-sort", "post-header-value-case",
        "post-sts-token/post-sts-header-after",
        "post-sts-token/post-sts-header-before", "post-vanilla", "post-vanilla-empty-query-value", "post-vanilla-query",
        "post-x-www-form-urlencoded", "post-x-www-form-urlencoded-parameters",
    ]

    static let accessKeyID = "AKIDEXAMPLE"
    static let secretAccessKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    static let region = "us-east-1"
    static let service = "service"
    /// 2015-08-30T12:36:00Z
    static let date = Date(timeIntervalSince1970: 1_440_938_160)

    /// The cache folder: FLOTILLA_CACHE_DIR, else ~/.cache/flotilla.
    static var cacheDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        if let dir = environment["FLOTILLA_CACHE_DIR"], !dir.isEmpty { return dir }
        return (environment["HOME"] ?? NSTemporaryDirectory()) + "/.cache/flotilla"
    }

    /// The suite folder, fetched on first use (once per test process), off the concurrency pool.
    static let fetch = Task<URL, any Error> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Repository.fixture("aws-sigv4-suite.py"), cacheDirectory]
        let run = try await process.runToCompletion()
        let (status, path) = (run.status, run.output)
        guard status == 0 else {
            throw FixtureError(
                message: "fetching the SigV4 test suite failed (pip download botocore==1.43.11), status \(status)")
        }
        return URL(fileURLWithPath: path.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func directory() async throws -> URL {
        try await fetch.value
    }

    struct Case {
        var request: SigV4Request
        var credentials: AWSCredentials
        var canonicalRequest: String
        var stringToSign: String
        var authorization: String
    }

    static func load(_ name: String) async throws -> Case {
        let folder = try await directory().appendingPathComponent(name)
        let base = folder.appendingPathComponent((name as NSString).lastPathComponent).path
        func read(_ suffix: String) throws -> String {
            try String(contentsOfFile: base + suffix, encoding: .utf8).replacingOccurrences(of: "\r", with: "")
        }
        let canonical = try read(".creq")
        // As botocore's harness does: the case uses a session token when the expected
        // canonical request signs one.
        let token = canonical.split(separator: "\n").first { $0.hasPrefix("x-amz-security-token:") }
            .map { String($0.dropFirst("x-amz-security-token:".count)) }
        return Case(
            request: try parseRequest(try read(".req")),
            credentials: AWSCredentials(
                accessKeyID: accessKeyID, secretAccessKey: secretAccessKey, sessionToken: token),
            canonicalRequest: canonical,
            stringToSign: try read(".sts"),
            authorization: try read(".authz"))
    }

    /// Parses a raw `.req` file: request line, headers (with folded continuation lines), body.
    static func parseRequest(_ text: String) throws -> SigV4Request {
        var lines = text.components(separatedBy: "\n")
        let requestLine = lines.removeFirst()
        guard let firstSpace = requestLine.firstIndex(of: " "),
            let protocolRange = requestLine.range(of: " HTTP/", options: .backwards)
        else {
            throw FixtureError(message: "bad request line \(requestLine)")
        }
        let method = String(requestLine[..<firstSpace])
        let target = String(requestLine[requestLine.index(after: firstSpace)..<protocolRange.lowerBound])
        var headers: [SigV4Request.Header] = []
        while !lines.isEmpty {
            let line = lines.removeFirst()
            if line.isEmpty { break }
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].value += "\n" + line
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw FixtureError(message: "bad header \(line)") }
            headers.append(.init(name: String(line[..<colon]), value: String(line[line.index(after: colon)...])))
        }
        let body = Array(lines.joined(separator: "\n").utf8)
        var path = target
        var query: [SigV4Request.QueryItem] = []
        if let mark = target.firstIndex(of: "?") {
            path = String(target[..<mark])
            for pair in target[target.index(after: mark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
                let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
                query.append(.init(name: name, value: value))
            }
        }
        return SigV4Request(method: method, path: path, query: query, headers: headers, body: body)
    }
}
