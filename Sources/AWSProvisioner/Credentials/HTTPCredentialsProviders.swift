import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Timing

/// The credentials JSON of `credential_process` (`SessionToken`, `Version` 1), the instance
/// metadata service and the container endpoint (`Token`, `Code`):
/// `{"AccessKeyId": …, "SecretAccessKey": …, "SessionToken"/"Token": …, "Expiration": "2026-…Z"}`.
/// Without `Expiration` the credentials are treated as long-term.
enum TemporaryCredentialsJSON {
    static func decode(_ data: Data, source: String, failure: CredentialsError.Code = .invalidConfiguration) throws
        -> AWSCredentials
    {
        struct Payload: Decodable {
            var version: Int?
            var code: String?
            var message: String?
            var accessKeyId: String?
            var secretAccessKey: String?
            var sessionToken: String?
            var token: String?
            var expiration: String?

            enum CodingKeys: String, CodingKey {
                case version = "Version"
                case code = "Code"
                case message = "Message"
                case accessKeyId = "AccessKeyId"
                case secretAccessKey = "SecretAccessKey"
                case sessionToken = "SessionToken"
                case token = "Token"
                case expiration = "Expiration"
            }
        }
        guard let payload = try? JSONDecoder().decode(Payload.self, from: data) else {
            throw CredentialsError(failure, "\(source) did not give a JSON object")
        }
        if let version = payload.version, version != 1 {
            throw CredentialsError(failure, "\(source) printed Version \(version); only 1 is supported")
        }
        if let code = payload.code, code != "Success" {
            throw CredentialsError(.notFound, "\(source) answered \(code): \(payload.message ?? "")")
        }
        guard let key = payload.accessKeyId, !key.isEmpty, let secret = payload.secretAccessKey, !secret.isEmpty else {
            throw CredentialsError(failure, "\(source) output lacks AccessKeyId or SecretAccessKey")
        }
        var expiration: Date?
        if let text = payload.expiration {
            guard let date = AWSTimestamp.parse(text) else {
                throw CredentialsError(failure, "\(source) gave an Expiration that is not ISO 8601")
            }
            expiration = date
        }
        return AWSCredentials(
            accessKeyID: key, secretAccessKey: secret, sessionToken: payload.sessionToken ?? payload.token,
            expiration: expiration)
    }
}

/// One HTTP exchange for a credentials endpoint: status and body, bounded in time and size.
func credentialsRequest(
    _ client: HTTPClient, _ method: HTTPMethod, _ url: String, headers: [(String, String)] = [],
    body: String? = nil, timeout: Duration, source: String
) async throws -> (status: Int, body: Data) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(ByteBuffer(string: body)) }
    do {
        let response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.seconds * 1e9)))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), Data(bytes.readableBytesView))
    } catch let error as CredentialsError {
        throw error
    } catch {
        throw CredentialsError(.notFound, "\(source) did not answer: \(error)")
    }
}

/// The EC2 instance role, from the instance metadata service with IMDSv2 only: a session
/// token (`PUT /latest/api/token`), then the role's name and its credentials, each with the
/// token. An instance that requires tokens refuses IMDSv1 reads, so none is made.
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves the service (tests use a loopback emulator).
public struct InstanceMetadataCredentialsProvider: CredentialsProvider {
    public var endpoint: String
    /// What was looked for before: said when the service does not answer (off EC2).
    public var otherwise: String?
    /// Per request, and how many tries (`AWS_METADATA_SERVICE_TIMEOUT`, `_NUM_ATTEMPTS`, as
    /// the SDKs read them; 1 s and 2 by default).
    public var timeout: Duration
    public var attempts: Int
    let httpClient: HTTPClient
    public static let defaultEndpoint = "http://169.254.169.254"

    public init(
        endpoint: String? = nil, httpClient: HTTPClient, otherwise: String? = nil,
        timeout: Duration = .seconds(1), attempts: Int = 2
    ) {
        self.endpoint = (endpoint ?? Self.defaultEndpoint).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        self.httpClient = httpClient
        self.otherwise = otherwise
        self.timeout = timeout
        self.attempts = max(1, attempts)
    }

