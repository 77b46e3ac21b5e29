import AsyncHTTPClient
import Foundation
import TestSupport

/// scripts/fixtures/fault-proxy.py, started for one test in front of moto: forwards
/// requests (keeping Host, so signatures stay valid) and answers chosen actions with
/// AWS-shaped errors.
final class FaultProxy: Sendable {
    struct Rule: Encodable, Sendable {
        var action: String
        var times: Int = 1
        var status: Int?
        var code: String?
        var message: String?
        var shape: String?
        var body: String?
        var delay: Double?
        /// Text the form body must contain for the rule to apply.
        var match: String?
        /// Send the request upstream first, then answer the error (an answer lost on the way back).
        var forward: Bool?
        /// RunInstances: the launch succeeds, then its instances end terminated with this state reason.
        var terminate: String?
        /// The error answer's Date header is this many seconds from now.
        var dateOffset: Double?

        enum CodingKeys: String, CodingKey {
            case action, times, status, code, message, shape, body, delay, match, forward, terminate
            case dateOffset = "date_offset"
        }
    }

    struct Stats: Decodable, Sendable {
        /// Every request for the action that reached the proxy.
        var seen: Int
        var faulted: Int
        /// Forwarded requests the emulator itself failed (a 5xx, or no answer): under a loaded
        /// run moto can fail one now and then, and the client rightly retries it.
        var upstreamFailed: Int
        /// The X-Amz-Date of the last requests.
        var dates: [String]

        /// The client's attempts, less the ones the emulator failed on its own: what a retry
        /// rule under test decides.
        var attempts: Int { seen - upstreamFailed }

        enum CodingKeys: String, CodingKey {
            case seen, faulted, dates
            case upstreamFailed = "upstream_failed"
        }
    }

    let endpoint: URL
    private let process: Process
    private let input: Pipe

    private init(endpoint: URL, process: Process, input: Pipe) {
        self.endpoint = endpoint
        self.process = process
        self.input = input
    }

    /// Starts a proxy for `upstream`, runs `body`, and stops the proxy whatever happens.
    static func with<T>(upstream: URL, _ body: (FaultProxy) async throws -> T) async throws -> T {
        let proxy = try await start(upstream: upstream)
        do {
            let result = try await body(proxy)
            await proxy.stop()
            return result
        } catch {
            await proxy.stop()
            throw error
        }
    }

    private static func start(upstream: URL) async throws -> FaultProxy {
        let fixture = try await LoopbackFixture.start("fault-proxy.py", [upstream.absoluteString])
        return FaultProxy(endpoint: fixture.endpoint, process: fixture.process, input: fixture.input)
    }

    func add(_ rules: Rule...) async throws {
        var request = HTTPClientRequest(url: endpoint.appendingPathComponent("__fault__/rules").absoluteString)
        request.method = .POST
        request.body = .bytes(Array(try JSONEncoder().encode(rules)))
        let response = try await TestStack.httpClient.execute(request, timeout: .seconds(10))
        guard response.status == .ok else {
            throw FixtureError(message: "fault-proxy refused rules: \(response.status)")
        }
        _ = try await response.body.collect(upTo: 1 << 16)
    }

    func stats() async throws -> [String: Stats] {
        let request = HTTPClientRequest(url: endpoint.appendingPathComponent("__fault__/stats").absoluteString)
        let response = try await TestStack.httpClient.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONDecoder().decode([String: Stats].self, from: Data(body.readableBytesView))
    }

    /// How many attempts the client made for `action` (see `Stats.attempts`).
    func attempts(_ action: String) async throws -> Int {
        try await stats()[action]?.attempts ?? 0
    }

    func stop() async {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        let process = self.process
        _ = await process.exit(within: .seconds(30))
    }
}

/// A Python fixture from scripts/fixtures that serves HTTP on 127.0.0.1, prints "PORT n" once
/// it listens, and stops when its standard input closes.
struct LoopbackFixture {
    let endpoint: URL
    let process: Process
    let input: Pipe

    static func start(_ script: String, _ arguments: [String]) async throws -> LoopbackFixture {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Repository.fixture(script)] + arguments
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        // The first line is "PORT n", printed once the socket listens. Read off the
        // concurrency pool: the read blocks until the interpreter is up.
        let handle = output.fileHandleForReading
        let text = try await offPool {
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
            process.terminate()
            throw FixtureError(message: "\(script) did not report its port (got \(text.debugDescription))")
        }
        return LoopbackFixture(endpoint: URL(string: "http://127.0.0.1:\(port)")!, process: process, input: input)
    }

    func stop() async {
        try? self.input.fileHandleForWriting.close()
        if self.process.isRunning { self.process.terminate() }
        let process = self.process
        _ = await process.exit(within: .seconds(30))
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
