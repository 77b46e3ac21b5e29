import ArgumentParser
import CommandOptions
import Foundation
import Queue

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check what this agent needs: the database, TLS, its login's role, ssh and tar.",
        discussion: """
            Each check prints ok, warn or FAIL with what to do. Nothing is written. Exit
            status 1 when a check failed (a warning does not fail).

            Example:
              client doctor --json
            """)
    @OptionGroup var options: ClientOptions

    struct Check {
        enum Outcome: String {
            case ok, warn
            case fail = "FAIL"
        }
        var name: String
        var outcome: Outcome
        var detail: String
    }

    func run() async throws {
        let logger = self.options.makeLogger()
        var checks: [Check] = []
        do {
            let settings = try DatabaseSettings.fromEnvironment(defaultSSLMode: .prefer)
            let database = settings.database ?? settings.username
            let target = "\(settings.username)@\(settings.host):\(settings.port)/\(database)"
            checks.append(
                Check(
                    name: "database settings", outcome: .ok,
                    detail: "\(target) sslmode=\(settings.sslMode.rawValue)"))
            do {
                let identity = try await settings.withClient(
                    maximumConnections: 1, idleTimeout: agentIdleTimeout, connectPatience: .seconds(10), logger: logger
                ) { client in
                    try await ClusterAPI(client: client, logger: logger).identity()
                }
                checks.append(
                    Check(
                        name: "database reachable", outcome: .ok,
                        detail: "logged in as \(identity.login), PostgreSQL \(identity.serverVersion)"))
                checks.append(
                    identity.encrypted
                        ? Check(name: "TLS", outcome: .ok, detail: "the connection is encrypted")
                        : Check(
                            name: "TLS", outcome: .warn,
                            detail: "the connection is not encrypted: the server sends a cluster's key only over TLS "
                                + "or loopback (set sslmode=require, or PGSSLMODE=require)"))
                checks.append(
                    identity.roles.contains("flotilla_client")
                        ? Check(name: "role", outcome: .ok, detail: "\(identity.login) is a member of flotilla_client")
                        : Check(
                            name: "role", outcome: identity.roles.isEmpty ? .fail : .warn,
                            detail: "\(identity.login) is not a member of flotilla_client"
                                + (identity.roles.isEmpty ? "" : " (it is: \(identity.roles.joined(separator: ", ")))")
                                + "; an operator runs: GRANT flotilla_client TO \(identity.login)"))
            } catch {
                checks.append(
                    Check(name: "database reachable", outcome: .fail, detail: DatabaseErrorDescription.describe(error)))
            }
        } catch let error as QueueError {
            checks.append(Check(name: "database settings", outcome: .fail, detail: error.message))
        }
        for (tool, use, package) in [
            ("ssh", "client exec, send-file, download-file, sync and logs --collect", "openssh-client"),
            ("tar", "send-file, download-file and sync", "tar"),
        ] {
            if let path = Self.onPath(tool) {
                checks.append(Check(name: tool, outcome: .ok, detail: path))
            } else {
                checks.append(
                    Check(
                        name: tool, outcome: .fail,
                        detail: "not on PATH: \(use) need it (apt-get install \(package), or your system's package)"))
            }
        }
        let url = ProcessInfo.processInfo.environment["FLOTILLA_INSTALLER_URL"] ?? ""
        checks.append(
            url.isEmpty
                ? Check(
                    name: "installer URL", outcome: .warn,
                    detail: "FLOTILLA_INSTALLER_URL is not set: client request needs --installer-url (or --pool-name)")
                : Check(
                    name: "installer URL", outcome: .ok, detail: "FLOTILLA_INSTALLER_URL is set (the server judges it)")
        )
        if self.options.json {
            printJSON([
                "checks": checks.map { ["name": $0.name, "outcome": $0.outcome.rawValue, "detail": $0.detail] }
            ])
        } else {
            printTable(checks.map { [$0.outcome.rawValue, $0.name, $0.detail] })
        }
        if checks.contains(where: { $0.outcome == .fail }) { throw ExitCode(1) }
    }

    /// The first executable `name` on PATH.
    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}
