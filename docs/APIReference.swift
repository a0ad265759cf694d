// The API reference of this folder (openapi.yaml), embedded into the binary
// at build time (SwiftPM `.embedInCode`), served by every gateway as
// /openapi.yaml, /openapi.json and /docs (HTML rendered here, no scripts).

import Foundation
import Yams

/// A JSON value that keeps the order of object keys as written in the YAML.
public indirect enum SpecValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([SpecValue])
    case object([(String, SpecValue)])

    public static func == (lhs: SpecValue, rhs: SpecValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a.map(\.0) == b.map(\.0) && a.map(\.1) == b.map(\.1)
        default: return false
        }
    }

    public subscript(key: String) -> SpecValue? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }

    public var string: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    public var int: Int? {
        if case .int(let value) = self { return value }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var array: [SpecValue] {
        if case .array(let items) = self { return items }
        return []
    }

    public var pairs: [(String, SpecValue)] {
        if case .object(let pairs) = self { return pairs }
        return []
    }

    /// Compact JSON, keys in their YAML order.
    public var json: String {
        var out = ""
        self.write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .int(let value): out += String(value)
        case .double(let value): out += value.isFinite ? String(value) : "null"
        case .string(let text): Self.quote(text, into: &out)
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let pairs):
            out += "{"
            for (index, (key, value)) in pairs.enumerated() {
                if index > 0 { out += "," }
                Self.quote(key, into: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ text: String, into out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// The YAML document as JSON values: plain scalars become what YAML 1.1
    /// core schema resolves them to (null, bool, int, float), everything else
    /// (quoted scalars, timestamps) stays a string.
    public static func parse(yaml: String) throws -> SpecValue {
        guard let node = try Yams.compose(yaml: yaml) else { throw SpecError("the document is empty") }
        return try Self.value(of: node)
    }

    private static func value(of node: Node) throws -> SpecValue {
        switch node {
        case .scalar(let scalar):
            guard scalar.style == .plain || scalar.style == .any else { return .string(scalar.string) }
            switch node.tag.description {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(SpecValue.bool) ?? .string(scalar.string)
            case Tag.Name.int.rawValue: return node.int.map(SpecValue.int) ?? .string(scalar.string)
            case Tag.Name.float.rawValue: return node.float.map(SpecValue.double) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence(let sequence):
            return .array(try sequence.map(Self.value(of:)))
        case .mapping(let mapping):
            var pairs: [(String, SpecValue)] = []
            for (key, value) in mapping {
                guard let name = key.scalar?.string else { throw SpecError("a mapping key that is not a scalar at line \(key.mark?.line ?? 0)") }
                if pairs.contains(where: { $0.0 == name }) { throw SpecError("duplicate key \(name) at line \(key.mark?.line ?? 0)") }
                pairs.append((name, try Self.value(of: value)))
            }
            return .object(pairs)
        case .alias:
            throw SpecError("aliases are not used in the reference")
        }
    }
}

public struct SpecError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// One operation of the reference.
public struct SpecOperation: Sendable, Equatable {
    public let method: String
    public let path: String
    public let value: SpecValue
}

/// Parley's API reference.
public struct APIReference: Sendable {
    /// The embedded docs/openapi.yaml.
    public static let yaml = String(decoding: PackageResources.openapi_yaml, as: UTF8.self)
    public static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    public let spec: SpecValue

    public init(yaml: String = APIReference.yaml) throws {
        self.spec = try SpecValue.parse(yaml: yaml)
    }

    /// Every operation, in the order of the document.
    public var operations: [SpecOperation] {
        self.spec["paths"]?.pairs.flatMap { path, item in
            item.pairs.filter { Self.methods.contains($0.0) }.map { SpecOperation(method: $0.0.uppercased(), path: path, value: $0.1) }
        } ?? []
    }

    /// The schema a `$ref` names, for refs inside this document.
    public func resolve(_ value: SpecValue) -> SpecValue {
        var current = value
        var seen = 0
        while let ref = current["$ref"]?.string, seen < 16 {
            guard ref.hasPrefix("#/") else { return current }
            var target: SpecValue? = self.spec
            for part in ref.dropFirst(2).split(separator: "/") {
                let key = String(part).replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                target = target?[key]
            }
            guard let found = target else { return current }
            current = found
            seen += 1
        }
        return current
    }
}
