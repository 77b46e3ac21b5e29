import ArgumentParser
import CommandOptions
import Foundation
import Queue
import Synchronization
import Timing

/// Refuses, before anything is recorded, a file path that cannot be written: its folder
/// must exist and be writable, and the path must not be a folder.
func checkWritable(_ path: String, option: String) throws {
    let url = URL(fileURLWithPath: path)
    let folder = url.deletingLastPathComponent().path
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
        throw ValidationError("\(option) \(path): the folder \(folder) does not exist")
    }
    guard access(folder, W_OK | X_OK) == 0 else {
        throw ValidationError("\(option) \(path): the folder \(folder) is not writable")
    }
    if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
        throw ValidationError("\(option) \(path) is a folder; give a file path")
    }
}

/// What a command became responsible for (a recorded request), shared with its clean-up.
final class Responsibility: Sendable {
    private let value = Mutex<(id: String, token: String)?>(nil)
    func set(_ id: String, _ token: String) { self.value.withLock { $0 = (id, token) } }
    var current: (id: String, token: String)? { self.value.withLock { $0 } }
}

struct DeadlinePassed: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "no answer within \(limit)" }
}

/// `body`, or ``DeadlinePassed`` once `limit` has passed.
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    guard let value = try await withTimeout(limit, body) else { throw DeadlinePassed(limit: limit) }
    return value
}

/// The exit status and the words for an error a command gives up on: 128 + the signal's
/// number for SIGINT/SIGTERM, else 1.
func givingUp(_ error: any Error) -> (status: Int32, why: String) {
    switch error {
    case let signalled as Signalled:
        return (128 + signalled.signal, signalled.signal == SIGINT ? "interrupted" : "terminated")
    case let error as QueueError:
        return (1, error.message)
    default:
        return (1, DatabaseErrorDescription.describe(error))
    }
}

/// Releases a cluster the command was responsible for, bounded (with the database gone, the
/// server's deadline takes over), and says on standard error what happened and why.
func releaseAfterGivingUp(_ id: String, _ token: String, why: String, store: ClusterAPI, note: String? = nil) async {
    do {
        let state = try await withDeadline(.seconds(20)) { try await store.release(clusterID: id, leaseToken: token) }
        FileHandle.standardError.write(
            Data("client: \(why); released cluster \(id) (it is \(state) now\(note.map { "; \($0)" } ?? ""))\n".utf8))
    } catch let error as QueueError where error.code == .notFound {
        FileHandle.standardError.write(Data("client: \(why); nothing was recorded\n".utf8))
    } catch {
        let message =
            "client: \(why); could not release cluster \(id) (\(DatabaseErrorDescription.describe(error))): "
            + "the server gives it up at its deadline\n"
        FileHandle.standardError.write(Data(message.utf8))
    }
}
