import Foundation

/// A setting that is missing or malformed. Printed as one line naming the
/// setting; never includes the value of a secret.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public let setting: String
    public let problem: String

    public init(_ setting: String, _ problem: String) {
        self.setting = setting
        self.problem = problem
    }

    public var description: String { "configuration error: \(self.setting): \(self.problem)" }
}

/// Reads settings from a merged source: command-line flags win over
/// environment variables. Keys are the environment variable names.
public struct SettingsReader: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String]) {
        self.values = values
    }

    /// A trimmed, non-empty value, or nil.
    public func optional(_ name: String) -> String? {
        guard let raw = self.values[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !raw.isEmpty else { return nil }
        return raw
    }

    public func required(_ name: String, hint: String) throws(ConfigurationError) -> String {
        guard let value = self.optional(name) else { throw ConfigurationError(name, "missing (\(hint))") }
        return value
    }

    public func integer(_ name: String, default defaultValue: Int, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        try self.optionalInteger(name, range: range) ?? defaultValue
    }

    /// An integer in `range`, or nil when it is not set.
    public func optionalInteger(_ name: String, range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let raw = self.optional(name) else { return nil }
        guard let value = Int(raw) else { throw ConfigurationError(name, "must be an integer (got \"\(raw)\")") }
        guard range.contains(value) else {
            throw ConfigurationError(name, "must be between \(range.lowerBound) and \(range.upperBound) (got \(value))")
        }
        return value
    }

    /// One of a closed set of names (any case), or `defaultValue` when not set.
    public func choice<T: RawRepresentable & CaseIterable>(_ name: String, default defaultValue: T) throws(ConfigurationError) -> T
    where T.RawValue == String {
        guard let raw = self.optional(name) else { return defaultValue }
        if let value = T(rawValue: raw.lowercased()) { return value }
        let names = T.allCases.map(\.rawValue)
        let expected = names.count == 2 ? names.joined(separator: " or ") : "one of " + names.joined(separator: ", ")
        throw ConfigurationError(name, "must be \(expected) (got \"\(raw)\")")
    }

    public func boolean(_ name: String, default defaultValue: Bool) throws(ConfigurationError) -> Bool {
        guard let raw = self.optional(name)?.lowercased() else { return defaultValue }
        switch raw {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(name, "must be true or false (got \"\(raw)\")")
        }
    }
}
