/// Runs `body` and gives up on it when `limit` passes first: then `body` is cancelled and the
/// result is `nil`. This is the one race against `Task.sleep` in the code base.
///
/// The call returns once `body` has ended too (a task group awaits its children), so a body
/// that ignores cancellation delays the return; bodies that wait on a process or a socket
/// must end it when they are cancelled.
public func withTimeout<T: Sendable>(
    _ limit: Duration, _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    try await withThrowingTaskGroup(of: Outcome<T>.self) { group in
        group.addTask { .finished(try await body()) }
        group.addTask {
            try await Task.sleep(for: limit)
            return .timedOut
        }
        defer { group.cancelAll() }
        // Both tasks return or throw, so the group has a first result.
        switch try await group.next() {
        case .finished(let value): return value
        case .timedOut, nil: return nil
        }
    }
}

private enum Outcome<T: Sendable>: Sendable {
    case finished(T)
    case timedOut
}
