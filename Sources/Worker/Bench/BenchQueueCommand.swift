import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Logging
import PostgresNIO
import Queue
import Synchronization
import Timing

@main
struct BenchQueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "QueueBench",
        abstract: "Measure the job queue on this database: throughput, pickup and claim latency, crash recovery.",
        discussion: """
            Uses `noop` jobs in the database it is pointed at (use a scratch database: it adds
            and completes jobs). Consumers run in this process, each a job processor with its
            own claims and heartbeats; they share one LISTEN connection and one completion
            group commit, as the processors of one `worker run` would.

              QueueBench --mode throughput --consumers 8 --jobs 20000
              QueueBench --mode pickup --consumers 4 --jobs 1000 --rate 200
              QueueBench --mode continuous --consumers 8 --jobs 100000 --rate 20000
              QueueBench --mode claim-latency --jobs 2000
              QueueBench --mode hold --lease-seconds 4 --heartbeat-seconds 1
              QueueBench --mode recover --rescue-seconds 0.25
              QueueBench --mode handout --consumers 8 --jobs 400

            continuous enqueues --jobs jobs at --rate per second (a batch every 10 ms, from one
            producer in this process) while the consumers drain them; it reports the jobs/s
            from the first enqueue to the last handler start, and enqueue → start latency.

            claim-latency enqueues one job at a time and times the claim statement (then
            completes the job), --jobs times. hold enqueues one job {"hold": true}, claims it,
            prints "holding <id>" on stdout and heartbeats until killed. recover runs one
            consumer plus the queue maintenance (rescuer) and prints, as JSON, when it claimed
            a job: kill the holder, and the difference is the crash-recovery time.

            handout fills a warm pool with --jobs ready clusters (rows only: the hand-out is what
            is measured, not the build), then --consumers claimers take them as `client request`
            does (api_request, then the cluster, its nodes and its key), each one at a time, and
            times each claim; it checks that no cluster was given twice.
            """
    )

    enum Mode: String, ExpressibleByArgument {
        case throughput, pickup, continuous
        case claimLatency = "claim-latency"
        case hold, recover, handout
    }

    @Option(
        help: """
            throughput: drain preloaded jobs; pickup: enqueue one job at a time at --rate and time enqueue → handler \
            start, then time a bare SELECT 1 at the same rate (the round-trip floor); continuous: enqueue at --rate \
            while consumers drain; claim-latency: time one-job claims; hold / recover: crash recovery (see below).
            """
    )
    var mode: Mode = .throughput

    @Option(help: "Number of consumers.")
    var consumers: Int = 8

    @Option(help: "Jobs each consumer runs at once: its largest claim (claims grow while they come back full).")
    var batch: Int = 10

    @Option(
        help: """
            Commit of claims and heartbeats: async (synchronous_commit = off, as `worker run` does; a crash costs \
            a re-claim) or durable.
            """
    )
    var claimCommit: ClaimCommit = .async

    enum ClaimCommit: String, ExpressibleByArgument { case async, durable }

    @Option(help: "Number of jobs.")
    var jobs: Int = 2000

    @Option(help: "Jobs enqueued per second in pickup and continuous modes.")
    var rate: Double = 200

    @Option(help: "hold: the lease each heartbeat renews, in seconds.")
    var leaseSeconds: Double = 4

    @Option(help: "hold: seconds between heartbeats.")
    var heartbeatSeconds: Double = 1

    @Option(help: "recover: seconds between rescue passes of the queue maintenance.")
    var rescueSeconds: Double = 0.25

    @Option(help: "recover: seconds between polls (NOTIFY wakes the consumer sooner).")
    var pollSeconds: Double = 0.5

    @Option(help: "hold / recover: give up after this many seconds.")
    var timeoutSeconds: Double = 120

    @Flag(help: "Print one JSON object instead of a line of text.")
    var json = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard self.consumers >= 1, self.batch >= 1, self.jobs >= 1, self.rate > 0 else {
            throw ValidationError("--consumers, --batch, --jobs and --rate must be positive")
        }
        guard self.heartbeatSeconds > 0, self.leaseSeconds >= 2 * self.heartbeatSeconds else {
            throw ValidationError(
                "--lease-seconds must be at least twice --heartbeat-seconds (a lease must survive one missed heartbeat)"
            )
        }
        guard self.rescueSeconds > 0, self.pollSeconds > 0, self.timeoutSeconds > 0 else {
            throw ValidationError("--rescue-seconds, --poll-seconds and --timeout-seconds must be positive")
        }
    }

    func run() async throws {
        let logger = self.common.makeLogger()
        let settings = try DatabaseSettings.fromEnvironment()
        let connections = self.consumers * 2 + 4
        let leaseClient: PostgresClient? =
            self.claimCommit == .async
            ? PostgresClient(
                configuration: try settings.leaseClientConfiguration(maximumConnections: connections),
                backgroundLogger: logger)
            : nil
        let result = try await settings.withClient(maximumConnections: connections, logger: logger) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                if let leaseClient { group.addTask { await leaseClient.run() } }
                defer { group.cancelAll() }
                return try await self.measure(
                    client: client, leaseClient: leaseClient, settings: settings, logger: logger)
            }
        }
        if self.json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(result.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
    }

    private func measure(
        client: PostgresClient, leaseClient: PostgresClient?, settings: DatabaseSettings,
        logger: Logger
    ) async throws -> [String: Double] {
        // Only the holder's lease matters to the crash-recovery measurement; every other
        // mode runs with the default lease, as `worker run` does.
        let lease: Duration = self.mode == .hold ? .seconds(self.leaseSeconds) : JobQueue.Configuration().leaseDuration
        let queue = JobQueue(
            client: client, leaseClient: leaseClient, configuration: .init(leaseDuration: lease), logger: logger)
        try await Migrator.checkSchema(client: client, logger: logger)
        switch self.mode {
        case .throughput: return try await self.throughput(queue, settings: settings, client: client, logger: logger)
        case .pickup: return try await self.pickup(queue, client: client, settings: settings, logger: logger)
        case .continuous: return try await self.continuous(queue, client: client, settings: settings, logger: logger)
        case .claimLatency: return try await self.claimLatency(queue, client: client, logger: logger)
        case .hold: return try await self.hold(queue, settings: settings, logger: logger)
        case .recover: return try await self.recover(queue, settings: settings, logger: logger)
        case .handout: return try await self.handout(client: client, logger: logger)
        }
    }

    private func consumersRunning<T: Sendable>(
        _ queue: JobQueue, settings: DatabaseSettings, logger: Logger,
        handler: @escaping JobProcessor.Handler,
        body: @Sendable () async throws -> T
    ) async throws -> T {
        // One LISTEN connection for the process, as `worker run` has; a job wakes one idle consumer.
        let wakeups = JobWakeups(settings: settings, logger: logger)
        let processors = (0..<self.consumers).map { index in
            JobProcessor(
                queue: queue, settings: settings,
                configuration: .init(
                    workerID: "bench-\(index)", kinds: [.noop], concurrency: self.batch,
                    pollInterval: .milliseconds(500)),
                wakeups: wakeups, logger: logger, handler: handler)
        }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            for processor in processors {
                group.addTask {
                    try await processor.run()
                    return nil
                }
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    private func throughput(_ queue: JobQueue, settings: DatabaseSettings, client: PostgresClient, logger: Logger)
        async throws -> [String: Double]
    {
        var remaining = self.jobs
        while remaining > 0 {
            let chunk = min(remaining, 5000)
            try await queue.enqueue(batch: Array(repeating: NewJob(kind: .noop), count: chunk))
            remaining -= chunk
        }
        // Statistics for the backlog, as autovacuum gathers them within a minute on a live
        // table (the jobs table analyzes at 2 % change). Without any, a never-analyzed
        // table gets a claim plan that sorts the whole backlog on every claim.
        try await client.query("ANALYZE jobs", logger: logger)
        // Open the connections the consumers will use before the clock starts, as pgqueuer's
        // consumers connect before its drain is timed.
        try await Self.openConnections(queue.client, count: self.consumers + 2, logger: logger)
        if queue.leaseClient !== queue.client {
            try await Self.openConnections(queue.leaseClient, count: self.consumers, logger: logger)
        }
        let done = Mutex(0)
        let total = self.jobs
        let (finished, signal) = AsyncStream<Void>.makeStream()
        let start = ContinuousClock.now
        try await self.consumersRunning(
            queue, settings: settings, logger: logger,
            handler: { _, _ in
                let count = done.withLock {
                    $0 += 1
                    return $0
                }
                if count == total { signal.yield() }
            },
            body: {
                for await _ in finished { break }
                // The last handler returned; wait for its completion to be written.
                while try await queue.stats().countByState[.running, default: 0] > 0 {
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
        )
        let seconds = (ContinuousClock.now - start).seconds
        return [
            "consumers": Double(self.consumers), "jobs": Double(total), "seconds": seconds,
            "jobs_per_second": Double(total) / seconds,
        ]
    }

    private func pickup(_ queue: JobQueue, client: PostgresClient, settings: DatabaseSettings, logger: Logger)
        async throws -> [String: Double]
    {
        let latencies = Mutex<[Double]>([])
        let enqueues = Mutex<[Double]>([])
        let total = self.jobs
        let (finished, signal) = AsyncStream<Void>.makeStream()
        // When each job's notification reaches a LISTEN connection of this process (one of
        // the bench's own, beside the consumers'): the earliest a woken consumer can learn of
        // the job. Notifications come in commit order, one per enqueue.
        let sentTimes = Mutex<[Double]>([])
        let notifiedTimes = Mutex<[Double]>([])
        let (listening, listenerUp) = AsyncStream<Void>.makeStream()
        let listener = Task {
            let connection = try await PostgresConnection.connect(
                configuration: try settings.connectionConfiguration(), id: 1, logger: logger)
            do {
                try await connection.listen(on: JobQueue.notificationChannel) { notifications in
                    listenerUp.yield()
                    for try await _ in notifications {
                        let now = Date().timeIntervalSince1970
                        notifiedTimes.withLock { $0.append(now) }
                    }
                }
            } catch {
                try? await connection.close()
                throw error
            }
            try? await connection.close()
        }
        defer { listener.cancel() }
        for await _ in listening { break }
        var trips = try await self.consumersRunning(
            queue, settings: settings, logger: logger,
            handler: { job, _ in
                let sent = try job.decodePayload([String: Double].self)["sent"] ?? 0
                let latency = Date().timeIntervalSince1970 - sent
                let count = latencies.withLock {
                    $0.append(latency)
                    return $0.count
                }
                if count == total { signal.yield() }
            },
            body: {
                // Let every consumer's LISTEN connection come up before measuring.
                try await Task.sleep(for: .seconds(1))
                let interval = Duration.seconds(1 / self.rate)
                var next = ContinuousClock.now
                for _ in 0..<total {
                    next = next.advanced(by: interval)
                    let sent = Date().timeIntervalSince1970
                    sentTimes.withLock { $0.append(sent) }
                    try await queue.enqueue(NewJob(kind: .noop, payload: #"{"sent": \#(sent)}"#))
                    let returned = Date().timeIntervalSince1970 - sent
                    enqueues.withLock { $0.append(returned) }
                    try await Task.sleep(until: next)
                }
                for await _ in finished { break }
                // The floor under every pickup here: one bare round trip (`SELECT 1`) at the same
                // rate, with the same idle gaps, while the consumers wait. It is one of the round
                // trips a pickup is made of.
                var trips: [Double] = []
                next = ContinuousClock.now
                for _ in 0..<total {
                    next = next.advanced(by: interval)
                    let sent = ContinuousClock.now
                    _ = try await client.query("SELECT 1", logger: logger).collect()
                    trips.append((ContinuousClock.now - sent).seconds)
                    try await Task.sleep(until: next)
                }
                return trips
            }
        )
        trips.sort()
        listener.cancel()
        _ = try? await listener.value
        let sent = sentTimes.withLock { $0 }
        let arrivals = notifiedTimes.withLock { $0 }
        guard arrivals.count == sent.count else {
            throw QueueError(
                .database,
                "expected \(sent.count) notifications on the bench's own LISTEN connection, got \(arrivals.count)")
        }
        let notified = zip(arrivals, sent).map { $0 - $1 }.sorted()
        let sorted = latencies.withLock { $0 }.sorted()
        let enqueued = enqueues.withLock { $0 }.sorted()
        // enqueue: the INSERT's round trip and durable commit, the first part of every pickup.
        // notified: from the same start until the job's notification reached this process;
        // a consumer can start the job no sooner (it learns of the job from it).
        return [
            "consumers": Double(self.consumers), "jobs": Double(total), "rate": self.rate,
            "p50_ms": Self.percentile(sorted, 0.50) * 1000, "p95_ms": Self.percentile(sorted, 0.95) * 1000,
            "p99_ms": Self.percentile(sorted, 0.99) * 1000, "max_ms": (sorted.last ?? 0) * 1000,
            "enqueue_p50_ms": Self.percentile(enqueued, 0.50) * 1000,
            "enqueue_p99_ms": Self.percentile(enqueued, 0.99) * 1000,
            "round_trip_p50_ms": Self.percentile(trips, 0.50) * 1000,
            "round_trip_p99_ms": Self.percentile(trips, 0.99) * 1000,
            "notified_p50_ms": Self.percentile(notified, 0.50) * 1000,
            "notified_p99_ms": Self.percentile(notified, 0.99) * 1000,
        ]
    }

    /// Producer and consumers at once: a batch of `rate / 100` jobs every 10 ms, each
    /// stamped with its enqueue time, while the consumers drain them.
    private func continuous(_ queue: JobQueue, client: PostgresClient, settings: DatabaseSettings, logger: Logger)
        async throws -> [String: Double]
    {
        let latencies = Mutex<[Double]>([])
        let handlerEnds = Mutex<[(Int64, Double)]>([])
        let total = self.jobs
        let (finished, signal) = AsyncStream<Void>.makeStream()
        let lastStart = Mutex(ContinuousClock.now)
        let tick = Duration.milliseconds(10)
        let perTick = max(1, Int((self.rate / 100).rounded()))
        let startedAt = Mutex(ContinuousClock.now)
        try await self.consumersRunning(
            queue, settings: settings, logger: logger,
            handler: { job, _ in
                let sent = try job.decodePayload([String: Double].self)["sent"] ?? 0
                let latency = Date().timeIntervalSince1970 - sent
                let count = latencies.withLock {
                    $0.append(latency)
                    return $0.count
                }
                if count == total {
                    lastStart.withLock { $0 = ContinuousClock.now }
                    signal.yield()
                }
                handlerEnds.withLock { $0.append((job.id, Date().timeIntervalSince1970)) }
            },
            body: {
                // Let the LISTEN connection come up before measuring.
                try await Task.sleep(for: .seconds(1))
                let started = ContinuousClock.now
                startedAt.withLock { $0 = started }
                var next = started
                var sent = 0
                while sent < total {
                    let count = min(perTick, total - sent)
                    let payload = #"{"sent": \#(Date().timeIntervalSince1970)}"#
                    try await queue.enqueue(
                        batch: Array(repeating: NewJob(kind: .noop, payload: payload), count: count))
                    sent += count
                    next = next.advanced(by: tick)
                    if next > ContinuousClock.now { try await Task.sleep(until: next) }
                }
                for await _ in finished { break }
            }
        )
        let enqueueSeconds = Double(total) / self.rate
        let seconds = (lastStart.withLock { $0 } - startedAt.withLock { $0 }).seconds
        let sorted = latencies.withLock { $0 }.sorted()
        let waits = try await Self.completionWaits(client, handlerEnds: handlerEnds.withLock { $0 }, logger: logger)
        return [
            "consumers": Double(self.consumers), "jobs": Double(total), "rate": self.rate,
            "offered_seconds": enqueueSeconds, "seconds": seconds, "jobs_per_second": Double(total) / seconds,
            "p50_ms": Self.percentile(sorted, 0.50) * 1000, "p95_ms": Self.percentile(sorted, 0.95) * 1000,
            "p99_ms": Self.percentile(sorted, 0.99) * 1000, "max_ms": (sorted.last ?? 0) * 1000,
            "completion_wait_p50_ms": Self.percentile(waits, 0.50) * 1000,
            "completion_wait_p99_ms": Self.percentile(waits, 0.99) * 1000,
            "completion_wait_max_ms": (waits.last ?? 0) * 1000,
        ]
    }

    /// How long each job's result waited for the group commit: from its handler's return to
    /// the start of the completion statement that wrote it (`finished_at`, the statement's
    /// `now()`; same clock, same machine). The statement's own commit comes on top. Waits
    /// until every job is written (completions outlive the consumers that asked for them).
    private static func completionWaits(
        _ client: PostgresClient, handlerEnds: [(Int64, Double)],
        logger: Logger
    ) async throws -> [Double] {
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while try await client.query("SELECT count(*) FROM jobs WHERE state = 'succeeded'", logger: logger)
            .decode(Int64.self).first(where: { _ in true }) ?? 0 < Int64(handlerEnds.count)
        {
            guard ContinuousClock.now < deadline else {
                throw QueueError(.database, "completions not all written after 30 s")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let rows = try await client.query(
            "SELECT id, extract(epoch FROM finished_at)::float8 FROM jobs WHERE state = 'succeeded'", logger: logger)
        var finished: [Int64: Double] = [:]
        for try await (id, at) in rows.decode((Int64, Double).self) { finished[id] = at }
        return handlerEnds.compactMap { id, end in finished[id].map { max(0, $0 - end) } }.sorted()
    }

    /// Warm-pool hand-out: request → ready cluster, nodes and key, as `client request` does.
    private func handout(client: PostgresClient, logger: Logger) async throws -> [String: Double] {
        // One request serves as the pool's spec too: pool_set and pool_spec_hash drop its lifetime.
        let spec = String(
            decoding: try JSONEncoder().encode(
                ClusterRequest(
                    masters: 1, agents: 0, publicAgents: 0, installerURL: "http://127.0.0.1/dcos_generate_config.sh",
                    lifetimeSeconds: 7200)), as: UTF8.self)
        // Quotas would stop one login claiming this many; the pool is rows, built ready.
        for statement: PostgresQuery in [
            "UPDATE policy SET max_clusters = 1000000, max_total_nodes = 1000000 WHERE owner = '*'",
            "SELECT pool_delete(name) FROM pools WHERE name = 'bench'",
            "SELECT pool_set('bench', \(spec)::jsonb, NULL, 0, 50, NULL, NULL)",
            """
            INSERT INTO clusters (id, owner, state, masters, agents, public_agents, instance_type, request, lifetime,
                                  pool, spec_hash, ready_at, expires_at, healthy_until, ssh_user, ssh_port)
            SELECT 'c-' || substr(md5(gen_random_uuid()::text), 1, 10), 'pool:bench', 'ready', 1, 0, 0, 'm4.large',
                   \(spec)::jsonb || '{"lifetimeSeconds": 21600}', interval '6 hours', 'bench',
                   pool_spec_hash(\(spec)::jsonb),
                   now(), now() + interval '6 hours', now() + interval '1 hour', 'core', 22
            FROM generate_series(1, \(self.jobs))
            """,
            """
            INSERT INTO cluster_secrets (cluster_id, private_key)
            SELECT id, 'bench key' FROM clusters WHERE pool = 'bench' AND handed_out_at IS NULL
            """,
            """
            INSERT INTO nodes (cluster_id, instance_id, role, private_ip, public_ip)
            SELECT id, 'i-' || substr(id, 3), 'master', '127.0.1.9', '127.0.1.9'
            FROM clusters WHERE pool = 'bench' AND handed_out_at IS NULL
            """,
            "ANALYZE clusters",
        ] {
            for try await _ in try await client.query(statement, logger: logger) {}
        }
        let api = ClusterAPI(client: client, logger: logger)
        let left = Countdown(self.jobs)
        let started = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: [(String, String?, Double)].self) { group in
            for _ in 0..<self.consumers {
                group.addTask {
                    var mine: [(String, String?, Double)] = []
                    while left.take() {
                        let begin = ContinuousClock.now
                        let receipt = try await api.request(NewCluster(request: spec, abandonAfter: .seconds(600)))
                        guard let cluster = try await api.cluster(id: receipt.id), cluster.state == .ready else {
                            throw QueueError(.conflict, "handed out \(receipt.id), which is not ready")
                        }
                        _ = try await api.nodes(clusterID: receipt.id)
                        _ = try await api.privateKey(clusterID: receipt.id, leaseToken: receipt.leaseToken)
                        mine.append((receipt.id, receipt.pool, (ContinuousClock.now - begin).seconds))
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let seconds = (ContinuousClock.now - started).seconds
        let sorted = results.map(\.2).sorted()
        return [
            "claims": Double(results.count), "distinct": Double(Set(results.map(\.0)).count),
            "from_pool": Double(results.filter { $0.1 == "bench" }.count), "claimers": Double(self.consumers),
            "p50_ms": Self.percentile(sorted, 0.50) * 1000, "p99_ms": Self.percentile(sorted, 0.99) * 1000,
            "claims_per_second": Double(results.count) / seconds,
        ]
    }

    /// Has `client`'s pool open `count` connections at once (each held until all are open).
    private static func openConnections(_ client: PostgresClient, count: Int, logger: Logger) async throws {
        let opened = Countdown(count)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<count {
                group.addTask {
                    try await client.withConnection { _ in
                        _ = opened.take()
                        while opened.remaining > 0 { try await Task.sleep(for: .milliseconds(1)) }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// The nearest-rank percentile of sorted values (0 when there are none).
    private static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[max(0, min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1))]
    }

    // MARK: Claim cost

    /// One job at a time: enqueue it, claim it (timed), complete it (timed). The table's
    /// history (finished rows) is whatever the caller left in it; the result says how many.
    private func claimLatency(_ queue: JobQueue, client: PostgresClient, logger: Logger) async throws -> [String:
        Double]
    {
        let owner = "bench-claim-\(ProcessInfo.processInfo.processIdentifier)"
        let warmup = min(50, self.jobs)
        var claims: [Double] = []
        var completes: [Double] = []
        claims.reserveCapacity(self.jobs)
        completes.reserveCapacity(self.jobs)
        let clock = ContinuousClock()
        for round in 0..<(warmup + self.jobs) {
            try await queue.enqueue(NewJob(kind: .noop, payload: #"{"claim_latency": true}"#))
            let t0 = clock.now
            let claimed = try await queue.claim(kinds: [.noop], limit: 1, owner: owner)
            let t1 = clock.now
            guard let job = claimed.first else {
                throw QueueError(
                    .database,
                    "claim-latency: the job just enqueued was not claimable "
                        + "(is another consumer running on this database?)")
            }
            try await queue.complete(job)
            let t2 = clock.now
            if round >= warmup {
                claims.append((t1 - t0).seconds * 1000)
                completes.append((t2 - t1).seconds * 1000)
            }
        }
        let history = try await client.query(
            "SELECT count(*)::int8 FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')", logger: logger)
        var finished: Int64 = 0
        for try await count in history.decode(Int64.self) { finished = count }
        claims.sort()
        completes.sort()
        return [
            "jobs": Double(self.jobs), "finished_rows": Double(finished),
            "claim_p50_ms": Self.percentile(claims, 0.50), "claim_p95_ms": Self.percentile(claims, 0.95),
            "claim_p99_ms": Self.percentile(claims, 0.99), "claim_max_ms": claims.last ?? 0,
            "complete_p50_ms": Self.percentile(completes, 0.50), "complete_p99_ms": Self.percentile(completes, 0.99),
        ]
    }

    // MARK: Crash recovery

    /// Writes a line to stdout at once (stdout is block-buffered when piped).
    private static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Enqueues one `{"hold": true}` job, claims it with `--lease-seconds`, renews the lease
    /// every `--heartbeat-seconds` and never finishes it. Meant to be SIGKILLed. Use an
    /// otherwise empty queue: the consumer claims whichever noop job comes first.
    private func hold(_ queue: JobQueue, settings: DatabaseSettings, logger: Logger) async throws -> [String: Double] {
        let enqueued = try await queue.enqueue(NewJob(kind: .noop, payload: #"{"hold": true}"#, maxAttempts: 3))
        let lease = self.leaseSeconds
        let heartbeat = self.heartbeatSeconds
        let processor = JobProcessor(
            queue: queue, settings: settings,
            configuration: .init(
                workerID: "bench-hold-\(ProcessInfo.processInfo.processIdentifier)", kinds: [.noop],
                concurrency: 1, pollInterval: .milliseconds(200),
                heartbeatInterval: .seconds(heartbeat)),
            logger: logger,
            handler: { job, _ in
                Self.say(
                    "holding \(job.id) enqueued=\(enqueued.id) lease_seconds=\(lease) heartbeat_seconds=\(heartbeat) "
                        + "at=\(Date().timeIntervalSince1970)")
                // A long job: runs until the process dies (or the lease is lost).
                while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
            })
        let timeout = self.timeoutSeconds
        _ = try await withTimeout(.seconds(timeout)) { try await processor.run() }
        throw QueueError(.database, "hold: still alive after \(timeout) s; the holder is meant to be killed")
    }

    /// Runs one consumer and the queue maintenance (rescuer every `--rescue-seconds`) until it
    /// claims a job, then reports when (seconds since the epoch) and which job.
    private func recover(_ queue: JobQueue, settings: DatabaseSettings, logger: Logger) async throws -> [String: Double]
    {
        struct Got: Sendable {
            var id: Int64
            var attempt: Int
            var at: Double
        }
        let (got, signal) = AsyncStream<Got>.makeStream(bufferingPolicy: .bufferingOldest(1))
        let processor = JobProcessor(
            queue: queue, settings: settings,
            configuration: .init(
                workerID: "bench-recover-\(ProcessInfo.processInfo.processIdentifier)", kinds: [.noop],
                concurrency: 1, pollInterval: .seconds(self.pollSeconds)),
            logger: logger,
            handler: { job, _ in
                signal.yield(Got(id: job.id, attempt: job.attempt, at: Date().timeIntervalSince1970))
            })
        let maintenance = QueueMaintenance(
            queue: queue, configuration: .init(rescueInterval: .seconds(self.rescueSeconds)),
            logger: logger)
        let timeout = self.timeoutSeconds
        // The services never return on their own: the first claimed job ends the group, the
        // timeout cancels it.
        let claimed = try await withTimeout(.seconds(timeout)) { () async throws -> Got? in
            try await withThrowingTaskGroup(of: Got?.self) { group -> Got? in
                group.addTask {
                    try await processor.run()
                    return nil
                }
                group.addTask {
                    try await maintenance.run()
                    return nil
                }
                group.addTask {
                    for await first in got { return first }
                    return nil
                }
                Self.say("ready")
                defer { group.cancelAll() }
                while let next = try await group.next() {
                    if let next { return next }
                }
                return nil
            }
        }
        signal.finish()
        let result = claimed ?? nil
        guard let result else {
            throw QueueError(.database, "recover: no job was claimed within \(timeout) s")
        }
        return [
            "job_id": Double(result.id), "attempt": Double(result.attempt), "claimed_at": result.at,
            "rescue_interval_seconds": self.rescueSeconds, "poll_seconds": self.pollSeconds,
        ]
    }
}

/// Hands out `count` turns to concurrent takers.
final class Countdown: Sendable {
    private let left: Mutex<Int>
    init(_ count: Int) { self.left = Mutex(count) }
    func take() -> Bool {
        self.left.withLock { value in
            defer { value -= 1 }
            return value > 0
        }
    }
    var remaining: Int { self.left.withLock { max(0, $0) } }
}
