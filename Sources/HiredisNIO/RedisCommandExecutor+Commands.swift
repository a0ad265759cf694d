public import NIOCore
import Synchronization

/// An entry of a stream.
public struct RedisStreamEntry: Sendable, Hashable {
    public var id: String
    public var fields: [String: ByteBuffer]

    public init(id: String, fields: [String: ByteBuffer]) {
        self.id = id
        self.fields = fields
    }

    public subscript(field: String) -> String? { self.fields[field].map { String(buffer: $0) } }

    static func parse(_ value: RedisValue) throws -> RedisStreamEntry? {
        // [id, [field, value, field, value, …]]; a deleted entry has a nil field list.
        guard case .array(let pair) = value, pair.count == 2, let id = pair[0].string else {
            throw RedisError(.unexpectedReply, "stream entry: \(value)")
        }
        guard case .array(let flat) = pair[1] else { return nil }
        var fields: [String: ByteBuffer] = [:]
        var index = 0
        while index + 1 < flat.count {
            if let name = flat[index].string { fields[name] = flat[index + 1].buffer ?? ByteBuffer(string: flat[index + 1].string ?? "") }
            index += 2
        }
        return RedisStreamEntry(id: id, fields: fields)
    }

    static func parseList(_ value: RedisValue) throws -> [RedisStreamEntry] {
        guard case .array(let items) = value else { return [] }
        return try items.compactMap(parse)
    }
}

/// A pending entry as `XPENDING key group - + count` reports it.
public struct RedisPendingEntry: Sendable, Hashable {
    public var id: String
    public var consumer: String
    public var idleMilliseconds: Int64
    public var deliveries: Int64
}

/// A Lua script run with EVALSHA; loaded on first use and again after NOSCRIPT
/// (e.g. after a Redis restart flushed the script cache).
public final class RedisScript: Sendable {
    public let source: String
    private let sha = Mutex<String?>(nil)

    public init(_ source: String) { self.source = source }

    fileprivate var loadedSHA: String? { self.sha.withLock { $0 } }
    fileprivate func setSHA(_ value: String) { self.sha.withLock { $0 = value } }
}

extension RedisCommandExecutor {
    // MARK: strings and keys

    public func get(_ key: String) async throws -> ByteBuffer? {
        try await self.send("GET", .string(key)).buffer
    }

    /// SET with optional expiry and NX; returns false when NX prevented the write.
    @discardableResult
    public func set(_ key: String, to value: RedisArgument, expireSeconds: Int? = nil, onlyIfAbsent: Bool = false) async throws -> Bool {
        var args: [RedisArgument] = [.string(key), value]
        if let expireSeconds { args += ["EX", RedisArgument(expireSeconds)] }
        if onlyIfAbsent { args.append("NX") }
        return try await self.send(RedisCommand("SET", args)).isOK
    }

    public func getdel(_ key: String) async throws -> ByteBuffer? {
        try await self.send("GETDEL", .string(key)).buffer
    }

    @discardableResult
    public func del(_ keys: [String]) async throws -> Int64 {
        try await self.integer(RedisCommand("DEL", keys.map { .string($0) }))
    }

    @discardableResult
    public func expire(_ key: String, seconds: Int) async throws -> Bool {
        try await self.integer(RedisCommand("EXPIRE", [.string(key), RedisArgument(seconds)])) == 1
    }

    public func incr(_ key: String) async throws -> Int64 {
        try await self.integer(RedisCommand("INCR", [.string(key)]))
    }

    public func exists(_ key: String) async throws -> Bool {
        try await self.integer(RedisCommand("EXISTS", [.string(key)])) == 1
    }

    public func ping() async throws {
        _ = try await self.send(RedisCommand("PING"))
    }

    // MARK: hashes

    @discardableResult
    public func hset(_ key: String, _ fields: [(String, RedisArgument)]) async throws -> Int64 {
        try await self.integer(RedisCommand("HSET", [.string(key)] + fields.flatMap { [RedisArgument.string($0.0), $0.1] }))
    }

    public func hget(_ key: String, _ field: String) async throws -> ByteBuffer? {
        try await self.send("HGET", .string(key), .string(field)).buffer
    }

    public func hgetall(_ key: String) async throws -> [String: ByteBuffer] {
        let items = try await self.send("HGETALL", .string(key)).array ?? []
        var result: [String: ByteBuffer] = [:]
        var index = 0
        while index + 1 < items.count {
            if let name = items[index].string, let value = items[index + 1].buffer { result[name] = value }
            index += 2
        }
        return result
    }

