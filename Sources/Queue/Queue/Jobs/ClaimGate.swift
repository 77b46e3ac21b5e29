import Synchronization

/// At most `width` claim statements at once for the processors that share a ``JobQueue``.
///
/// Claims that run together walk the same head of `jobs_claim_idx` and skip each other's
/// locked rows (`SKIP LOCKED` still visits them, and each one's heap tuple): the more
/// processors in a process claim at once, the more of every claim is spent on rows another
/// claim holds. A few at a time keep the database busy without that; a claim is short
/// (about a millisecond for 100 jobs), so a processor's turn comes quickly. Separate
/// processes still claim side by side. Turns are taken in order of arrival; a caller whose
/// task is cancelled while it waits leaves the line at once with `CancellationError`.
final class ClaimGate: Sendable {
    private struct Waiter {
        let id: UInt64
        let turn: CheckedContinuation<Void, any Error>
    }
    private struct State {
        var running = 0
        var nextID: UInt64 = 0
        var waiting: [Waiter] = []
    }
    private let state = Mutex(State())
    /// Claims that may run at once.
    let width: Int

    init(width: Int) { self.width = max(1, width) }

    /// Callers waiting for a turn (for tests).
    var waitingCount: Int { self.state.withLock { $0.waiting.count } }

    /// Runs `body` once fewer than `width` bodies of this gate are running.
    func withTurn<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await self.takeTurn()
        defer { self.passTurn() }
        return try await body()
    }

    private func takeTurn() async throws {
        let id = self.state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (turn: CheckedContinuation<Void, any Error>) in
                enum Now { case go, cancelled, wait }
                // The task's cancelled flag is set before its handler runs, and the handler
                // takes this lock: either the flag is seen here, or the handler finds the waiter.
                let now = self.state.withLock { state -> Now in
                    if Task.isCancelled { return .cancelled }
                    if state.running < self.width {
                        state.running += 1
                        return .go
                    }
                    state.waiting.append(Waiter(id: id, turn: turn))
                    return .wait
                }
                switch now {
                case .go: turn.resume()
                case .cancelled: turn.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let left = self.state.withLock { state -> Waiter? in
                guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiting.remove(at: index)
            }
            left?.turn.resume(throwing: CancellationError())
        }
    }

    /// Hands the turn to the first waiter, or frees it.
    private func passTurn() {
        let next = self.state.withLock { state -> Waiter? in
            if state.waiting.isEmpty {
                state.running -= 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.turn.resume()
    }
}
