import Crypto
import Foundation

/// Signs requests with AWS Signature Version 4 (`AWS4-HMAC-SHA256`, signature in the
/// `Authorization` header, payload hashed — never `UNSIGNED-PAYLOAD`).
///
/// It follows the rules of the AWS SigV4 test suite: header names lower-cased, values
/// trimmed with inner runs of whitespace folded to one space, repeated headers joined with
/// commas, the path normalised (dot segments and repeated slashes removed) and
/// percent-encoded per RFC 3986, query parameters sorted by encoded name then value.
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String

    /// Headers that proxies and clients change in transit and that AWS's own SDKs leave unsigned.
    static let unsignedHeaders: Set<String> = [
        "authorization", "user-agent", "expect", "x-amzn-trace-id", "content-length",
    ]

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// Adds `X-Amz-Date`, `X-Amz-Security-Token` (for temporary credentials) and
    /// `Authorization` to `request`.
    public func sign(_ request: inout SigV4Request, date: Date) {
        let timestamp = Self.timestamp(date)
        request.setHeader("X-Amz-Date", timestamp)
        if let token = credentials.sessionToken {
            request.setHeader("X-Amz-Security-Token", token)
        }
        let canonical = canonicalRequest(request)
        let toSign = stringToSign(canonicalRequest: canonical, date: date)
        let signature = self.signature(stringToSign: toSign, date: date)
        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(date)), "
            + "SignedHeaders=\(signedHeaderNames(request).joined(separator: ";")), Signature=\(signature)"
        request.setHeader("Authorization", authorization)
    }

    /// The canonical request (task 1 of SigV4), exposed for conformance tests.
    public func canonicalRequest(_ request: SigV4Request) -> String {
        let headers = canonicalHeaders(request)
        return [
            request.method.uppercased(),
            Self.canonicalPath(request.path),
            Self.canonicalQuery(request.query),
            headers.map { "\($0.name):\($0.value)\n" }.joined(),
            headers.map(\.name).joined(separator: ";"),
            Self.hexSHA256(request.body),
        ].joined(separator: "\n")
    }

    /// The string to sign (task 2 of SigV4).
    public func stringToSign(canonicalRequest: String, date: Date) -> String {
        [
            "AWS4-HMAC-SHA256",
            Self.timestamp(date),
            scope(date),
            Self.hexSHA256(Array(canonicalRequest.utf8)),
        ].joined(separator: "\n")
    }

    /// The hex signature of `stringToSign` (task 3 of SigV4).
    public func signature(stringToSign: String, date: Date) -> String {
        var key = SymmetricKey(data: Array("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [Self.day(date), region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        let mac = HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key)
        return Self.hex(mac)
    }

    func scope(_ date: Date) -> String {
        "\(Self.day(date))/\(region)/\(service)/aws4_request"
    }

    private func signedHeaderNames(_ request: SigV4Request) -> [String] {
        canonicalHeaders(request).map(\.name)
    }

    private func canonicalHeaders(_ request: SigV4Request) -> [(name: String, value: String)] {
        var merged: [String: [String]] = [:]
        for header in request.headers {
            let name = header.name.lowercased()
            guard !Self.unsignedHeaders.contains(name) else { continue }
            merged[name, default: []].append(Self.foldWhitespace(header.value))
        }
        return merged.keys.sorted().map { ($0, merged[$0]!.joined(separator: ",")) }
    }

    /// Trims the value and folds every run of whitespace (including line folding) to one space.
    static func foldWhitespace(_ value: String) -> String {
        var result = ""
        var pendingSpace = false
        for character in value {
            if character.isWhitespace {
                pendingSpace = !result.isEmpty
            } else {
                if pendingSpace { result.append(" ") }
                pendingSpace = false
                result.append(character)
            }
        }
        return result
    }

    /// Removes `.` and `..` segments and empty segments, keeps a trailing slash, and
    /// percent-encodes each segment.
    static func canonicalPath(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        var result = "/" + segments.map { uriEncode(String($0)) }.joined(separator: "/")
        if !segments.isEmpty && path.hasSuffix("/") { result += "/" }
        return result
    }

    static func canonicalQuery(_ items: [SigV4Request.QueryItem]) -> String {
        let encoded: [(name: String, value: String)] = items.map { (uriEncode($0.name), uriEncode($0.value)) }
        let sorted = encoded.sorted { lhs, rhs in
            lhs.name == rhs.name ? lhs.value < rhs.value : lhs.name < rhs.name
        }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }

    /// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - _ . ~` is encoded, as UTF-8
    /// bytes with upper-case hex digits.
    public static func uriEncode(_ value: String) -> String {
        var result = ""
        result.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            if isUnreserved(byte) {
                result.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                result += "%" + hexByte(byte).uppercased()
            }
        }
        return result
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x41...0x5A, 0x61...0x7A, 0x30...0x39: true // A-Z a-z 0-9
        case 0x2D, 0x5F, 0x2E, 0x7E: true // - _ . ~
        default: false
        }
    }

    static func hexSHA256(_ bytes: [UInt8]) -> String {
        hex(SHA256.hash(data: bytes))
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map(hexByte).joined()
    }

    private static func hexByte(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    static func timestamp(_ date: Date) -> String {
        let c = utcComponents(date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    static func day(_ date: Date) -> String {
        String(timestamp(date).prefix(8))
    }

    private static func utcComponents(_ date: Date) -> DateComponents {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
    }
}
