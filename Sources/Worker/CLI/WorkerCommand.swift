import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Logging

@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Flotilla's worker: applies migrations, runs jobs, keeps the pool clean.",
        discussion: """
            Every part of Flotilla shares one PostgreSQL database, found through DATABASE_URL
            (postgres://user:password@host:port/database) or the standard PGHOST, PGPORT, PGUSER,
            PGPASSWORD and PGDATABASE variables.

            Typical start:
              worker migrate            apply pending migrations (safe to run from many workers at once)
              worker run --concurrency 4
              worker janitor            lifetimes, key pairs, sweeps, warm pools (one or two per fleet)
              worker web                a read-only page of the fleet, as an operator login
            """,
        subcommands: [
            MigrateCommand.self, RunCommand.self, JanitorCommand.self, PoolCommand.self, PlanCommand.self,
            CanaryCommand.self,
            WebCommand.self, EnqueueCommand.self,
        ]
    )
}