    /// One request, tried `attempts` times when the service does not answer.
    private func request(_ method: HTTPMethod, _ url: String, headers: [(String, String)], source: String) async throws
        -> (status: Int, body: Data)
    {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await credentialsRequest(
                    self.httpClient, method, url, headers: headers, timeout: self.timeout, source: source)
            } catch is CredentialsError where attempt < self.attempts {
                continue
            }
        }
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        let source = "the instance metadata service (\(self.endpoint))"
        let token: (status: Int, body: Data)
        do {
            token = try await self.request(
                .PUT, self.endpoint + "/latest/api/token",
                headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")], source: source)
        } catch let error as CredentialsError {
            guard let otherwise = self.otherwise else { throw error }
            throw CredentialsError(
                .notFound,
                "\(otherwise), and \(error.message). Off EC2, set credentials; in a container on EC2, "
                    + "the instance needs a metadata hop limit of 2 or more")
        }
        guard token.status == 200, let value = String(data: token.body, encoding: .utf8), !value.isEmpty else {
            throw CredentialsError(.notFound, "\(source) gave no session token (HTTP \(token.status))")
        }
        let header = [("X-aws-ec2-metadata-token", value)]
        let base = self.endpoint + "/latest/meta-data/iam/security-credentials/"
        let roles = try await self.request(.GET, base, headers: header, source: source)
        guard roles.status == 200,
            let role = String(decoding: roles.body, as: UTF8.self).split(separator: "\n").first.map(String.init),
            !role.isEmpty
        else {
            throw CredentialsError(
                .notFound, "\(source) names no instance role (HTTP \(roles.status)): attach an instance profile")
        }
        let answer = try await self.request(.GET, base + role, headers: header, source: source)
        guard answer.status == 200 else {
            throw CredentialsError(.notFound, "\(source) gave no credentials for role \(role) (HTTP \(answer.status))")
        }
        logger.debug("credentials from the instance role", metadata: ["aws.role": "\(role)"])
        return try TemporaryCredentialsJSON.decode(answer.body, source: source)
    }
}

/// The ECS (or EKS Pod Identity) container role: `AWS_CONTAINER_CREDENTIALS_FULL_URI`, or
/// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` under `http://169.254.170.2`, with the
/// `Authorization` value of `AWS_CONTAINER_AUTHORIZATION_TOKEN` or the file named by
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at each resolve: it is rotated).
public struct ContainerCredentialsProvider: CredentialsProvider {
    public var url: String
    public var authorization: String?
    public var authorizationFile: String?
    let httpClient: HTTPClient

    /// The provider the environment configures, or `nil`.
    public static func fromEnvironment(_ environment: [String: String], httpClient: HTTPClient) throws
        -> ContainerCredentialsProvider?
    {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let url: String
        if let relative = value("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            url = "http://169.254.170.2" + (relative.hasPrefix("/") ? relative : "/" + relative)
        } else if let full = value("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            guard let parsed = URL(string: full), ["http", "https"].contains(parsed.scheme ?? ""),
                let host = parsed.host
            else {
                throw CredentialsError(
                    .invalidConfiguration, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http(s) URL")
            }
            // The token travels with the request: plain http only to the container agent's
            // own addresses or this machine (as the SDKs allow), https anywhere.
            let trimmed = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            let local =
                trimmed == "localhost" || trimmed == "::1" || trimmed.hasPrefix("127.")
                || ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"].contains(trimmed)
            guard parsed.scheme == "https" || local else {
                throw CredentialsError(
                    .invalidConfiguration,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a loopback address or the container "
                        + "agent (169.254.170.2, 169.254.170.23, fd00:ec2::23)")
            }
            url = full
        } else {
            return nil
        }
        return ContainerCredentialsProvider(
            url: url, authorization: value("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            authorizationFile: value("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), httpClient: httpClient)
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        var headers: [(String, String)] = []
        if let file = self.authorizationFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw CredentialsError(
                    .invalidConfiguration, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(file)")
            }
            headers.append(("Authorization", text.trimmingCharacters(in: .whitespacesAndNewlines)))
        } else if let authorization = self.authorization {
            headers.append(("Authorization", authorization))
        }
        guard !headers.contains(where: { $0.1.contains("\r") || $0.1.contains("\n") }) else {
            throw CredentialsError(.invalidConfiguration, "the container authorization token contains a line break")
        }
        let source = "the container credentials endpoint"
        let answer = try await credentialsRequest(
            self.httpClient, .GET, self.url, headers: headers, timeout: .seconds(5), source: source)
        guard answer.status == 200 else {
            throw CredentialsError(.notFound, "\(source) answered HTTP \(answer.status)")
        }
        return try TemporaryCredentialsJSON.decode(answer.body, source: source)
    }
}

