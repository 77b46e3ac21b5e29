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
    /// `true` when `sslmode=require` (or stricter) was asked for.
    public var requireTLS: Bool = false

    public init(host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres",
                password: String? = nil, database: String? = nil, requireTLS: Bool = false) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.requireTLS = requireTLS
    }

    /// Settings from the environment: `DATABASE_URL` first, then the `PG*` variables.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseSettings {
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            return try DatabaseSettings(url: url)
        }
        var settings = DatabaseSettings()
        if let host = environment["PGHOST"], !host.isEmpty { settings.host = host }
        if let port = environment["PGPORT"], !port.isEmpty {
            guard let value = Int(port), (1...65535).contains(value) else {
                throw QueueError(.configuration, "PGPORT must be a port number from 1 to 65535")
            }
            settings.port = value
        }
        settings.username = environment["PGUSER"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["USER"] ?? "postgres"
        settings.password = environment["PGPASSWORD"]
        settings.database = environment["PGDATABASE"].flatMap { $0.isEmpty ? nil : $0 }
        if let mode = environment["PGSSLMODE"] {
            settings.requireTLS = ["require", "verify-ca", "verify-full"].contains(mode)
        }
        return settings
    }

    /// Parses a `postgres://` or `postgresql://` URL. The error never repeats the URL, which
    /// may hold a password.
    public init(url: String) throws {
        guard let components = URLComponents(string: url),
              let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme)
        else {
            throw QueueError(.configuration, "DATABASE_URL must look like postgres://user[:password]@host[:port]/database")
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
            self.requireTLS = ["require", "verify-ca", "verify-full"].contains(mode)
        }
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
            tls: self.requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }

    /// A configuration for one dedicated connection (used for `LISTEN`).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: self.host, port: self.port, username: self.username,
            password: self.password, database: self.database,
            tls: self.requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
        )
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }
}
