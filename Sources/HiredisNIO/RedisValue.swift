public import NIOCore

/// One RESP2 reply.
///
/// Bulk strings are kept as bytes (`ByteBuffer`) because Redis values are
/// binary-safe; the typed accessors convert where it makes sense.
public enum RedisValue: Sendable, Hashable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    case bulkString(ByteBuffer)
    case null
    case array([RedisValue])
}

extension RedisValue {
    /// The value as text: simple strings, bulk strings (as UTF-8) and integers.
    public var string: String? {
        switch self {
        case .simpleString(let s): return s
        case .bulkString(let b): return String(buffer: b)
        case .integer(let i): return String(i)
        case .error, .null, .array: return nil
        }
    }

    /// The value as an integer: integer replies, and strings holding a decimal integer.
    public var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulkString, .simpleString: return self.string.flatMap { Int64($0) }
        case .error, .null, .array: return nil
        }
    }

    /// The raw bytes of a bulk or simple string.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let b): return Array(b.readableBytesView)
        case .simpleString(let s): return Array(s.utf8)
        case .integer, .error, .null, .array: return nil
        }
    }

    public var buffer: ByteBuffer? {
        if case .bulkString(let b) = self { return b }
        return nil
    }

    public var array: [RedisValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// `true` for the `+OK` status reply.
    public var isOK: Bool {
        if case .simpleString("OK") = self { return true }
        return false
    }
}

extension RedisValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let s): return s
        case .error(let e): return "(error) \(e)"
        case .integer(let i): return "(integer) \(i)"
        case .bulkString(let b): return "\"\(String(buffer: b))\""
        case .null: return "(nil)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
