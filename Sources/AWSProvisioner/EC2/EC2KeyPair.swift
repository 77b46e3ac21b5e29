/// A key pair as `ImportKeyPair` and `DescribeKeyPairs` report it. Fingerprints are opaque.
public struct EC2KeyPair: Sendable, Hashable {
    public var keyName: String
    public var keyPairID: String?
    public var fingerprint: String?
    public var keyType: String?
    /// The public key (`ssh-ed25519 …`), when asked for with `includePublicKey`.
    public var publicKey: String?
    public var tags: [EC2Tag]

    init(xml: XMLNode) {
        keyName = xml.string("keyName") ?? ""
        keyPairID = xml.string("keyPairId")
        fingerprint = xml.string("keyFingerprint")
        keyType = xml.string("keyType")
        publicKey = xml.string("publicKey")
        tags = EC2Tag.list(xml)
    }
}
