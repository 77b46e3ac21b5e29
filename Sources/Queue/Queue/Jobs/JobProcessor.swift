import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Telemetry
import Timing

/// Claims jobs and runs them, as a swift-service-lifecycle `Service`.
///
/// - Wakes on `LISTEN/NOTIFY` (unless `pollOnly`) through ``JobWakeups``, which wakes one
///   idle processor per job, and polls every `pollInterval` as the floor.
/// - Claims in one statement up to as many jobs as it has free slots, in batches that
///   grow while claims come back full and shrink to what a claim found.
/// - Heartbeats each running job; when the lease is lost the handler is cancelled and its
///   result discarded, when a cancel is requested the handler is cancelled and the job
///   ends `cancelled`.
/// - On graceful shutdown it stops claiming at once, lets running jobs finish within
///   `shutdownGracePeriod`, then cancels them and hands them back without burning an attempt.
public final class JobProcessor: Service, Sendable {
    public typealias Handler = @Sendable (ClaimedJob, JobContext) async throws -> Void

    public struct Configuration: Sendable {
        /// Names this worker in `lease_owner`.
        public var workerID: String
        /// The kinds this processor claims; each needs a handler.
        public var kinds: [JobKind]
        /// How many jobs run at once.
        public var concurrency: Int = 4
        public var pollInterval: Duration = .seconds(1)
        public var heartbeatInterval: Duration = .seconds(10)
        public var shutdownGracePeriod: Duration = .seconds(30)
        /// Poll only, no `LISTEN` (for transaction-mode connection poolers).
        public var pollOnly: Bool = false

        public init(
            workerID: String, kinds: [JobKind], concurrency: Int = 4, pollInterval: Duration = .seconds(1),
            heartbeatInterval: Duration = .seconds(10), shutdownGracePeriod: Duration = .seconds(30),
            pollOnly: Bool = false
        ) {
            self.workerID = workerID
            self.kinds = kinds
            self.concurrency = max(1, concurrency)
            self.pollInterval = pollInterval
            self.heartbeatInterval = heartbeatInterval
            self.shutdownGracePeriod = shutdownGracePeriod
            self.pollOnly = pollOnly
        }
    }

    public let queue: JobQueue
    public let settings: DatabaseSettings
    public let configuration: Configuration
    let logger: Logger
    let handler: Handler
    private let wakeups: JobWakeups?

    private struct State {
        /// Claimed jobs whose outcome is not recorded yet (shutdown waits for these).
        var inFlight = 0
        /// Claimed jobs whose handler is still running (these take the `concurrency` slots).
        /// A job leaves this count when its handler returns, before its outcome is written,
        /// so the next claim overlaps the previous jobs' completion statement.
        var running = 0
        /// Whether runnable jobs may be waiting that no claim has taken yet: the last claim
        /// filled every free slot, one is in flight, or a wake-up found no free slot. A
        /// handler that returns wakes the claim loop only then; otherwise new jobs announce
        /// themselves by NOTIFY (or the next poll), and an idle queue costs no empty claims.
        var moreMayBeWaiting = true
        var stopping = false
        /// Claim statements sent, for measurements.
        var claims = 0
        /// How many jobs the next claim asks for (at most the free slots): doubled after a
        /// claim that came back full; after one that came back short, twice what it found
        /// and at least ``JobProcessor/smallestClaim``. A lone job is taken by one claim
        /// that comes back short (no second, empty claim to learn that nothing is left),
        /// jobs that arrive together are not all taken by the first processor woken, and a
        /// backlog is taken in batches that double up to `concurrency`.
        var claimSize = JobProcessor.smallestClaim
    }
    private let state = Mutex(State())

    /// `wakeups`: shared by the processors of one process, so they hold one `LISTEN`
    /// connection and a job wakes one of them; nil makes one for this processor.
    public init(
        queue: JobQueue, settings: DatabaseSettings, configuration: Configuration,
        wakeups: JobWakeups? = nil, logger: Logger, handler: @escaping Handler
    ) {
        self.wakeups = wakeups
        self.queue = queue
        self.settings = settings
        self.configuration = configuration
        self.logger = logger
        self.handler = handler
    }

    /// Jobs running right now.
    public var inFlight: Int { self.state.withLock { $0.inFlight } }

    /// Graceful shutdown has reached this processor: it claims nothing more.
    public var isStopping: Bool { self.state.withLock { $0.stopping } }

    /// Claim statements this processor has sent (the empty ones included).
    public var claims: Int { self.state.withLock { $0.claims } }

    /// The smallest claim: large enough that a lone job's claim comes back short.
    static let smallestClaim = 4

    private struct GracePeriodOver: Error {}

    public func run() async throws {
        let (claimRequests, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let (drained, drain) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let wakeUp: @Sendable () -> Void = { wake.yield() }

        let notices: Notices? =
            self.configuration.pollOnly
            ? nil
            : {
                let wakeups = self.wakeups ?? JobWakeups(settings: self.settings, logger: self.logger)
                return Notices(
                    wakeups: wakeups,
                    registration: wakeups.register(kinds: Set(self.configuration.kinds.map(\.rawValue)), wake: wakeUp))
            }()

        await withDiscardingTaskGroup { helpers in
            helpers.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.configuration.pollInterval)
                    wakeUp()
                }
            }

