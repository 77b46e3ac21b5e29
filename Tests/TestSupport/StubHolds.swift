import Foundation
import Synchronization

/// The stub installer's hold file, `STATE/hold` (scripts/fixtures/dcos-stub/README.md): while it
/// lists `PHASE TARGET` (TARGET a node's IP, a cluster's name or `*`), that step stops in its
/// middle on the matching nodes. Lines are added and removed one by one, keeping other tests'
/// lines; the file is replaced whole (renamed into place), so the stub never reads half of it.
package struct StubHolds: Sendable {
    package let file: URL

    package init(stubState: URL) {
        self.file = stubState.appendingPathComponent("hold")
    }

    private static let lock = Mutex(())

    package func add(_ phase: String, _ target: String) throws {
        try self.rewrite { $0 + ["\(phase) \(target)"] }
    }

    package func remove(_ phase: String, _ target: String) throws {
        try self.rewrite { $0.filter { $0 != "\(phase) \(target)" } }
    }

    private func rewrite(_ change: ([String]) -> [String]) throws {
        try Self.lock.withLock { _ in
            let text = (try? String(contentsOf: self.file, encoding: .utf8)) ?? ""
            let lines = text.split(separator: "\n").map(String.init)
            let temporary = self.file.appendingPathExtension("\(getpid()).\(UUID().uuidString.prefix(8))")
            try Data(change(lines).map { "\($0)\n" }.joined().utf8).write(to: temporary)
            guard rename(temporary.path, self.file.path) == 0 else {
                try? FileManager.default.removeItem(at: temporary)
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
        }
    }
}
