import Foundation
import Logging

/// How an executable writes its log lines to standard error.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `2026-12-02T20:00:00+0000 info flotilla.worker: cluster.id=c-… message`, for people.
    case text
    /// One JSON object per line, metadata under its dotted keys, for machines.
    case json

    /// Installs the process's log handler once. Later calls do nothing (swift-log allows one).
    public static func bootstrap(_ format: LogFormat, level: Logger.Level) {
        LoggingSystem.bootstrap(
            { label, provider in
                switch format {
                case .text:
                    var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
                    handler.logLevel = level
                    return handler
                case .json:
                    var handler = JSONLogHandler(label: label, metadataProvider: provider)
                    handler.logLevel = level
                    return handler
                }
            }, metadataProvider: LogContext.provider)
    }
}

/// Writes each record as one line of JSON to standard error, in one `write(2)`, so the
/// lines of several tasks never interleave:
///
///     {"time":"2026-12-02T20:00:00.123Z","level":"info","logger":"flotilla.worker","message":"…","cluster.id":"c-…"}
///
/// Metadata keys are kept as they are (dotted, from ``MetadataKey``); a key never
/// overwrites `time`, `level`, `logger` or `message`.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let write: @Sendable (String) -> Void

    public init(
        label: String, metadataProvider: Logger.MetadataProvider? = nil,
        write: @escaping @Sendable (String) -> Void = JSONLogHandler.writeToStandardError
    ) {
        self.label = label
        self.write = write
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?,
        source: String, file: String, function: String, line: UInt
    ) {
        var merged = self.metadata
        if let provided = self.metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit { merged.merge(explicit) { _, new in new } }
        var fields = [
            ("time", Self.timestamp()), ("level", level.rawValue), ("logger", self.label),
            ("message", message.description),
        ]
        let reserved: Set = ["time", "level", "logger", "message"]
        var line = "{"
        for (index, field) in fields.enumerated() {
            if index > 0 { line += "," }
            line += Self.quoted(field.0) + ":" + Self.quoted(field.1)
        }
        fields.removeAll()
        for key in merged.keys.sorted() where !reserved.contains(key) {
            line += "," + Self.quoted(key) + ":" + Self.json(merged[key]!)
        }
        line += "}\n"
        self.write(line)
    }

    public static let writeToStandardError: @Sendable (String) -> Void = { line in
        var bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes {
                Foundation.write(2, $0.baseAddress! + offset, $0.count - offset)
            }
            if written < 0 { if errno == EINTR { continue } else { return } }
            offset += written
        }
        bytes.removeAll()
    }

    static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): return quoted(text)
        case .stringConvertible(let value): return quoted(value.description)
        case .array(let values): return "[" + values.map(json).joined(separator: ",") + "]"
        case .dictionary(let values):
            return "{" + values.keys.sorted().map { quoted($0) + ":" + json(values[$0]!) }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20 || c.value == 0x2028 || c.value == 0x2029:
                out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func timestamp() -> String {
        Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
