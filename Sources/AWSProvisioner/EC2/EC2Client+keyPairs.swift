import Foundation

extension EC2Client {
    /// Imports a public key under `name`.
    /// - Parameter publicKey: the OpenSSH line, e.g. `ssh-ed25519 AAAA… comment`; it is sent
    ///   base64-encoded as the API requires.
    /// - Throws: `EC2Error` with code `InvalidKeyPair.Duplicate` if the name exists.
    public func importKeyPair(name: String, publicKey: String, tags: [EC2Tag] = [], dryRun: Bool = false) async throws
        -> EC2KeyPair
    {
        var parameters = EC2QueryParameters()
        parameters.add("KeyName", name)
        parameters.add("PublicKeyMaterial", Data(publicKey.utf8).base64EncodedString())
        parameters.addTagSpecification(for: "key-pair", tags)
        if dryRun { parameters.add("DryRun", true) }
        let root = try await send("ImportKeyPair", parameters)
        var keyPair = EC2KeyPair(xml: root)
        if keyPair.tags.isEmpty { keyPair.tags = tags }
        return keyPair
    }

    /// Key pairs by name and/or filter; all key pairs when both are empty.
    /// - Throws: `EC2Error` `InvalidKeyPair.NotFound` when a named key does not exist.
    public func describeKeyPairs(names: [String] = [], filters: [EC2Filter] = [], includePublicKey: Bool = false)
        async throws -> [EC2KeyPair]
    {
        var parameters = EC2QueryParameters()
        parameters.addList("KeyName", names)
        parameters.addFilters(filters)
        if includePublicKey { parameters.add("IncludePublicKey", true) }
        let root = try await send("DescribeKeyPairs", parameters)
        return root.items("keySet").map(EC2KeyPair.init(xml:))
    }

    /// Deletes a key pair. Deleting a name that does not exist succeeds, as in AWS.
    public func deleteKeyPair(name: String) async throws {
        var parameters = EC2QueryParameters()
        parameters.add("KeyName", name)
        _ = try await send("DeleteKeyPair", parameters)
    }
}
