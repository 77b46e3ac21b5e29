import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// Turns what postgres-nio throws into a sentence for a person. postgres-nio's own
/// `description` is deliberately generic ("PSQLError – Generic description to prevent
/// accidental leakage of sensitive data"); this keeps it free of secrets (no query text, no
/// bound values) while saying what happened: the server's message with its SQLSTATE's
/// meaning, or what went wrong with the connection.
public enum DatabaseErrorDescription {
    public static func describe(_ error: any Error, host: String? = nil, port: Int? = nil) -> String {
        if let error = error as? PostgresTransactionError, let inner = error.closureError ?? error.commitError {
            return describe(inner, host: host, port: port)
        }
        if let error = error as? QueueError { return error.message }
        guard let error = error as? PSQLError else { return String(describing: error) }
        let place = host.map { "\($0)\(port.map { ":\($0)" } ?? "")" } ?? "PostgreSQL"
        if let info = error.serverInfo, let message = info[.message] {
            let state = info[.sqlState] ?? ""
            let meaning = Self.meaning(ofSQLState: state)
            // A constraint violation's detail quotes the failing row ("Failing row contains
            // (…)"), which may hold a key or a token: never shown.
            let detail = state.hasPrefix("23") ? "" : info[.detail].map { " (\($0))" } ?? ""
            return "\(message)\(detail)"
                + (meaning.map { " [\(state): \($0)]" } ?? (state.isEmpty ? "" : " [\(state)]"))
        }
        switch error.code {
        case .connectionError:
            return "cannot connect to \(place): \(error.underlying.map(Self.describeTransport) ?? "connection failed")"
        case .serverClosedConnection:
            return "\(place) closed the connection\(error.underlying.map { ": \(Self.describeTransport($0))" } ?? "")"
        case .clientClosedConnection, .poolClosed:
            return "the connection to \(place) was already closed"
        case .failedToAddSSLHandler:
            let reason = error.underlying.map(Self.describeTransport) ?? "the TLS setup failed"
            return "cannot connect to \(place) over TLS: \(reason)"
        case .sslUnsupported:
            return "\(place) does not offer TLS, but the connection requires it (sslmode)"
        case .authMechanismRequiresPassword:
            return "\(place) asks for a password and none was given (PGPASSWORD or the URL)"
        case .unsupportedAuthMechanism, .saslError:
            return "cannot log in to \(place): unsupported or failed authentication"
        case .queryCancelled:
            return "the query was cancelled"
        case .uncleanShutdown:
            return "the connection to \(place) ended uncleanly"
        default:
            return "PostgreSQL error: \(error.code)"
        }
    }

    /// errno-level causes in words: "connection refused", "no route to host", ….
    static func describeTransport(_ error: any Error) -> String {
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case ETIMEDOUT: return "connection timed out"
            case EHOSTUNREACH: return "no route to host"
            case ENETUNREACH: return "network unreachable"
            case ECONNRESET: return "connection reset by peer"
            default: return String(cString: strerror(error.errnoCode)).lowercased()
            }
        }
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return describeTransport(first.error) }
            if let dns = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve the host name (\(dns))" }
            return "connection failed"
        }
        if let error = error as? ChannelError, case .connectTimeout = error { return "connection timed out" }
        if let error = error as? NIOSSLError {
            return "the TLS handshake failed (\(error)): is sslrootcert the CA that signed the server's certificate, "
                + "and does it name this host?"
        }
        if let error = error as? BoringSSLError {
            return "the TLS handshake failed (\(error)): is sslrootcert the CA that signed the server's certificate, "
                + "and does it name this host?"
        }
        let text = String(describing: error)
        if text.contains("connection refused") || text.contains("Connection refused") { return "connection refused" }
        return text
    }

    /// What a SQLSTATE means, for the classes people meet.
    static func meaning(ofSQLState state: String) -> String? {
        switch state {
        case "FLT01": return "transition not allowed by the cluster state machine"
        case "FLT02": return "this worker no longer holds the job's lease"
        case "FLT03": return "the cluster is not in a state that allows this"
        case "FLT04": return "no such cluster"
        case "23505": return "unique violation"
        case "23503": return "foreign key violation"
        case "23514": return "check violation"
        case "23502": return "not null violation"
        case "22P02": return "invalid text representation"
        case "22001": return "value too long"
        case "42501": return "insufficient privilege"
        case "42P01": return "undefined table (run `worker migrate`)"
        case "42883": return "undefined function (run `worker migrate`)"
        case "40001": return "serialization failure"
        case "40P01": return "deadlock detected"
        case "53300": return "too many connections"
        case "57P01": return "the server is shutting down"
        case "3D000": return "no such database"
        case "28P01", "28000": return "authentication failed"
        default: return nil
        }
    }
}
