public import NIOCore

/// A node of a Redis Cluster, by the address clients reach it at.
public struct RedisNodeAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, `[v6]:port`, or `v6-address:port` (the last colon separates the port).
    init?(_ text: Substring) {
        var rest = text
        var host: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            rest = rest.dropFirst()
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            host = rest[..<colon]
            rest = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(rest), (1...65535).contains(port) else { return nil }
        self.init(host: String(host), port: port)
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// Key slots of Redis Cluster: CRC16 (XMODEM) of the key, or of its hash tag
/// (the part between the first `{` and the next `}`, when not empty), modulo 16384.
public enum ClusterSlot {
    public static let count = 16384

    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { Self.of(bytes: $0) }
    }

    public static func of(_ key: ByteBuffer) -> Int {
        key.withUnsafeReadableBytes { Self.of(bytes: UnsafeBufferPointer(start: $0.baseAddress?.assumingMemoryBound(to: UInt8.self), count: $0.count)) }
    }

    static func of(bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var hashed = bytes[...]
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
           let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            hashed = bytes[(open + 1)..<close]
        }
        return Int(Self.crc16(hashed) & 0x3FFF)
    }

    /// CRC-16/XMODEM (polynomial 0x1021, initial value 0), as Redis computes it.
    static func crc16(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes { crc = (crc << 8) ^ Self.table[Int((crc >> 8) ^ UInt16(byte)) & 0xFF] }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

extension RedisArgument {
    var slot: Int {
        switch self {
        case .string(let text): return ClusterSlot.of(text)
        case .bytes(let bytes): return ClusterSlot.of(bytes)
        }
    }
}

extension RedisCommand {
    /// Where a command must run in a cluster.
    enum Route: Equatable {
        /// Any node can answer (no key: PING, SCRIPT LOAD, classic PUBLISH).
        case anyNode
        case slot(Int)
    }

    /// The arguments that are keys (or, for SPUBLISH/SSUBSCRIBE, shard channels).
    var keyArguments: ArraySlice<RedisArgument> {
        let arguments = self.arguments.dropFirst()
        switch self.name {
        case "PING", "ECHO", "SCRIPT", "INFO", "CLUSTER", "TIME", "PUBLISH", "ASKING", "READONLY", "AUTH", "SELECT", "HELLO", "CLIENT", "COMMAND", "DBSIZE", "FLUSHALL", "FLUSHDB":
            return []
        case "DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SSUBSCRIBE", "SUNSUBSCRIBE":
            return arguments
        case "MSET", "MSETNX":
            return ArraySlice(arguments.enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            guard arguments.count >= 2, let count = Int(arguments[arguments.startIndex + 1].text ?? ""), count >= 0 else { return [] }
            return arguments.dropFirst(2).prefix(count)
        case "XGROUP", "XINFO", "OBJECT", "MEMORY":
            return arguments.dropFirst().prefix(1)
        case "XREAD", "XREADGROUP":
            guard let streams = arguments.firstIndex(where: { $0.text?.uppercased() == "STREAMS" }) else { return [] }
            let rest = arguments[(streams + 1)...]
            return rest.prefix(rest.count / 2)
        default:
            // Most commands take their key first; a command this table does
            // not know and that has its key elsewhere is redirected by MOVED.
            return arguments.prefix(1)
        }
    }

    /// The slot every key of this command hashes to; throws `crossSlot` when they differ.
    func route() throws(RedisError) -> Route {
        let keys = self.keyArguments
        guard let first = keys.first else { return .anyNode }
        let slot = first.slot
        for key in keys.dropFirst() where key.slot != slot {
            throw RedisError(.crossSlot, "\(self.name): keys in different cluster slots (use one hash tag, like {chat}:a and {chat}:b)")
        }
        return .slot(slot)
    }
}

extension RedisArgument {
    var text: String? {
        switch self {
        case .string(let text): return text
        case .bytes(let bytes): return String(buffer: bytes)
        }
    }
}

/// A redirection Redis Cluster answered with: `MOVED slot host:port` (the
/// slot lives there now) or `ASK slot host:port` (ask there once, after ASKING).
struct ClusterRedirect: Equatable {
    enum Kind: Equatable { case moved, ask }
    var kind: Kind
    var slot: Int
    var node: RedisNodeAddress

    init(kind: Kind, slot: Int, node: RedisNodeAddress) {
        self.kind = kind
        self.slot = slot
        self.node = node
    }

    init?(error message: String) {
        let words = message.split(separator: " ")
        guard words.count == 3, let slot = Int(words[1]), (0..<ClusterSlot.count).contains(slot) else { return nil }
        switch words[0] {
        case "MOVED": self.kind = .moved
        case "ASK": self.kind = .ask
        default: return nil
        }
        // Redis 7 sends ":port" when it does not know the node's endpoint: the host is the asked one's
        if words[2].hasPrefix(":"), let port = Int(words[2].dropFirst()), (1...65535).contains(port) {
            self.node = RedisNodeAddress(host: "", port: port)
        } else if let node = RedisNodeAddress(words[2]) {
            self.node = node
        } else {
            return nil
        }
        self.slot = slot
    }

    init?(_ value: RedisValue) {
        guard case .error(let message) = value else { return nil }
        self.init(error: message)
    }
}

/// Which master serves each slot, and who replicates it: read from
/// `CLUSTER SHARDS` (Redis 7).
struct ClusterTopology: Equatable {
    struct Shard: Equatable {
        var slots: [ClosedRange<Int>]
        var master: RedisNodeAddress
        var replicas: [RedisNodeAddress]
    }

    var shards: [Shard]
    /// slot → index in `shards`, or -1 while no master serves it.
    private var owners: [Int16]

    init(shards: [Shard]) {
        self.shards = shards
        self.owners = Array(repeating: -1, count: ClusterSlot.count)
        for (index, shard) in shards.enumerated() {
            for range in shard.slots where range.lowerBound >= 0 && range.upperBound < ClusterSlot.count {
                for slot in range { self.owners[slot] = Int16(index) }
            }
        }
    }

    func master(of slot: Int) -> RedisNodeAddress? {
        let index = self.owners[slot]
        return index < 0 ? nil : self.shards[Int(index)].master
    }

    var masters: [RedisNodeAddress] { self.shards.map(\.master) }
    var nodes: [RedisNodeAddress] { self.shards.flatMap { [$0.master] + $0.replicas } }
    var coversEverySlot: Bool { !self.owners.contains(-1) }

    /// Parses a `CLUSTER SHARDS` reply (RESP2: each shard and node a flat
    /// list of names and values). Shards whose master is not online are
    /// left out: their slots have no owner until a replica takes over.
    static func parse(shards reply: RedisValue) throws(RedisError) -> ClusterTopology {
        guard case .array(let items) = reply else { throw RedisError(.unexpectedReply, "CLUSTER SHARDS: expected an array, got \(reply)") }
        var shards: [Shard] = []
        for item in items {
            let shard = Self.fields(item)
            guard let flat = shard["slots"]?.array, let nodes = shard["nodes"]?.array else {
                throw RedisError(.unexpectedReply, "CLUSTER SHARDS: a shard without slots or nodes")
            }
            var slots: [ClosedRange<Int>] = []
            var index = 0
            while index + 1 < flat.count {
                guard let low = flat[index].int, let high = flat[index + 1].int, low <= high else {
                    throw RedisError(.unexpectedReply, "CLUSTER SHARDS: bad slot range")
                }
                slots.append(Int(low)...Int(high))
                index += 2
            }
            var master: RedisNodeAddress?
            var replicas: [RedisNodeAddress] = []
            for node in nodes {
                let fields = Self.fields(node)
                guard let address = Self.address(fields), fields["health"]?.string == "online" else { continue }
                if fields["role"]?.string == "master" { master = address } else { replicas.append(address) }
            }
            if let master, !slots.isEmpty { shards.append(Shard(slots: slots.sorted { $0.lowerBound < $1.lowerBound }, master: master, replicas: replicas.sorted { $0.description < $1.description })) }
        }
        // every node lists the shards in an order of its own
        return ClusterTopology(shards: shards.sorted { $0.slots[0].lowerBound < $1.slots[0].lowerBound })
    }

    private static func fields(_ value: RedisValue) -> [String: RedisValue] {
        guard case .array(let flat) = value else { return [:] }
        var fields: [String: RedisValue] = [:]
        var index = 0
        while index + 1 < flat.count {
            if let name = flat[index].string { fields[name] = flat[index + 1] }
            index += 2
        }
        return fields
    }

    private static func address(_ fields: [String: RedisValue]) -> RedisNodeAddress? {
        guard let port = fields["port"]?.int, port > 0 else { return nil }
        let endpoint = fields["endpoint"]?.string ?? ""
        let host = endpoint.isEmpty || endpoint == "?" ? fields["ip"]?.string ?? "" : endpoint
        return host.isEmpty ? nil : RedisNodeAddress(host: host, port: Int(port))
    }
}
