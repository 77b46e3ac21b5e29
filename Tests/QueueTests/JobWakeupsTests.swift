import Logging
import Synchronization
import Testing

@testable import Queue

/// The wake-up rules alone, without a connection.
@Suite("Job wake-ups", .timeLimit(.minutes(3)))
struct JobWakeupsTests {
    final class Woken: Sendable {
        let counts = Mutex<[String: Int]>([:])
        func wake(_ name: String) -> @Sendable () -> Void { { self.counts.withLock { $0[name, default: 0] += 1 } } }
        var snapshot: [String: Int] { self.counts.withLock { $0 } }
    }

    @Test(
        "a job wakes the longest-idle consumer of its kind; none idle wakes all of the kind; a reconnect wakes all"
    )
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

    @Test("a stopping consumer is never woken again, even if its last claim then reports it idle")
    func stopping() {
        let wakeups = JobWakeups(listeningTo: nil, logger: Logger(label: "test"))
        let woken = Woken()
        let a = wakeups.register(kinds: ["noop"], wake: woken.wake("a"))
        let b = wakeups.register(kinds: ["noop"], wake: woken.wake("b"))
        wakeups.idle(a)
        wakeups.stopping(a)
        wakeups.idle(a)
        wakeups.idle(b)
        wakeups.deliver(kind: "noop")
        #expect(woken.snapshot == ["b": 1], "the idle one that is not stopping is woken")
        wakeups.deliver(kind: "noop")
        #expect(woken.snapshot == ["b": 2], "none idle: every consumer of the kind but the stopping one")
        wakeups.deliver(kind: nil)
        #expect(woken.snapshot == ["b": 3], "a reconnect does not wake the stopping one either")
    }
}

/// The claim gate alone: how many claims run at once, and that every one gets its turn.
@Suite("Claim gate", .timeLimit(.minutes(3)))
struct ClaimGateTests {
    final class Counts: Sendable {
        let value = Mutex((running: 0, most: 0, done: 0))
        func start() {
            self.value.withLock {
                $0.running += 1
                $0.most = max($0.most, $0.running)
            }
        }
        func end() {
            self.value.withLock {
                $0.running -= 1
                $0.done += 1
            }
        }
        var snapshot: (running: Int, most: Int, done: Int) { self.value.withLock { $0 } }
    }

    @Test("at most 3 bodies of a gate of width 3 run at once; 12 callers all get their turn; an error frees the turn")
    func width() async throws {
        let gate = ClaimGate(width: 3)
        let counts = Counts()
        struct Refused: Error {}
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<12 {
                group.addTask {
                    do {
                        try await gate.withTurn {
                            counts.start()
                            // Hold the turn across suspensions so the others pile up at the gate.
                            for _ in 0..<20 { await Task.yield() }
                            counts.end()
                            if index % 4 == 0 { throw Refused() }
                        }
                    } catch is Refused {}
                }
            }
            try await group.waitForAll()
        }
        let final = counts.snapshot
        #expect(final.done == 12)
        #expect(final.most <= 3, "\(final.most) bodies ran at once")
        #expect(final.most >= 2, "the gate let claims overlap: \(final.most) at once")
        #expect(final.running == 0)
    }

    @Test(
        "a caller cancelled while waiting exits at once with CancellationError; its body never runs; the turn passes on"
    )
    func cancelledWhileWaiting() async throws {
        let gate = ClaimGate(width: 1)
        let (release, releaseTurn) = AsyncStream<Void>.makeStream()
        let (entered, enter) = AsyncStream<Void>.makeStream()
        let ranCancelled = Mutex(false)
        let holder = Task {
            try await gate.withTurn {
                enter.yield()
                for await _ in release { break }
            }
        }
        for await _ in entered { break }
        let waiter = Task {
            try await gate.withTurn { ranCancelled.withLock { $0 = true } }
        }
        while gate.waitingCount < 1 { await Task.yield() }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(gate.waitingCount == 0, "the cancelled caller left the line")
        let next = Task { try await gate.withTurn { 42 } }
        while gate.waitingCount < 1 { await Task.yield() }
        releaseTurn.yield()
        try await holder.value
        #expect(try await next.value == 42, "the turn passed to the next caller, not the cancelled one")
        #expect(!ranCancelled.withLock { $0 })
        let already = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await gate.withTurn { 1 }
        }
        await #expect(throws: CancellationError.self) { try await already.value }
        #expect(try await gate.withTurn { 7 } == 7, "a free gate still gives turns")
    }
}