            do {
                try await withThrowingDiscardingTaskGroup { jobs in
                    await withGracefulShutdownHandler {
                        wakeUp()
                        for await _ in claimRequests {
                            await self.claimAndStart(into: &jobs, wake: wakeUp, drain: drain, notices: notices)
                        }
                    } onGracefulShutdown: {
                        self.state.withLock { $0.stopping = true }
                        notices?.stopping()
                        wake.finish()
                    }
                    // Stopped claiming. Give running jobs the grace period, then cancel
                    // them; cancelled jobs hand themselves back.
                    if self.inFlight > 0 {
                        self.logger.info(
                            "waiting for running jobs before shutdown",
                            metadata: [
                                "jobs": "\(self.inFlight)",
                                "grace_seconds": "\(self.configuration.shutdownGracePeriod.seconds)",
                            ])
                        let grace = self.configuration.shutdownGracePeriod
                        jobs.addTask {
                            let drainedInTime = try await withTimeout(grace) {
                                for await _ in drained { break }
                            }
                            if drainedInTime == nil { throw GracePeriodOver() }
                        }
                    }
                }
            } catch is GracePeriodOver {
                self.logger.warning("grace period over: running jobs were handed back")
            } catch {
                self.logger.error("job processor stopped", metadata: ["error": "\(String(reflecting: error))"])
            }
            helpers.cancelAll()
        }
        // The last processor of a `JobWakeups` closes its LISTEN connection before returning.
        await notices?.unregister()
    }

    /// This processor's registration with its ``JobWakeups``.
    private struct Notices: Sendable {
        let wakeups: JobWakeups
        let registration: JobWakeups.Registration
        func idle() { self.wakeups.idle(self.registration) }
        func busy() { self.wakeups.busy(self.registration) }
        func stopping() { self.wakeups.stopping(self.registration) }
        func unregister() async { await self.wakeups.unregister(self.registration) }
    }

    private func claimAndStart(
        into jobs: inout ThrowingDiscardingTaskGroup<any Error>,
        wake: @escaping @Sendable () -> Void,
        drain: AsyncStream<Void>.Continuation, notices: Notices?
    ) async {
        notices?.busy()
        // Let handlers that are about to return do so first, so one claim fills every
        // slot they free instead of one claim per slot.
        await Task.yield()
        // Deciding to claim and noting that work may be waiting happen under one lock with
        // a handler's return (below), so a wake-up that finds every slot busy is never lost.
        let asked = self.state.withLock { state -> Int in
            guard !state.stopping else { return 0 }
            state.moreMayBeWaiting = true
            // A slot frees when its handler returns, before the outcome is written; but jobs
            // whose outcome is not written yet count too, up to a second `concurrency`. Without
            // that bound, a process that claims faster than its completions are written piles
            // up results until they wait longer than the lease and are lost.
            let free = min(
                self.configuration.concurrency - state.running,
                2 * self.configuration.concurrency - state.inFlight)
            if free > 0 { state.claims += 1 }
            return min(free, state.claimSize)
        }
        guard asked > 0 else { return }
        let claimed: [ClaimedJob]
        do {
            claimed = try await self.queue.claims.withTurn {
                try await self.queue.claim(
                    kinds: self.configuration.kinds, limit: asked,
                    owner: self.configuration.workerID)
            }
        } catch is CancellationError {
            return
        } catch {
            self.logger.warning(
                "claim failed; will retry on the next poll",
                metadata: ["error": "\(String(reflecting: error))"])
            return
        }
        let idle = self.state.withLock { state -> Bool in
            if claimed.count == asked {
                state.claimSize = min(max(state.claimSize, asked) * 2, self.configuration.concurrency)
            } else {
                // Fewer than asked: the queue had no more runnable jobs of these kinds.
                state.moreMayBeWaiting = false
                state.claimSize = max(Self.smallestClaim, 2 * claimed.count)
            }
            state.inFlight += claimed.count
            state.running += claimed.count
            return claimed.count < asked && !state.stopping
        }
        // Slots left and nothing more to claim: the next job announced may wake this one.
        if idle { notices?.idle() }
        guard !claimed.isEmpty else { return }
        for job in claimed {
            jobs.addTask {
                await self.execute(
                    job,
                    handlerReturned: {
                        let claimAgain = self.state.withLock { state -> Bool in
                            state.running -= 1
                            return state.moreMayBeWaiting
                        }
                        if claimAgain { wake() }
                    })
                let (left, stopping, claimAgain) = self.state.withLock { state -> (Int, Bool, Bool) in
                    state.inFlight -= 1
                    return (state.inFlight, state.stopping, state.moreMayBeWaiting)
                }
                if stopping && left == 0 { drain.yield() }
                // A claim may have been held back by results not yet written (above).
                if claimAgain && !stopping { wake() }
            }
        }
        // A full batch means more may be waiting.
        if claimed.count == asked { wake() }
    }

    /// Runs one claimed job to an outcome: succeeded, retried or failed, cancelled,
    /// handed back (shutdown), or dropped (lease lost). `handlerReturned` is called once,
    /// when the handler (and its heartbeat) stopped and before the outcome is written.
    func execute(_ job: ClaimedJob, handlerReturned: @Sendable () -> Void = {}) async {
        var logger = self.logger
        logger[metadataKey: MetadataKey.jobID] = "\(job.id)"
        logger[metadataKey: MetadataKey.jobKind] = "\(job.kind)"
        logger[metadataKey: MetadataKey.jobAttempt] = "\(job.attempt)"
        let context = JobContext(job: job, logger: logger, queue: self.queue)
        let started = ContinuousClock.now
        let kind = [("kind", job.kind.rawValue)]
        FlotillaMetric.record(FlotillaMetric.claimToStart, kind, seconds: job.waitedSeconds)
        func finished(_ outcome: String) {
            FlotillaMetric.increment(FlotillaMetric.jobsFinished, kind + [("outcome", outcome)])
        }

        let outcome: Result<Void, any Error> = await withTaskGroup(of: Result<Void, any Error>?.self) { group in
            group.addTask {
                do {
                    try await LogContext.with([MetadataKey.jobID: "\(job.id)", MetadataKey.jobKind: "\(job.kind)"]) {
                        try await self.handler(job, context)
                    }
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                await self.heartbeat(context)
                return nil
            }
            // The first to finish decides: the handler's result, or the heartbeat giving up.
            var result: Result<Void, any Error> = .failure(CancellationError())
            while let next = await group.next() {
                if let next {
                    result = next
                    break
                }
                if context.shouldStop { group.cancelAll() }
            }
            group.cancelAll()
            // Wait for the handler to wind down when the heartbeat stopped it.
            while let next = await group.next() { if let next { result = next } }
            return result
        }

        // Database writes below must happen even when this task was cancelled by a
        // shutdown, so they run in a task that does not inherit the cancellation.
        let shuttingDown = Task.isCancelled
        let stop = context.stop.withLock { $0 }
        handlerReturned()
        await Task {
            do {
                switch (stop, outcome) {
                case (.leaseLost, _):
                    logger.warning("lease lost: the job's result was discarded; another worker owns it now")
                    finished("lease_lost")
                case (.cancelRequested, _):
                    try await self.queue.acknowledgeCancel(job)
                    logger.info("job cancelled on request")
                    finished("cancelled")
                case (nil, .success):
                    if try await self.queue.completions.complete(job, queue: self.queue) {
                        finished("completed")
                        logger.debug(
                            "job succeeded", metadata: ["seconds": "\((ContinuousClock.now - started).seconds)"])
                    } else {
                        logger.warning(
                            "lease lost before the job's success could be recorded; another worker will run it again")
                    }
                case (nil, .failure(let error as JobSnooze)):
                    try await self.queue.snooze(job, for: error.delay)
                    logger.debug("job snoozed", metadata: ["reason": "\(error.reason)"])
                case (nil, .failure) where shuttingDown:
                    try await self.queue.release(job)
                    logger.info("job handed back at shutdown")
                    finished("handed_back")
                case (nil, .failure(let error)):
                    let permanent = error is PermanentJobFailure
                    let message = (error as? QueueError)?.message ?? DatabaseErrorDescription.describe(error)
                    let state = try await self.queue.fail(job, error: message, retryable: !permanent)
                    logger.warning("job failed", metadata: ["error": "\(error)", "now": "\(state)"])
                    finished(state == .queued ? "retried" : state.rawValue)
                    if state == .queued { FlotillaMetric.increment(FlotillaMetric.jobRetries, kind) }
                }
            } catch {
                logger.warning(
                    "could not record the job's outcome",
                    metadata: ["error": "\(String(reflecting: error))"])
            }
        }.value
    }

    /// Renews the lease every `heartbeatInterval` until cancelled, or until the lease is
    /// lost or a cancel is requested (recorded in the context). A heartbeat that fails for
    /// another reason is retried; once the lease's own expiry has passed without a
    /// renewal, the job is treated as lost.
    private func heartbeat(_ context: JobContext) async {
        var expires = context.job.leaseExpiresAt
        while !Task.isCancelled {
            try? await Task.sleep(for: self.configuration.heartbeatInterval)
            if Task.isCancelled { return }
            do {
                let beat = try await self.queue.heartbeat(context.job)
                expires = beat.leaseExpiresAt
                if beat.cancelRequested {
                    context.stop.withLock { $0 = $0 ?? .cancelRequested }
                    return
                }
            } catch let error as QueueError where error.code == .leaseLost {
                context.stop.withLock { $0 = .leaseLost }
                return
            } catch {
                context.logger.warning("heartbeat failed", metadata: ["error": "\(String(reflecting: error))"])
                if Date() >= expires {
                    context.stop.withLock { $0 = .leaseLost }
                    return
                }
            }
        }
    }
}
