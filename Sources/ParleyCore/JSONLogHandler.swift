public import Foundation
public import Logging

/// `PARLEY_LOG_FORMAT`: `text` (default: one readable line per event) or
/// `json` (one JSON object per line, for log collectors).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json

    public static let variable = "PARLEY_LOG_FORMAT"

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> LogFormat {
        try reader.choice(Self.variable, default: LogFormat.text)
    }
}

/// Writes each log event as one JSON object on one line:
/// `{"timestamp": "…Z", "level": "info", "label": "parley.serve", "message": "…", "source": "…", "metadata": {…}}`.
/// Metadata keeps its structure (nested dictionaries and arrays).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let write: @Sendable (Data) -> Void

    public init(label: String, write: @escaping @Sendable (Data) -> Void = { FileHandle.standardOutput.write($0) }) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: Any] = [
            "timestamp": Timestamp.format(Date()), "level": event.level.rawValue, "label": self.label, "message": event.message.description,
            "source": event.source,
        ]
        if let error = event.error { object["error"] = "\(error)" }
        let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
        if !merged.isEmpty { object["metadata"] = merged.mapValues(Self.json) }
        guard var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        data.append(0x0A)
        self.write(data)
    }

    static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let string): return string
        case .stringConvertible(let convertible): return convertible.description
        case .dictionary(let dictionary): return dictionary.mapValues(Self.json)
        case .array(let array): return array.map(Self.json)
        }
    }
}
