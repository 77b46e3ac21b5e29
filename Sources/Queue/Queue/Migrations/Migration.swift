import Crypto
import Foundation

/// One numbered plain-SQL file from `migrations/`, named `NNNN_description.sql`.
public struct Migration: Sendable, Hashable {
    public var version: Int
    public var name: String
    public var sql: String
    /// SHA-256 of the file's bytes, hex. Recorded when applied; a later change is refused.
    public var checksum: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
        self.checksum = SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Reads every `NNNN_name.sql` file in `directory`, in version order. Any other `.sql`
    /// file, a duplicate version or a gap in the numbering is an error: a migration that
    /// silently does not run is worse than one that refuses to start.
    public static func load(from directory: URL) throws -> [Migration] {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw QueueError(
                .invalidMigration, "cannot read the migrations folder \(directory.path)", underlying: error)
        }
        var migrations: [Migration] = []
        for file in files where file.hasSuffix(".sql") {
            guard let match = file.wholeMatch(of: /([0-9]{4})_([a-z0-9_]+)\.sql/), let version = Int(match.1),
                version > 0
            else {
                throw QueueError(
                    .invalidMigration,
                    "migration file \(file) is not named NNNN_description.sql (lower case, digits, underscores)")
            }
            let url = directory.appendingPathComponent(file)
            guard let data = FileManager.default.contents(atPath: url.path),
                let sql = String(data: data, encoding: .utf8)
            else {
                throw QueueError(.invalidMigration, "cannot read migration file \(url.path) as UTF-8")
            }
            migrations.append(Migration(version: version, name: String(match.2), sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (index, migration) in migrations.enumerated() where migration.version != index + 1 {
            throw QueueError(
                .invalidMigration,
                "migrations must be numbered 0001, 0002, … without gaps or duplicates; found "
                    + "\(String(format: "%04d", migration.version))_\(migration.name).sql at position \(index + 1)")
        }
        return migrations
    }

    /// Finds the `migrations` folder: `FLOTILLA_MIGRATIONS_DIR`, then `./migrations`, then
    /// the folder next to the source checkout the executable was built from, then
    /// `/usr/share/flotilla/migrations` (the Docker image).
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL? {
        var candidates: [URL] = []
        if let explicit = environment["FLOTILLA_MIGRATIONS_DIR"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit)
        }
        candidates.append(
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("migrations"))
        var executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        for _ in 0..<5 {
            executable.deleteLastPathComponent()
            candidates.append(executable.appendingPathComponent("migrations"))
        }
        candidates.append(URL(fileURLWithPath: "/usr/share/flotilla/migrations"))
        return candidates.first { url in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(
                atPath: url.appendingPathComponent("0001_jobs.sql").path, isDirectory: &isDirectory)
        }
    }
}