    @discardableResult
    public func hdel(_ key: String, _ fields: [String]) async throws -> Int64 {
        try await self.integer(RedisCommand("HDEL", [.string(key)] + fields.map { .string($0) }))
    }

    // MARK: sorted sets

    @discardableResult
    public func zadd(_ key: String, _ members: [(score: Double, member: String)]) async throws -> Int64 {
        try await self.integer(RedisCommand("ZADD", [.string(key)] + members.flatMap { [RedisArgument.string(String($0.score)), .string($0.member)] }))
    }

    public func zrangeByScore(_ key: String, min: String, max: String, limit: Int? = nil) async throws -> [String] {
        var args: [RedisArgument] = [.string(key), .string(min), .string(max)]
        if let limit { args += ["LIMIT", 0, RedisArgument(limit)] }
        return (try await self.send(RedisCommand("ZRANGEBYSCORE", args)).array ?? []).compactMap(\.string)
    }

    @discardableResult
    public func zrem(_ key: String, _ members: [String]) async throws -> Int64 {
        try await self.integer(RedisCommand("ZREM", [.string(key)] + members.map { .string($0) }))
    }

    @discardableResult
    public func zremRangeByScore(_ key: String, min: String, max: String) async throws -> Int64 {
        try await self.integer(RedisCommand("ZREMRANGEBYSCORE", [.string(key), .string(min), .string(max)]))
    }

    public func zcard(_ key: String) async throws -> Int64 {
        try await self.integer(RedisCommand("ZCARD", [.string(key)]))
    }

    // MARK: pub/sub

    /// Returns the number of subscribers that received the message.
    @discardableResult
    public func publish(_ channel: String, _ message: RedisArgument) async throws -> Int64 {
        try await self.integer(.publish(channel, message))
    }

    /// SPUBLISH: to the subscribers of the channel's shard; returns how many received it.
    @discardableResult
    public func spublish(_ channel: String, _ message: RedisArgument) async throws -> Int64 {
        try await self.integer(.spublish(channel, message))
    }

    // MARK: scripts

    public func evalsha(_ script: RedisScript, keys: [String] = [], arguments: [RedisArgument] = []) async throws -> RedisValue {
        let sha: String
        if let loaded = script.loadedSHA {
            sha = loaded
        } else {
            sha = try await self.scriptLoad(script)
        }
        let tail: [RedisArgument] = [RedisArgument(keys.count)] + keys.map { .string($0) } + arguments
        do {
            return try await self.send(RedisCommand("EVALSHA", [.string(sha)] + tail))
        } catch let error as RedisError where error.serverErrorPrefix == "NOSCRIPT" {
            // This server does not know it (restarted, or another node of a
            // cluster than the one that loaded it): EVAL runs it and caches it there.
            return try await self.send(RedisCommand("EVAL", [.string(script.source)] + tail))
        }
    }

    private func scriptLoad(_ script: RedisScript) async throws -> String {
        guard let sha = try await self.send("SCRIPT", "LOAD", .string(script.source)).string else {
            throw RedisError(.unexpectedReply, "SCRIPT LOAD returned no SHA")
        }
        script.setSHA(sha)
        return sha
    }

    // MARK: streams

    /// XADD with `MAXLEN ~ maxLength` when given; returns the new entry's id.
    @discardableResult
    public func xadd(_ stream: String, maxLength: Int? = nil, id: String = "*", fields: [(String, RedisArgument)]) async throws -> String {
        guard let entryID = try await self.send(.xadd(stream, maxLength: maxLength, id: id, fields: fields)).string else {
            throw RedisError(.unexpectedReply, "XADD returned no id")
        }
        return entryID
    }

    /// XGROUP CREATE … MKSTREAM; returns false if the group already existed.
    @discardableResult
    public func xgroupCreate(_ stream: String, group: String, startID: String = "$") async throws -> Bool {
        do {
            _ = try await self.send("XGROUP", "CREATE", .string(stream), .string(group), .string(startID), "MKSTREAM")
            return true
        } catch let error as RedisError where error.serverErrorPrefix == "BUSYGROUP" {
            return false
        }
    }

    @discardableResult
    public func xack(_ stream: String, group: String, ids: [String]) async throws -> Int64 {
        try await self.integer(RedisCommand("XACK", [.string(stream), .string(group)] + ids.map { .string($0) }))
    }

