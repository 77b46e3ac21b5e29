import Foundation
import Timing

/// Runs `body` for every element with at most `limit` running at once, and returns each
/// element's result in input order. One element's failure does not stop the others.
func forEachConcurrently<Element: Sendable, Value: Sendable>(
    _ elements: [Element], limit: Int,
    _ body: @escaping @Sendable (Element) async throws -> Value
) async -> [Result<Value, any Error>] {
    var results = [Result<Value, any Error>?](repeating: nil, count: elements.count)
    await withTaskGroup(of: (Int, Result<Value, any Error>).self) { group in
        var next = 0
        func start() {
            guard next < elements.count else { return }
            let index = next
            let element = elements[index]
            next += 1
            group.addTask {
                do { return (index, .success(try await body(element))) } catch { return (index, .failure(error)) }
            }
        }
        for _ in 0..<max(1, limit) { start() }
        while let (index, result) = await group.next() {
            results[index] = result
            start()
        }
    }
    return results.map { $0! }
}

/// Polls `check` every `interval` until it returns a value or `deadline` passes; then
/// throws a timeout that names `what` and the last thing `check` reported.
func poll<Value: Sendable>(
    _ what: String, timeout: Duration, interval: Duration,
    _ check: @Sendable () async throws -> (Value?, String)
) async throws -> Value {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    var last = ""
    while true {
        let (value, status) = try await check()
        if let value { return value }
        last = status
        guard ContinuousClock.now < deadline else { break }
        try await Task.sleep(for: interval)
    }
    throw ProvisionError(
        .timeout,
        "gave up after \(Int(timeout.seconds)) s waiting for \(what)\(last.isEmpty ? "" : " (last seen: \(last))")"
    )
}

/// Single-quotes `value` for a POSIX shell.
func shellQuote(_ value: String) -> String {
    "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
