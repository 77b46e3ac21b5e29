import ArgumentParser
import CommandOptions
import Fleet
import Foundation
import Queue

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply pending migrations from the migrations folder, in order.",
        discussion: """
            Each file runs in its own transaction under an advisory lock, so several workers
            starting at once apply each file exactly once. Applied files are recorded with their
            checksum; if an applied file was edited afterwards, nothing is applied and the command
            says which file changed.
            """
    )

    @Option(
        name: .long,
        help: """
            Folder with NNNN_name.sql files. Default: $FLOTILLA_MIGRATIONS_DIR, ./migrations, or the one shipped \
            with the build.
            """
    )
    var dir: String?

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let logger = self.common.makeLogger()
        guard let directory = self.dir.map({ URL(fileURLWithPath: $0) }) ?? Migration.defaultDirectory() else {
            fail("no migrations folder found; pass --dir PATH or set FLOTILLA_MIGRATIONS_DIR")
        }
        do {
            let migrations = try Migration.load(from: directory)
            let settings = try DatabaseSettings.fromEnvironment()
            let report = try await settings.withClient(maximumConnections: 1, logger: logger) { client in
                try await Migrator(client: client, logger: logger).migrate(migrations)
            }
            for migration in report.applied {
                print("applied \(String(format: "%04d", migration.version))_\(migration.name)")
            }
            print(
                "schema at version \(migrations.last?.version ?? 0) "
                    + "(\(report.applied.count) applied now, \(report.alreadyApplied) before)")
        } catch let error as QueueError {
            fail(error.message)
        } catch {
            // Migrations run as the database owner; any other login meets a refusal here.
            fail("cannot migrate: \(DatabaseErrorDescription.describe(error))")
        }
    }
}
