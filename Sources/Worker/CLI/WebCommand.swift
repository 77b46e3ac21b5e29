import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Logging
import PostgresNIO
import Queue
import ServiceLifecycle
import Web

struct WebCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "web",
        abstract: "Serve a read-only web page of the fleet (until SIGTERM/SIGINT).",
        discussion: """
            Pools, clusters (state, phase, owner, age, expiry, nodes with IPs),
            each cluster's timeline and install logs, running and failed jobs,
            pending key-pair deletions, the last sweep's leftovers and
            instance-hours per owner. The page updates itself as the database
            changes (LISTEN/NOTIFY, passed on as server-sent events); without
            JavaScript, reload it.

            It logs in as an operator: DATABASE_URL (or PG*) must name a login
            that is a member of flotilla_operator and can read no secret. It
            refuses to start otherwise, so the page can never show a key or a
            token:

              psql -c "CREATE ROLE fleet_page LOGIN IN ROLE flotilla_operator"
              PGUSER=fleet_page worker web --address 127.0.0.1:8080

            The page has no login of its own: keep it on loopback or behind a
            proxy that authenticates.
            """
    )

    @Option(help: "HOST:PORT to serve on (port 0 picks a free port). Env: FLOTILLA_WEB_ADDRESS.")
    var address: String = ProcessInfo.processInfo.environment["FLOTILLA_WEB_ADDRESS"] ?? "127.0.0.1:8080"

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard HTTPAddress(parsing: self.address) != nil else {
            throw ValidationError("--address must be HOST:PORT, for example 127.0.0.1:8080 (port 0 picks a free one)")
        }
    }

    func run() async throws {
        let logger = self.common.makeLogger(label: "flotilla.web")
        let settings: DatabaseSettings
        do { settings = try DatabaseSettings.fromEnvironment() } catch let error as QueueError { fail(error.message) }
        let address = HTTPAddress(parsing: self.address)!
        if !address.isLoopback {
            logger.warning(
                """
                the page has no login of its own and \(address.host) is not a loopback address: \
                put it behind a proxy that authenticates
                """)
        }
        let client = PostgresClient(
            configuration: try settings.fleetClientConfiguration(maximumConnections: 4), backgroundLogger: logger)
        let feed = ChangeFeed(settings: settings, logger: logger)
        let web = Served(
            name: "the web page", address: address,
            advice: "set --address or FLOTILLA_WEB_ADDRESS to another HOST:PORT (port 0 picks a free one)",
            inner: WebServer.service(address: address, client: client, feed: feed, logger: logger))
        // A group stops its services last first: the feed stops before the server, so every
        // open event stream ends and the server's graceful shutdown is not held open.
        let checked = SchemaCheckedServices(client: client, settings: settings, services: [web, feed], logger: logger) {
            client in
            try await OperatorLogin.require(client, logger: logger)
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: client),
                    .init(
                        service: checked, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let error as QueueError {
            fail(error.message)
        }
    }
}