    /// XRANGE (oldest first) or, with `reverse`, XREVRANGE (newest first).
    public func xrange(_ stream: String, start: String = "-", end: String = "+", count: Int? = nil, reverse: Bool = false) async throws -> [RedisStreamEntry] {
        var args: [RedisArgument] = reverse ? [.string(stream), .string(end), .string(start)] : [.string(stream), .string(start), .string(end)]
        if let count { args += ["COUNT", RedisArgument(count)] }
        return try RedisStreamEntry.parseList(try await self.send(RedisCommand(reverse ? "XREVRANGE" : "XRANGE", args)))
    }

    public func xlen(_ stream: String) async throws -> Int64 {
        try await self.integer(RedisCommand("XLEN", [.string(stream)]))
    }

    /// XPENDING summary: number of pending entries of the group.
    public func xpendingCount(_ stream: String, group: String) async throws -> Int64 {
        let reply = try await self.send("XPENDING", .string(stream), .string(group))
        return reply.array?.first?.int ?? 0
    }

    /// XPENDING extended form: the first `count` pending entries (optionally of one consumer).
    public func xpending(_ stream: String, group: String, start: String = "-", end: String = "+", count: Int, consumer: String? = nil) async throws -> [RedisPendingEntry] {
        var args: [RedisArgument] = [.string(stream), .string(group), .string(start), .string(end), RedisArgument(count)]
        if let consumer { args.append(.string(consumer)) }
        let items = try await self.send(RedisCommand("XPENDING", args)).array ?? []
        return try items.map { item in
            guard let fields = item.array, fields.count == 4, let id = fields[0].string, let consumer = fields[1].string,
                let idle = fields[2].int, let deliveries = fields[3].int
            else { throw RedisError(.unexpectedReply, "XPENDING entry: \(item)") }
            return RedisPendingEntry(id: id, consumer: consumer, idleMilliseconds: idle, deliveries: deliveries)
        }
    }

    /// XAUTOCLAIM: takes over entries idle for at least `minIdleMilliseconds`.
    /// Returns the cursor for the next call ("0-0" when the scan is complete),
    /// the claimed entries, and the ids of entries deleted meanwhile.
    public func xautoclaim(
        _ stream: String, group: String, consumer: String, minIdleMilliseconds: Int, start: String = "0-0", count: Int = 100
    ) async throws -> (next: String, entries: [RedisStreamEntry], deleted: [String]) {
        let reply = try await self.send(
            "XAUTOCLAIM", .string(stream), .string(group), .string(consumer), RedisArgument(minIdleMilliseconds), .string(start), "COUNT",
            RedisArgument(count)
        )
        guard let parts = reply.array, parts.count >= 2, let next = parts[0].string else {
            throw RedisError(.unexpectedReply, "XAUTOCLAIM: \(reply)")
        }
        let deleted = parts.count > 2 ? (parts[2].array ?? []).compactMap(\.string) : []
        return (next, try RedisStreamEntry.parseList(parts[1]), deleted)
    }

    // MARK: helpers

    func integer(_ command: RedisCommand) async throws -> Int64 {
        let reply = try await self.send(command)
        guard case .integer(let value) = reply else { throw RedisError(.unexpectedReply, "\(command.name): expected an integer, got \(reply)") }
        return value
    }
}

extension RedisConnection {
    /// XREADGROUP GROUP g c [COUNT n] [BLOCK ms] STREAMS key id. Use on a
    /// dedicated connection when blocking. `id` ">" reads new entries, "0"
    /// re-reads this consumer's pending ones.
    public func xreadgroup(
        _ stream: String, group: String, consumer: String, id: String = ">", count: Int? = nil, blockMilliseconds: Int? = nil
    ) async throws -> [RedisStreamEntry] {
        var args: [RedisArgument] = ["GROUP", .string(group), .string(consumer)]
        if let count { args += ["COUNT", RedisArgument(count)] }
        if let blockMilliseconds { args += ["BLOCK", RedisArgument(blockMilliseconds)] }
        args += ["STREAMS", .string(stream), .string(id)]
        let reply = try await self.send(RedisCommand("XREADGROUP", args), extraTimeout: .milliseconds(Int64(blockMilliseconds ?? 0)))
        if case .error(let message) = reply { throw RedisError(.serverError, message) }
        // [[stream, [entries…]]] or nil on timeout
        guard case .array(let streams) = reply, let first = streams.first?.array, first.count == 2 else { return [] }
        return try RedisStreamEntry.parseList(first[1])
    }
}
