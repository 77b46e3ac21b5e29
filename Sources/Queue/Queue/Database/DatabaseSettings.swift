import Foundation
import NIOSSL
import PostgresNIO

/// Where the PostgreSQL server is, read the way libpq and psql read it: a
/// `postgres://user:password@host:port/database` URL (`DATABASE_URL`) when one is given,
/// otherwise the standard `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`
/// variables, with libpq's defaults for what is missing.
public struct DatabaseSettings: Sendable, Equatable {
    public var host: String = "127.0.0.1"
    public var port: Int = 5432
    public var username: String = "postgres"
    public var password: String?
    public var database: String?
    /// libpq's `sslmode`: `disable`, `prefer` (TLS when the server offers it, unverified),
    /// `require` (TLS, unverified), `verify-ca` (TLS, the chain checked against
    /// `sslRootCertificate`), `verify-full` (also the host name or address).
    public var sslMode: SSLMode = .disable
    /// libpq's `sslrootcert`: the CA certificates (PEM) for `verify-ca` and `verify-full`;
    /// libpq's default is ~/.postgresql/root.crt.
    public var sslRootCertificate: String?

    public enum SSLMode: String, Sendable, Equatable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    /// `true` when the connection must use TLS (`require` or stricter).
    public var requireTLS: Bool { [.require, .verifyCA, .verifyFull].contains(self.sslMode) }

    public init(
        host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres",
        password: String? = nil, database: String? = nil, sslMode: SSLMode = .disable, sslRootCertificate: String? = nil
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.sslMode = sslMode
        self.sslRootCertificate = sslRootCertificate
    }

