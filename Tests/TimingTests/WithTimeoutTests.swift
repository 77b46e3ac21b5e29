import Synchronization
import Testing
import Timing

@Suite("withTimeout, Duration in seconds", .timeLimit(.minutes(1)))
struct WithTimeoutTests {
    struct Refused: Error, Equatable {}

    @Test("a body that finishes in time gives its value")
    func inTime() async throws {
        let value = try await withTimeout(.seconds(30)) { 42 }
        #expect(value == 42)
    }

    @Test("past the limit: nil, the body is cancelled, and the call returns only once the body has ended")
    func pastTheLimit() async throws {
        let ended = Mutex<(cancelled: Bool, done: Bool)>((false, false))
        let started = ContinuousClock.now
        let value = try await withTimeout(.milliseconds(50)) {
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                ended.withLock { $0.cancelled = error is CancellationError }
            }
            // Clean-up that takes a moment after the cancellation: it is awaited.
            try? await Task.sleep(for: .milliseconds(1))
            ended.withLock { $0.done = true }
            return 1
        }
        #expect(value == nil)
        #expect(ended.withLock { $0.cancelled && $0.done })
        #expect(ContinuousClock.now - started < .seconds(30), "the sleeping body did not hold the call")
    }

    @Test("an error the body throws in time is thrown to the caller")
    func bodyError() async throws {
        await #expect(throws: Refused.self) {
            _ = try await withTimeout(.seconds(30)) { () async throws -> Int in throw Refused() }
        }
    }

    @Test("a body that returns nil is told apart from a timeout only by its type: T? of an optional")
    func optionalBody() async throws {
        let value: Int?? = try await withTimeout(.seconds(30)) { () -> Int? in nil }
        #expect(value == .some(nil))
    }

    @Test("Duration.seconds counts the fraction to the attosecond's scale")
    func seconds() {
        #expect(Duration.seconds(90).seconds == 90)
        #expect(Duration.milliseconds(1500).seconds == 1.5)
        #expect(abs(Duration.nanoseconds(1).seconds - 1e-9) < 1e-18)
        #expect(Duration.zero.seconds == 0)
    }
}