/// A role assumed with a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE` +
/// `AWS_ROLE_ARN`, as EKS service accounts and CI OIDC set them): STS
/// `AssumeRoleWithWebIdentity`, which is not signed. The token file is read at each resolve
/// (it is rotated).
public struct WebIdentityCredentialsProvider: CredentialsProvider {
    public var roleARN: String
    public var tokenFile: String
    public var sessionName: String
    public var stsEndpoint: URL
    let httpClient: HTTPClient

    public init(
        roleARN: String, tokenFile: String, sessionName: String? = nil, stsEndpoint: URL, httpClient: HTTPClient
    ) {
        self.roleARN = roleARN
        self.tokenFile = tokenFile
        self.sessionName = sessionName ?? "flotilla-\(Int(Date().timeIntervalSince1970))"
        self.stsEndpoint = stsEndpoint
        self.httpClient = httpClient
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        guard
            let token = try? String(contentsOfFile: self.tokenFile, encoding: .utf8).trimmingCharacters(
                in: .whitespacesAndNewlines),
            !token.isEmpty
        else {
            throw CredentialsError(
                .invalidConfiguration, "cannot read a token from AWS_WEB_IDENTITY_TOKEN_FILE \(self.tokenFile)")
        }
        let body = AWSQueryTransport.formBody([
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"),
            ("RoleArn", self.roleARN), ("RoleSessionName", self.sessionName),
            ("WebIdentityToken", token),
        ])
        AWSRequestLog.shared?.record(
            service: "sts", version: "2011-06-15", action: "AssumeRoleWithWebIdentity",
            parameters: [
                ("RoleArn", self.roleARN), ("RoleSessionName", self.sessionName),
                ("WebIdentityToken", "<\(token.utf8.count) bytes>"),
            ])
        // The identity provider and STS have bad moments: those are tried again, as the SDKs do.
        var attempt = 0
        var answer: (status: Int, body: Data)
        while true {
            attempt += 1
            do {
                answer = try await credentialsRequest(
                    self.httpClient, .POST, self.stsEndpoint.absoluteString,
                    headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
                    body: body, timeout: .seconds(30), source: "STS AssumeRoleWithWebIdentity")
            } catch  where attempt < 3 {
                try await Task.sleep(for: .milliseconds(500 * attempt))
                continue
            }
            if answer.status == 200 { break }
            let error = EC2Error(httpStatus: answer.status, body: Array(answer.body))
            let passing =
                ["IDPCommunicationError", "InvalidIdentityToken"].contains(error.code)
                || error.retryClass == .throttling || error.retryClass == .transient
            guard passing, attempt < 3 else {
                throw CredentialsError(
                    .assumeRoleFailed, "AssumeRoleWithWebIdentity \(self.roleARN) failed", underlying: error)
            }
            logger.info("AssumeRoleWithWebIdentity answered \(error.code); trying again")
            try await Task.sleep(for: .milliseconds(500 * attempt))
        }
        guard let root = try? XMLReader.parse(Array(answer.body)),
            let credentials = root.firstDescendant(named: "Credentials"),
            let key = credentials.string("AccessKeyId"), let secret = credentials.string("SecretAccessKey")
        else {
            throw CredentialsError(.assumeRoleFailed, "AssumeRoleWithWebIdentity answered without credentials")
        }
        var expiration: Date?
        if let text = credentials.string("Expiration") {
            guard let date = AWSTimestamp.parse(text) else {
                throw CredentialsError(
                    .assumeRoleFailed, "AssumeRoleWithWebIdentity answered an Expiration that is not ISO 8601")
            }
            expiration = date
        }
        logger.debug("credentials from a web identity", metadata: ["aws.role_arn": "\(self.roleARN)"])
        return AWSCredentials(
            accessKeyID: key, secretAccessKey: secret, sessionToken: credentials.string("SessionToken"),
            expiration: expiration)
    }
}

