import Logging
import Synchronization
import Timing

/// Tells job processors that jobs arrived: one `LISTEN` connection for every processor that
/// shares this object, and one idle processor woken per job, not all of them.
///
/// A processor registers the kinds it runs and says when it turns idle (it has free slots
/// and its last claim came back short). A notification for a kind wakes the processor of
/// that kind that has been idle longest and counts it busy, so the next notification wakes
/// another one: with N idle processors a job costs one claim, not N, and pickup does not
/// grow with idle consumers. When none is idle, every processor of the kind is told; one
/// without a free slot only notes that work is waiting (no claim), so the job is taken as
/// soon as a slot frees. After the connection comes up (again) every processor is told.
/// A processor that stops claiming (graceful shutdown) says so and is not woken again.
///
/// The connection opens with the first registration and closes with the last. Share one
/// object among the processors of a process; a ``JobProcessor`` given none makes its own.
public final class JobWakeups: Sendable {
    public typealias Registration = Int

    private struct Consumer {
        var kinds: Set<String>
        var wake: @Sendable () -> Void
        /// Shutting down: claims nothing more, so it is never woken or counted idle again.
        var stopping = false
    }
    private struct State {
        var consumers: [Registration: Consumer] = [:]
        /// Idle registrations, the longest idle first.
        var idle: [Registration] = []
        var next: Registration = 0
        var listener: Task<Void, Never>?
    }

    private let settings: DatabaseSettings?
    private let logger: Logger
    private let state = Mutex(State())

    /// Wake-ups from `LISTEN` on the database `settings` names.
    public convenience init(settings: DatabaseSettings, logger: Logger) {
        self.init(listeningTo: settings, logger: logger)
    }

    /// `settings` nil: no connection; notifications come only through ``deliver(kind:)``.
    init(listeningTo settings: DatabaseSettings?, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// Registers a processor of `kinds`; `wake` must return at once (it only signals).
    public func register(kinds: Set<String>, wake: @escaping @Sendable () -> Void) -> Registration {
        self.state.withLock { state in
            let registration = state.next
            state.next += 1
            state.consumers[registration] = Consumer(kinds: kinds, wake: wake)
            if state.listener == nil, let settings = self.settings {
                let listener = JobNotificationListener(settings: settings, logger: self.logger) { [weak self] kind in
                    self?.deliver(kind: kind)
                }
                state.listener = Task { await listener.run() }
            }
            return registration
        }
    }

    /// Removes a registration; the last one closes the connection and returns once it is
    /// closed, so a processor that stopped leaves no connection behind. It waits at most
    /// `closeWait`: a connection attempt to an unreachable server does not end on
    /// cancellation, and a worker must still stop on SIGTERM.
    public func unregister(_ registration: Registration) async {
        let listener = self.state.withLock { state -> Task<Void, Never>? in
            state.consumers[registration] = nil
            state.idle.removeAll { $0 == registration }
            guard state.consumers.isEmpty else { return nil }
            defer { state.listener = nil }
            return state.listener
        }
        guard let listener else { return }
        listener.cancel()
        _ = try? await withTimeout(Self.closeWait) { await listener.value }
    }

    static let closeWait: Duration = .seconds(5)

    /// The processor has free slots and found no more jobs: the next notification may wake it.
    public func idle(_ registration: Registration) {
        self.state.withLock { state in
            guard let consumer = state.consumers[registration], !consumer.stopping,
                !state.idle.contains(registration)
            else { return }
            state.idle.append(registration)
        }
    }

    /// How many registered processors are idle now (free slots, last claim came back short).
    public var idleCount: Int { self.state.withLock { $0.idle.count } }

    /// The processor is claiming or has no free slot.
    public func busy(_ registration: Registration) {
        self.state.withLock { state in state.idle.removeAll { $0 == registration } }
    }

    /// The processor stopped claiming (graceful shutdown): a notification goes to the
    /// others, even if the processor says `idle` after this (its last claim may still be
    /// returning).
    public func stopping(_ registration: Registration) {
        self.state.withLock { state in
            state.consumers[registration]?.stopping = true
            state.idle.removeAll { $0 == registration }
        }
    }

    /// Wakes for a job of `kind`, or everyone (`nil`).
    func deliver(kind: String?) {
        let wakes = self.state.withLock { state -> [@Sendable () -> Void] in
            if let kind, let index = state.idle.firstIndex(where: { state.consumers[$0]?.kinds.contains(kind) == true })
            {
                let chosen = state.idle.remove(at: index)
                return [state.consumers[chosen]!.wake]
            }
            return state.consumers.values
                .filter { !$0.stopping && (kind.map($0.kinds.contains) ?? true) }
                .map(\.wake)
        }
        for wake in wakes { wake() }
    }
}