    static func parseSSLMode(_ text: String) throws -> SSLMode {
        guard let mode = SSLMode(rawValue: text) else {
            throw QueueError(
                .configuration, "sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return mode
    }

    /// TLS as libpq would do it with the same `sslmode`; `nil` for no TLS.
    func tlsConfiguration() throws -> TLSConfiguration? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch self.sslMode {
        case .disable, .allow:
            return nil
        case .prefer, .require:
            configuration.certificateVerification = .none
        case .verifyCA, .verifyFull:
            let path =
                self.sslRootCertificate
                ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".postgresql/root.crt").path
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw QueueError(
                    .configuration,
                    "sslmode=\(self.sslMode.rawValue) needs the CA certificate file: \(path) cannot be read "
                        + "(set sslrootcert or PGSSLROOTCERT)")
            }
            configuration.trustRoots = .file(path)
            configuration.certificateVerification =
                self.sslMode == .verifyFull ? .fullVerification : .noHostnameVerification
        }
        return configuration
    }

    /// The TLS setting of one connection.
    func tls() throws -> PostgresConnection.Configuration.TLS {
        guard let configuration = try self.tlsConfiguration() else { return .disable }
        let context = try NIOSSLContext(configuration: configuration)
        return self.sslMode == .prefer ? .prefer(context) : .require(context)
    }

    /// The pool's TLS setting (it takes a configuration, not a context).
    func clientTLS() throws -> PostgresClient.Configuration.TLS {
        guard let configuration = try self.tlsConfiguration() else { return .disable }
        return self.sslMode == .prefer ? .prefer(configuration) : .require(configuration)
    }

    /// Settings from the environment: `DATABASE_URL` first, then the `PG*` variables.
    /// - Parameter defaultSSLMode: the `sslmode` when neither the URL nor `PGSSLMODE` names
    ///   one. The `client` passes libpq's own default, `prefer`, so a CI agent's key travels
    ///   over TLS whenever the server offers it.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, defaultSSLMode: SSLMode = .disable
    ) throws -> DatabaseSettings {
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            var settings = try DatabaseSettings(url: url)
            // As libpq: the URL's sslmode, else PGSSLMODE, else the default.
            let named = URLComponents(string: url)?.queryItems?.contains { $0.name == "sslmode" } ?? false
            if !named {
                settings.sslMode =
                    try environment["PGSSLMODE"].flatMap { $0.isEmpty ? nil : $0 }
                    .map(Self.parseSSLMode) ?? defaultSSLMode
            }
            return settings
        }
        var settings = DatabaseSettings()
        if let host = environment["PGHOST"], !host.isEmpty { settings.host = host }
        if let port = environment["PGPORT"], !port.isEmpty {
            guard let value = Int(port), (1...65535).contains(value) else {
                throw QueueError(.configuration, "PGPORT must be a port number from 1 to 65535")
            }
            settings.port = value
        }
        settings.username =
            environment["PGUSER"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["USER"] ?? "postgres"
        settings.password = environment["PGPASSWORD"]
        settings.database = environment["PGDATABASE"].flatMap { $0.isEmpty ? nil : $0 }
        if let mode = environment["PGSSLMODE"], !mode.isEmpty {
            settings.sslMode = try Self.parseSSLMode(mode)
        } else {
            settings.sslMode = defaultSSLMode
        }
        settings.sslRootCertificate = environment["PGSSLROOTCERT"].flatMap { $0.isEmpty ? nil : $0 }
        return settings
    }

    /// Parses a `postgres://` or `postgresql://` URL. The error never repeats the URL, which
    /// may hold a password.
    public init(url: String) throws {
        guard let components = URLComponents(string: url),
            let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme)
        else {
            throw QueueError(
                .configuration, "DATABASE_URL must look like postgres://user[:password]@host[:port]/database")
        }
        self.init()
        if let host = components.host, !host.isEmpty { self.host = host }
        if let port = components.port {
            guard (1...65535).contains(port) else {
                throw QueueError(.configuration, "the port in DATABASE_URL must be from 1 to 65535")
            }
            self.port = port
        }
        if let user = components.user, !user.isEmpty { self.username = user.removingPercentEncoding ?? user }
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? nil : path
        if let mode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value {
            self.sslMode = try Self.parseSSLMode(mode)
        }
        self.sslRootCertificate = components.queryItems?.first(where: { $0.name == "sslrootcert" })?.value
    }

    /// The same settings pointing at another database on the same server.
    public func with(database: String) -> DatabaseSettings {
        var copy = self
        copy.database = database
        return copy
    }

    /// A configuration for a pooled `PostgresClient`.
    public func clientConfiguration(maximumConnections: Int = 20) throws -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: self.host, port: self.port, username: self.username,
            password: self.password, database: self.database,
            tls: try self.clientTLS()
        )
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }

    /// The session limits of the fleet's own pools (`worker run`, `worker janitor`, `worker
    /// web`), set at connection start: no statement runs longer than a minute, and none waits
    /// more than 10 s for a lock. A row a tenant holds in a transaction it left open then
    /// costs a worker one failed step, retried, never a stuck one.
    public static let fleetSessionLimits = [("statement_timeout", "60s"), ("lock_timeout", "10s")]

    /// A pool for the fleet: ``clientConfiguration(maximumConnections:)`` with
    /// ``fleetSessionLimits``.
    public func fleetClientConfiguration(maximumConnections: Int) throws -> PostgresClient.Configuration {
        var configuration = try self.clientConfiguration(maximumConnections: maximumConnections)
        configuration.options.additionalStartupParameters += Self.fleetSessionLimits
        return configuration
    }

    /// A pool for ``JobQueue/leaseClient``: claims and heartbeats, committed with
    /// `synchronous_commit = off` (set at connection start, so no statement is added), with
    /// the fleet's session limits.
    public func leaseClientConfiguration(maximumConnections: Int) throws -> PostgresClient.Configuration {
        var configuration = try self.fleetClientConfiguration(maximumConnections: maximumConnections)
        configuration.options.additionalStartupParameters.append(("synchronous_commit", "off"))
        return configuration
    }

    /// A configuration for one dedicated connection (used for `LISTEN`).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: self.host, port: self.port, username: self.username,
            password: self.password, database: self.database,
            tls: try self.tls()
        )
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }
}
