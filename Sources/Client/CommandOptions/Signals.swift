import Dispatch
import Foundation
import Synchronization

/// The signal ``untilSignalled(secondEndsProcess:_:)`` received last (0: none), for a child to
/// be given the same.
package let lastSignal = Atomic<Int32>(0)

/// The process was asked to stop (SIGINT or SIGTERM) while ``untilSignalled(secondEndsProcess:_:)`` ran.
package struct Signalled: Error {
    package var signal: Int32
}

/// SIGINT and SIGTERM for the whole process: one libdispatch source each, made at first use
/// and never cancelled (a source made again for a signal whose earlier source was cancelled can
/// miss it), passing each signal to the handler in place. With none in place the signal is
/// ignored.
private final class SignalMonitor: @unchecked Sendable {
    // @unchecked: `sources` is set once, in init, and only kept alive after that.
    static let shared = SignalMonitor()

    typealias Handler = @Sendable (Int32) -> Void
    private let handler = Mutex<Handler?>(nil)
    private let sources: [any DispatchSourceSignal]

    private init() {
        self.sources = [SIGINT, SIGTERM].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { SignalMonitor.shared.deliver(number) }
            source.resume()
            return source
        }
    }

    private func deliver(_ number: Int32) {
        if let handler = self.handler.withLock({ $0 }) { handler(number) }
    }

    /// Puts `handler` in place of the one before (nil: the signals are ignored).
    func handle(_ handler: Handler?) {
        self.handler.withLock { $0 = handler }
    }
}

/// Runs `body` until it finishes or SIGINT/SIGTERM arrives. On a signal `body` is cancelled
/// (and awaited) and ``Signalled`` is thrown, so the caller can clean up (release what it
/// asked for) before exiting with 128 + the signal's number, as a shell expects.
///
/// `secondEndsProcess`: after the first signal, the same signal again ends the process at once
/// (a quick clean-up, such as a release, may be skipped that way). Without it further signals are
/// ignored, for a caller whose clean-up must not be cut (``shieldedFromSignals(note:_:)``).
/// Signals that come after `body` returned are ignored unless the caller handles them.
package func untilSignalled<T: Sendable>(
    secondEndsProcess: Bool = true, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let (signals, received) = AsyncStream<Int32>.makeStream(bufferingPolicy: .bufferingNewest(1))
    let first = Atomic<Int32>(0)
    SignalMonitor.shared.handle { number in
        if first.compareExchange(expected: 0, desired: number, ordering: .relaxed).exchanged {
            lastSignal.store(number, ordering: .relaxed)
            received.yield(number)
        } else if secondEndsProcess && number == first.load(ordering: .relaxed) {
            // The same signal again: end the process as that signal would have.
            signal(number, SIG_DFL)
            kill(getpid(), number)
        }
    }
    defer { received.finish() }
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            for await number in signals { throw Signalled(signal: number) }
            return nil
        }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw CancellationError()
    }
}

/// Runs `body`, clean-up that must not be cut short (a canary's teardown), with SIGINT and
/// SIGTERM caught: each is passed to `note` and otherwise ignored, so a second Ctrl-C cannot leave
/// half of what was made. SIGKILL still ends the process. The two signals stay ignored after
/// it returns (the process is about to exit).
package func shieldedFromSignals<T>(
    note: @escaping @Sendable (Int32) -> Void, _ body: () async throws -> T
) async rethrows -> T {
    SignalMonitor.shared.handle(note)
    defer { SignalMonitor.shared.handle(nil) }
    return try await body()
}
