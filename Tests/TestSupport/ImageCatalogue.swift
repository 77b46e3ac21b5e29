import Foundation
import Synchronization

/// The emulator's image catalogue (FLOTILLA_TEST_IMAGE_CATALOGUE, read by
/// scripts/fixtures/moto-server.py at every answer): what it says of an image beyond moto's
/// own answer.
package enum ImageCatalogue {
    package struct Missing: Error, CustomStringConvertible {
        package var description: String { "FLOTILLA_TEST_IMAGE_CATALOGUE is not set: run through ./scripts/test" }
    }

    private static let lock = Mutex(())

    /// Sets what the emulator says of `image`: its `imdsSupport` and `enaSupport`, the
    /// cloud-init the loopback nodes' key lookup takes it to have (default 18.5), and whether
    /// it is a Marketplace product this account subscribed to. Replaces the image's entry;
    /// use an image no other test names.
    package static func describe(
        _ image: String, imdsSupport: String? = nil, enaSupport: Bool? = nil, cloudInit: String? = nil,
        marketplace: (productCode: String, subscribed: Bool)? = nil, sshUser: String? = nil
    ) throws {
        guard let path = ProcessInfo.processInfo.environment["FLOTILLA_TEST_IMAGE_CATALOGUE"] else {
            throw Missing()
        }
        try Self.lock.withLock { _ in
            let file = URL(fileURLWithPath: path)
            var catalogue =
                (try? JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any]) ?? [:]
            var entry: [String: Any] = [:]
            if let imdsSupport { entry["imds_support"] = imdsSupport }
            if let enaSupport { entry["ena_support"] = enaSupport }
            if let cloudInit { entry["cloud_init"] = cloudInit }
            // The login its cloud-init makes: the loopback nodes' key lookup accepts only that one.
            if let sshUser { entry["ssh_user"] = sshUser }
            if let marketplace {
                entry["marketplace"] = ["product_code": marketplace.productCode, "subscribed": marketplace.subscribed]
            }
            catalogue[image] = entry
            let temporary = file.appendingPathExtension(UUID().uuidString)
            try JSONSerialization.data(withJSONObject: catalogue).write(to: temporary)
            guard rename(temporary.path, file.path) == 0 else { throw POSIXError(.EIO) }
        }
    }
}
