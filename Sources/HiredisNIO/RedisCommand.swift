public import NIOCore

/// One argument of a command: text or raw bytes (binary-safe).
public enum RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case bytes(ByteBuffer)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .string(String(value)) }
    public init(_ value: String) { self = .string(value) }
    public init(_ value: some BinaryInteger) { self = .string(String(value)) }
    public init(_ value: ByteBuffer) { self = .bytes(value) }
    public init(_ value: [UInt8]) { self = .bytes(ByteBuffer(bytes: value)) }
}

/// A command and its arguments, e.g. `RedisCommand("SET", ["k", "v"])`.
public struct RedisCommand: Sendable, Hashable {
    public var arguments: [RedisArgument]

    public init(_ name: String, _ arguments: [RedisArgument] = []) {
        self.arguments = [.string(name)] + arguments
    }

    public var name: String {
        if case .string(let s) = self.arguments.first { return s.uppercased() }
        return ""
    }
}
