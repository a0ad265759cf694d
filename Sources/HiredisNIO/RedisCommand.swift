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

// Typed constructors for commands that go into pipelines (the executor's
// methods of the same names send one at once).
extension RedisCommand {
    /// PUBLISH channel message; the reply is the number of receivers.
    public static func publish(_ channel: String, _ message: RedisArgument) -> RedisCommand {
        RedisCommand("PUBLISH", [.string(channel), message])
    }

    /// SPUBLISH shardchannel message (Redis 7 sharded pub/sub): heard by the
    /// subscribers of the master that owns the channel's slot; the reply is
    /// the number of receivers there.
    public static func spublish(_ channel: String, _ message: RedisArgument) -> RedisCommand {
        RedisCommand("SPUBLISH", [.string(channel), message])
    }

    /// XADD stream [MAXLEN ~ maxLength] id field value …; the reply is the entry id.
    public static func xadd(_ stream: String, maxLength: Int? = nil, id: String = "*", fields: [(String, RedisArgument)]) -> RedisCommand {
        var arguments: [RedisArgument] = [.string(stream)]
        if let maxLength { arguments += ["MAXLEN", "~", RedisArgument(maxLength)] }
        arguments.append(.string(id))
        arguments += fields.flatMap { [RedisArgument.string($0.0), $0.1] }
        return RedisCommand("XADD", arguments)
    }
}
