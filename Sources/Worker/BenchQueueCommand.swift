import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import Queue
import Synchronization

struct BenchQueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-queue",
        abstract: "Measure the job queue on this database: no-op throughput and pickup latency.",
        discussion: """
            Uses `noop` jobs in the database it is pointed at (use a scratch database: it adds
            and completes jobs). Consumers run in this process, each a job processor with its
            own claims, heartbeats and LISTEN connection, as `worker run` would.

              worker bench-queue --mode throughput --consumers 8 --jobs 20000
              worker bench-queue --mode pickup --consumers 4 --jobs 1000 --rate 200
            """
    )

    enum Mode: String, ExpressibleByArgument { case throughput, pickup }

    @Option(help: "throughput: drain preloaded jobs; pickup: enqueue one job at a time at --rate and time enqueue → claim.")
    var mode: Mode = .throughput

    @Option(help: "Number of consumers.")
    var consumers: Int = 8

    @Option(help: "Jobs each consumer claims and runs at once.")
    var batch: Int = 10

    @Option(help: "Number of jobs.")
    var jobs: Int = 2000

    @Option(help: "Jobs enqueued per second in pickup mode.")
    var rate: Double = 200

    @Flag(help: "Print one JSON object instead of a line of text.")
    var json = false

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard self.consumers >= 1, self.batch >= 1, self.jobs >= 1, self.rate > 0 else {
            throw ValidationError("--consumers, --batch, --jobs and --rate must be positive")
        }
    }

    func run() async throws {
        let logger = self.common.makeLogger()
        let settings = try DatabaseSettings.fromEnvironment()
        let result = try await settings.withClient(maximumConnections: self.consumers * 2 + 4, logger: logger) { client in
            let queue = JobQueue(client: client, logger: logger)
            try await Migrator.checkSchema(client: client, logger: logger)
            switch self.mode {
            case .throughput: return try await self.throughput(queue, settings: settings, client: client, logger: logger)
            case .pickup: return try await self.pickup(queue, settings: settings, logger: logger)
            }
        }
        if self.json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(result.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
    }

    private func consumersRunning<T: Sendable>(_ queue: JobQueue, settings: DatabaseSettings, logger: Logger,
                                               handler: @escaping JobProcessor.Handler,
                                               _ body: @Sendable () async throws -> T) async throws -> T {
        let processors = (0..<self.consumers).map { index in
            JobProcessor(queue: queue, settings: settings,
                         configuration: .init(workerID: "bench-\(index)", kinds: [.noop], concurrency: self.batch,
                                              pollInterval: .milliseconds(500)),
                         logger: logger, handler: handler)
        }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            for processor in processors { group.addTask { try await processor.run(); return nil } }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    private func throughput(_ queue: JobQueue, settings: DatabaseSettings, client: PostgresClient, logger: Logger) async throws -> [String: Double] {
        var remaining = self.jobs
        while remaining > 0 {
            let chunk = min(remaining, 5000)
            try await queue.enqueue(batch: Array(repeating: NewJob(kind: .noop), count: chunk))
            remaining -= chunk
        }
        let done = Mutex(0)
        let total = self.jobs
        let (finished, signal) = AsyncStream<Void>.makeStream()
        let start = ContinuousClock.now
        try await self.consumersRunning(queue, settings: settings, logger: logger, handler: { _, _ in
            let count = done.withLock { $0 += 1; return $0 }
            if count == total { signal.yield() }
        }) {
            for await _ in finished { break }
            // The last handler returned; wait for its completion to be written.
            while try await queue.stats().countByState[.running, default: 0] > 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let seconds = (ContinuousClock.now - start).seconds
        return ["consumers": Double(self.consumers), "jobs": Double(total), "seconds": seconds, "jobs_per_second": Double(total) / seconds]
    }

    private func pickup(_ queue: JobQueue, settings: DatabaseSettings, logger: Logger) async throws -> [String: Double] {
        let latencies = Mutex<[Double]>([])
        let total = self.jobs
        let (finished, signal) = AsyncStream<Void>.makeStream()
        try await self.consumersRunning(queue, settings: settings, logger: logger, handler: { job, _ in
            let sent = try job.decodePayload([String: Double].self)["sent"] ?? 0
            let latency = Date().timeIntervalSince1970 - sent
            let count = latencies.withLock { $0.append(latency); return $0.count }
            if count == total { signal.yield() }
        }) {
            // Let every consumer's LISTEN connection come up before measuring.
            try await Task.sleep(for: .seconds(1))
            let interval = Duration.seconds(1 / self.rate)
            var next = ContinuousClock.now
            for _ in 0..<total {
                next = next.advanced(by: interval)
                try await queue.enqueue(NewJob(kind: .noop, payload: #"{"sent": \#(Date().timeIntervalSince1970)}"#))
                try await Task.sleep(until: next)
            }
            for await _ in finished { break }
        }
        let sorted = latencies.withLock { $0 }.sorted()
        func percentile(_ p: Double) -> Double {
            sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)] * 1000
        }
        return ["consumers": Double(self.consumers), "jobs": Double(total), "rate": self.rate,
                "p50_ms": percentile(0.50), "p95_ms": percentile(0.95), "p99_ms": percentile(0.99), "max_ms": (sorted.last ?? 0) * 1000]
    }
}
