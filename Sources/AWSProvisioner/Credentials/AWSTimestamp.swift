import Foundation

/// Parses the ISO 8601 timestamps AWS sends (`2026-11-25T12:45:07Z`,
/// `2026-11-25T12:45:07.526257Z`, `+00:00` offsets): 0 to 9 fractional digits.
enum AWSTimestamp {
    static func parse(_ text: String) -> Date? {
        let text = text.trimmingWhitespace()
        let scalars = Array(text.unicodeScalars)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= scalars.count else { return nil }
            var value = 0
            for scalar in scalars[range] {
                guard scalar.value >= 48, scalar.value <= 57 else { return nil }
                let digit = Int(scalar.value - 48)
                value = value * 10 + digit
            }
            return value
        }
        guard scalars.count >= 19,
            let year = number(0..<4), scalars[4] == "-", let month = number(5..<7), scalars[7] == "-",
            let day = number(8..<10), scalars[10] == "T" || scalars[10] == "t" || scalars[10] == " ",
            let hour = number(11..<13), scalars[13] == ":", let minute = number(14..<16), scalars[16] == ":",
            let second = number(17..<19)
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < scalars.count, scalars[index] == "." {
            index += 1
            var scale = 0.1
            while index < scalars.count, let digit = number(index..<(index + 1)) {
                fraction += Double(digit) * scale
                scale /= 10
                index += 1
            }
        }
        var offsetSeconds = 0
        if index < scalars.count {
            switch scalars[index] {
            case "Z", "z":
                index += 1
            case "+", "-":
                let sign = scalars[index] == "-" ? -1 : 1
                guard let hours = number((index + 1)..<(index + 3)) else { return nil }
                var minutes = 0
                if index + 3 < scalars.count, scalars[index + 3] == ":" {
                    guard let m = number((index + 4)..<(index + 6)) else { return nil }
                    minutes = m
                    index += 6
                } else if let m = number((index + 3)..<(index + 5)) {
                    minutes = m
                    index += 5
                } else {
                    index += 3
                }
                offsetSeconds = sign * (hours * 3600 + minutes * 60)
            default:
                return nil
            }
        }
        guard index == scalars.count else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        guard let date = calendar.date(from: components) else { return nil }
        return date.addingTimeInterval(fraction - TimeInterval(offsetSeconds))
    }
}
