@testable import Queue
import Logging
import Synchronization
import Testing

/// The wake-up rules alone, without a connection.
@Suite("Job wake-ups")
struct JobWakeupsTests {
    final class Woken: Sendable {
        let counts = Mutex<[String: Int]>([:])
        func wake(_ name: String) -> @Sendable () -> Void { { self.counts.withLock { $0[name, default: 0] += 1 } } }
        var snapshot: [String: Int] { self.counts.withLock { $0 } }
    }

    @Test("a job wakes the longest-idle consumer of its kind; none idle wakes every one of the kind; a reconnect wakes all")
    func rules() async {
        let wakeups = JobWakeups(listeningTo: nil, logger: Logger(label: "test"))
        let woken = Woken()
        let a = wakeups.register(kinds: ["noop"], wake: woken.wake("a"))
        let b = wakeups.register(kinds: ["noop", "teardown"], wake: woken.wake("b"))
        let c = wakeups.register(kinds: ["provision"], wake: woken.wake("c"))
        for registration in [b, a, c] { wakeups.idle(registration) }

        wakeups.deliver(kind: "noop")
        #expect(woken.snapshot == ["b": 1], "b has been idle longest")
        wakeups.deliver(kind: "noop")
        #expect(woken.snapshot == ["b": 1, "a": 1], "b counts busy once woken; a is next")
        // Neither noop consumer is idle now: both are told, the provision one is not.
        wakeups.deliver(kind: "noop")
        #expect(woken.snapshot == ["b": 2, "a": 2])
        wakeups.idle(a)
        wakeups.busy(a)
        wakeups.deliver(kind: "teardown")
        #expect(woken.snapshot == ["b": 3, "a": 2], "only b runs teardown")
        wakeups.deliver(kind: "unknown")
        #expect(woken.snapshot == ["b": 3, "a": 2])
        wakeups.deliver(kind: nil)
        #expect(woken.snapshot == ["b": 4, "a": 3, "c": 1])
        await wakeups.unregister(c)
        wakeups.deliver(kind: "provision")
        #expect(woken.snapshot == ["b": 4, "a": 3, "c": 1], "an unregistered consumer is not woken")
    }
}
