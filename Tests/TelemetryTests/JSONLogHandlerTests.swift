import Foundation
import Logging
import Synchronization
import Testing

@testable import Telemetry

@Suite("JSON log lines", .timeLimit(.minutes(1)))
struct JSONLogHandlerTests {
    /// The lines a handler wrote.
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { self.lines.withLock { $0.append(line) } }
        var all: [String] { self.lines.withLock { $0 } }
    }

    static func logger(_ lines: Lines, provider: Logger.MetadataProvider? = nil) -> Logger {
        var logger = Logger(label: "flotilla.test") { label in
            JSONLogHandler(label: label, metadataProvider: provider) { lines.append($0) }
        }
        logger.logLevel = .debug
        return logger
    }

    static func object(_ line: String) throws -> [String: Any] {
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1, "one line: \(line)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("one JSON object per line: time, level, logger, message, then the metadata under its dotted keys")
    func fields() throws {
        let lines = Lines()
        var logger = Self.logger(lines)
        logger[metadataKey: MetadataKey.clusterID] = "c-0123456789"
        logger.info("cluster ready", metadata: ["job.id": "42", "nodes": ["10.0.0.1", "10.0.0.2"]])
        let object = try Self.object(try #require(lines.all.first))
        #expect(object["level"] as? String == "info")
        #expect(object["logger"] as? String == "flotilla.test")
        #expect(object["message"] as? String == "cluster ready")
        #expect(object["cluster.id"] as? String == "c-0123456789")
        #expect(object["job.id"] as? String == "42")
        #expect(object["nodes"] as? [String] == ["10.0.0.1", "10.0.0.2"])
        let time = try #require(object["time"] as? String)
        #expect(
            try Date(time, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)) <= Date())
    }

    @Test("quotes, backslashes, newlines and control characters cannot break a line or the JSON")
    func hostileValues() throws {
        let lines = Lines()
        let logger = Self.logger(lines)
        let hostile = "a \"quoted\" \\ back\nslash\r\t\u{1}\u{2028} end"
        logger.warning("\(hostile)", metadata: ["error": "\(hostile)", "nested": ["k": "\(hostile)"]])
        let object = try Self.object(try #require(lines.all.first))
        #expect(object["message"] as? String == hostile)
        #expect(object["error"] as? String == hostile)
        #expect((object["nested"] as? [String: String])?["k"] == hostile)
    }

    @Test("explicit metadata wins over the provider's, which wins over the logger's; reserved keys stay the handler's")
    func precedence() throws {
        let lines = Lines()
        let provider = Logger.MetadataProvider { ["source.key": "provider", "shared": "provider"] }
        var logger = Self.logger(lines, provider: provider)
        logger[metadataKey: "shared"] = "logger"
        logger[metadataKey: "level"] = "forged"
        logger.error("done", metadata: ["shared": "explicit", "message": "forged"])
        let object = try Self.object(try #require(lines.all.first))
        #expect(object["shared"] as? String == "explicit")
        #expect(object["source.key"] as? String == "provider")
        #expect(object["level"] as? String == "error")
        #expect(object["message"] as? String == "done")
    }

    @Test("LogFormat names exactly text and json")
    func formats() {
        #expect(LogFormat.allCases.map(\.rawValue).sorted() == ["json", "text"])
        #expect(LogFormat(rawValue: "yaml") == nil)
    }
}
