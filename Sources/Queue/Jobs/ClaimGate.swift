import Synchronization

/// At most `width` claim statements at once for the processors that share a ``JobQueue``.
///
/// Claims that run together walk the same head of `jobs_claim_idx` and skip each other's
/// locked rows (`SKIP LOCKED` still visits them, and each one's heap tuple): the more
/// processors in a process claim at once, the more of every claim is spent on rows another
/// claim holds. A few at a time keep the database busy without that; a claim is short
/// (about a millisecond for 100 jobs), so a processor's turn comes quickly. Separate
/// processes still claim side by side. Turns are taken in order of arrival.
final class ClaimGate: Sendable {
    private struct State {
        var running = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())
    /// Claims that may run at once.
    let width: Int

    init(width: Int) { self.width = max(1, width) }

    /// Runs `body` once fewer than `width` bodies of this gate are running.
    func withTurn<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await withCheckedContinuation { (turn: CheckedContinuation<Void, Never>) in
            let now = self.state.withLock { state -> Bool in
                if state.running < self.width {
                    state.running += 1
                    return true
                }
                state.waiting.append(turn)
                return false
            }
            if now { turn.resume() }
        }
        defer {
            let next = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                if state.waiting.isEmpty {
                    state.running -= 1
                    return nil
                }
                return state.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
