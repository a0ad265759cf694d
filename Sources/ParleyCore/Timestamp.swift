public import Foundation

/// RFC 3339 UTC with milliseconds: 2026-11-21T10:04:05.123Z.
public enum Timestamp {
    static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    public static func format(_ date: Date) -> String { self.style.format(date) }

    /// An RFC 3339 timestamp (with or without fractional seconds, `Z` or an
    /// offset), years 1970–9999; nil for anything else.
    public static func parse(_ text: String) -> Date? {
        guard text.count <= 40 else { return nil }
        let date = (try? self.style.parse(text)) ?? (try? Date.ISO8601FormatStyle(timeZone: .gmt).parse(text))
        guard let date, date.timeIntervalSince1970 >= 0, date.timeIntervalSince1970 < 253_402_300_800 else { return nil }
        return date
    }
}