/// IAM Identity Center (SSO): the access token `aws sso login` cached under
/// `~/.aws/sso/cache/<sha1>.json` (of the `sso_session` name, or of the legacy
/// `sso_start_url`), exchanged at the portal's `GetRoleCredentials` for the profile's
/// `sso_account_id` and `sso_role_name`. An expired token says "run aws sso login".
/// `AWS_ENDPOINT_URL_SSO` moves the portal (tests use a loopback emulator). The access token
/// is not refreshed here (the CLI refreshes it at `aws sso login`): SSO suits workers run by
/// a person for a working day, not a fleet; give a fleet a role.
public struct SSOCredentialsProvider: CredentialsProvider {
    public var accountID: String
    public var roleName: String
    public var region: String
    /// The cache key: the `sso_session` name, else the start URL.
    public var cacheKey: String
    public var cacheDirectory: URL
    public var portal: URL
    let httpClient: HTTPClient

    public init(
        accountID: String, roleName: String, region: String, cacheKey: String, cacheDirectory: URL, portal: URL?,
        httpClient: HTTPClient
    ) {
        self.accountID = accountID
        self.roleName = roleName
        self.region = region
        self.cacheKey = cacheKey
        self.cacheDirectory = cacheDirectory
        self.portal = portal ?? URL(string: "https://portal.sso.\(region).amazonaws.com")!
        self.httpClient = httpClient
    }

    /// The cached token's file name: the SHA-1 of the key, in hex, as the AWS CLI writes it.
    public static func cacheFileName(_ key: String) -> String {
        Insecure.SHA1.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined() + ".json"
    }

    public func resolveCredentials(logger: Logger) async throws -> AWSCredentials {
        struct Cached: Decodable {
            var accessToken: String?
            var expiresAt: String?
        }
        let file = self.cacheDirectory.appendingPathComponent(Self.cacheFileName(self.cacheKey))
        guard let data = FileManager.default.contents(atPath: file.path),
            let cached = try? JSONDecoder().decode(Cached.self, from: data), let token = cached.accessToken,
            !token.isEmpty
        else {
            throw CredentialsError(.notFound, "no cached SSO token for \(self.cacheKey): run aws sso login")
        }
        if let expiry = cached.expiresAt.flatMap(AWSTimestamp.parse), expiry <= Date() {
            throw CredentialsError(
                .expired, "the SSO token for \(self.cacheKey) expired at \(cached.expiresAt ?? "?"): run aws sso login")
        }
        var components = URLComponents(
            url: self.portal.appendingPathComponent("federation/credentials"), resolvingAgainstBaseURL: false)!
        components.queryItems = [
            URLQueryItem(name: "role_name", value: self.roleName),
            URLQueryItem(name: "account_id", value: self.accountID),
        ]
        let answer = try await credentialsRequest(
            self.httpClient, .GET, components.url!.absoluteString,
            headers: [("x-amz-sso_bearer_token", token)], timeout: .seconds(30),
            source: "the SSO portal")
        guard answer.status == 200 else {
            throw CredentialsError(
                answer.status == 401 ? .expired : .notFound,
                "the SSO portal refused GetRoleCredentials for \(self.roleName) in \(self.accountID) "
                    + "(HTTP \(answer.status))\(answer.status == 401 ? ": run aws sso login" : "")")
        }
        struct Answer: Decodable {
            struct Role: Decodable {
                var accessKeyId: String
                var secretAccessKey: String
                var sessionToken: String?
                var expiration: Double?
            }
            var roleCredentials: Role
        }
        guard let role = try? JSONDecoder().decode(Answer.self, from: answer.body).roleCredentials else {
            throw CredentialsError(
                .invalidConfiguration, "the SSO portal answered something that is not role credentials")
        }
        logger.debug("credentials from SSO", metadata: ["aws.role": "\(self.roleName)"])
        return AWSCredentials(
            accessKeyID: role.accessKeyId, secretAccessKey: role.secretAccessKey, sessionToken: role.sessionToken,
            expiration: role.expiration.map { Date(timeIntervalSince1970: $0 / 1000) })
    }
}
