import Testing

/// Awaits `condition` until it holds or `timeout` passes, asking every `poll`. When time runs
/// out it records an issue at the caller naming `what`, and returns `false`; a test decides
/// whether to go on (`#expect`) or stop (`try #require`).
///
/// The one way the tests wait for something to happen: a condition with a deadline, never a
/// bare sleep.
@discardableResult
package func eventually(
    _ what: String, timeout: Duration = .seconds(60), poll: Duration = .milliseconds(100),
    sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: poll)
    }
    if try await condition() { return true }
    Issue.record("timed out after \(timeout) waiting for: \(what)", sourceLocation: sourceLocation)
    return false
}
