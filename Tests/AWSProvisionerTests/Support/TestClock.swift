import Foundation
import Synchronization

/// Wall-clock time plus an offset the test moves forward: lets credential-expiry tests
/// jump minutes ahead without waiting.
final class TestClock: Sendable {
    private let offset = Mutex<TimeInterval>(0)

    func advance(by seconds: TimeInterval) {
        offset.withLock { $0 += seconds }
    }

    var now: @Sendable () -> Date {
        { [self] in Date().addingTimeInterval(offset.withLock { $0 }) }
    }
}
