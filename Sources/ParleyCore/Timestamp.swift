public import Foundation

/// RFC 3339 UTC with milliseconds: 2026-11-21T10:04:05.123Z.
public enum Timestamp {
    static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    public static func format(_ date: Date) -> String { self.style.format(date) }
}
