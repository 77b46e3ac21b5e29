import Dispatch
import Foundation
import Synchronization

/// The signal ``untilSignalled(_:)`` received last (0: none), for a child to be given the same.
package let lastSignal = Atomic<Int32>(0)

/// The process was asked to stop (SIGINT or SIGTERM) while ``untilSignalled(_:)`` ran.
package struct Signalled: Error {
    package var signal: Int32
}

/// Runs `body` until it finishes or SIGINT/SIGTERM arrives. On a signal `body` is cancelled
/// (and awaited) and ``Signalled`` is thrown, so the caller can clean up (release what it
/// asked for) before exiting with 128 + the signal's number, as a shell expects.
package func untilSignalled<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let (signals, received) = AsyncStream<Int32>.makeStream(bufferingPolicy: .bufferingNewest(1))
    let sources = [SIGINT, SIGTERM].map { number -> any DispatchSourceSignal in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            // The first signal starts the clean-up; a second one ends the process at once.
            signal(number, SIG_DFL)
            lastSignal.store(number, ordering: .relaxed)
            received.yield(number)
        }
        source.resume()
        return source
    }
    defer {
        for source in sources { source.cancel() }
        received.finish()
    }
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
