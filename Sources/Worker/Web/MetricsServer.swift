import Foundation
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import Queue
import ServiceLifecycle
import Telemetry

/// `GET /metrics` in the Prometheus text format (and `GET /healthz`), for `worker run` and
/// `worker janitor`.
package enum MetricsServer {
    package static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The HTTP service; it logs the address it listens on (useful with port 0) at info.
    package static func service(address: HTTPAddress, exporter: MetricsExporter, logger: Logger) -> some Service {
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            let bytes = await exporter.scrape()
            return Response(
                status: .ok, headers: [.contentType: Self.contentType],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("healthz") { _, _ in "ok\n" }
        return Self.application(router, address: address, announce: "metrics", path: "/metrics", logger: logger)
    }

    /// The HTTP server for `router`. Once it listens it logs `NAME: http://HOST:PORT/PATH` at
    /// info (the real port when 0 was asked for); Hummingbird's own lines are kept to warnings.
    static func application(
        _ router: Router<BasicRequestContext>, address: HTTPAddress, announce name: String, path: String,
        logger: Logger
    ) -> some Service {
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        return Application(
            router: router,
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "flotilla"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? address.port
                logger.info("\(name): http://\(HTTPAddress(host: address.host, port: port))\(path)")
            },
            logger: quiet)
    }
}

extension MetricsServer {
    /// The `/metrics` service for `--metrics-address` (`none` turns it off), with swift-metrics
    /// bootstrapped to its registry. Throws a ``QueueError`` that says what is accepted.
    ///
    /// With `fleetGauges`, each scrape also reads the fleet-wide gauges from the database
    /// (jobs, clusters, pools, key pairs, sweeps, instance-hours). The janitor exports them and
    /// `worker run` does not, so N workers do not export N copies of the same numbers.
    package static func fromOption(
        _ option: String, environment: String, client: PostgresClient, fleetGauges: Bool,
        logger: Logger
    ) throws -> (any Service)? {
        if ["none", "off", ""].contains(option.lowercased()) { return nil }
        let how = "set --metrics-address or \(environment) to HOST:PORT (port 0 picks a free one) or none"
        guard let address = HTTPAddress(parsing: option) else {
            throw QueueError(.configuration, "cannot serve metrics on \(option): not HOST:PORT; \(how)")
        }
        let exporter = MetricsExporter.bootstrap(
            reports: fleetGauges ? OperatorReports(client: client, logger: logger) : nil,
            logger: logger)
        return Served(
            name: "metrics", address: address, advice: how,
            inner: Self.service(address: address, exporter: exporter, logger: logger))
    }
}

/// An HTTP service whose failure to start (address in use, no such address) ends the
/// process with a message naming the option, not a bare socket error.
package struct Served<Inner: Service>: Service {
    let name: String
    let address: HTTPAddress
    let advice: String
    let inner: Inner

    package init(name: String, address: HTTPAddress, advice: String, inner: Inner) {
        self.name = name
        self.address = address
        self.advice = advice
        self.inner = inner
    }

    package func run() async throws {
        do {
            try await self.inner.run()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw QueueError(.configuration, "cannot serve \(self.name) on \(self.address): \(error); \(self.advice)")
        }
    }
}
