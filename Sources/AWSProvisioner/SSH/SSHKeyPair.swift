import Crypto
import Foundation

/// An Ed25519 key pair made here, for one cluster: the public half is imported into EC2
/// (which installs it on every instance), the private half goes to the lease holder.
///
/// `description` never shows the private key.
public struct SSHKeyPair: Sendable, Hashable, CustomStringConvertible {
    /// The `ssh-ed25519 AAAA… comment` line.
    public let publicKeyLine: String
    /// The private key in OpenSSH's `openssh-key-v1` format (unencrypted), as `ssh -i` reads it.
    public let privateKeyPEM: String

    public init(publicKeyLine: String, privateKeyPEM: String) {
        self.publicKeyLine = publicKeyLine
        self.privateKeyPEM = privateKeyPEM
    }

    /// Generates a new key pair; `comment` ends up in the public key line.
    public static func generate(comment: String) -> SSHKeyPair {
        let key = Curve25519.Signing.PrivateKey()
        return SSHKeyPair(key: key, comment: comment, checkValue: UInt32.random(in: 0 ... .max))
    }

    init(key: Curve25519.Signing.PrivateKey, comment: String, checkValue: UInt32) {
        let publicKey = key.publicKey.rawRepresentation
        var publicBlob = SSHWireWriter()
        publicBlob.string("ssh-ed25519")
        publicBlob.string(publicKey)
        self.publicKeyLine = "ssh-ed25519 \(publicBlob.bytes.base64EncodedString()) \(comment)"

        var secret = SSHWireWriter()
        secret.uint32(checkValue)
        secret.uint32(checkValue)
        secret.string("ssh-ed25519")
        secret.string(publicKey)
        secret.string(key.rawRepresentation + publicKey) // seed ‖ public key, as OpenSSH stores it
        secret.string(comment)
        var pad: UInt8 = 1
        while secret.bytes.count % 8 != 0 {
            secret.bytes.append(pad)
            pad += 1
        }

        var file = SSHWireWriter()
        file.bytes.append(contentsOf: Array("openssh-key-v1".utf8) + [0])
        file.string("none") // cipher
        file.string("none") // kdf
        file.string(Data()) // kdf options
        file.uint32(1) // one key
        file.string(publicBlob.bytes)
        file.string(secret.bytes)
        let body = file.bytes.base64EncodedString()
        var lines = ["-----BEGIN OPENSSH PRIVATE KEY-----"]
        var index = body.startIndex
        while index < body.endIndex {
            let end = body.index(index, offsetBy: 70, limitedBy: body.endIndex) ?? body.endIndex
            lines.append(String(body[index..<end]))
            index = end
        }
        lines.append("-----END OPENSSH PRIVATE KEY-----")
        self.privateKeyPEM = lines.joined(separator: "\n") + "\n"
    }

    /// The public key line without its comment (`ssh-ed25519 AAAA…`), for comparing keys.
    public var publicKeyBody: String {
        self.publicKeyLine.split(separator: " ").prefix(2).joined(separator: " ")
    }

    public var description: String { "SSHKeyPair(\(self.publicKeyBody), private key redacted)" }
}

/// SSH's wire encoding: big-endian lengths before byte strings.
struct SSHWireWriter {
    var bytes = Data()

    mutating func uint32(_ value: UInt32) {
        withUnsafeBytes(of: value.bigEndian) { self.bytes.append(contentsOf: $0) }
    }

    mutating func string(_ value: Data) {
        self.uint32(UInt32(value.count))
        self.bytes.append(value)
    }

    mutating func string(_ value: String) { self.string(Data(value.utf8)) }
}
