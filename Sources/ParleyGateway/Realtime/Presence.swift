import Foundation
import HiredisNIO
import Logging
import ParleyCore
import ParleyChat

/// Who is online, shared by every instance through Redis.
///
/// Each connection is an entry in its user's sorted set (connection →
/// expiry) and in the expiry index of the user's group (user|connection →
/// expiry); a user's keys and their group's index share one hash tag
/// (`PresenceKeys`), so each script works in one Redis Cluster slot. Each
/// instance refreshes all of its connections in one script call per group
/// per heartbeat, the calls at once; an instance that dies stops
/// refreshing, and the sweeper (any instance) removes its entries once
/// they expire. The first
/// connection of a user makes them online, the last one (closed, or swept)
/// offline, and both edges are announced to the user's chats.
struct Presence: Sendable {
    let redis: RedisClient
    let store: ChatStore
    let publisher: ChatEventPublisher
    /// How long a connection counts without a heartbeat (an instance killed
    /// with -9 takes this long, plus a sweep, to look offline).
    var ttl: Duration = .seconds(40)
    var heartbeatInterval: Duration = .seconds(10)
    var sweepInterval: Duration = .seconds(5)

    static func key(_ userID: UUID) -> String { PresenceKeys.user(userID) }
    var ttlMilliseconds: Int64 { self.ttl.milliseconds }

    /// What registering a connection led to.
    enum Admission: Equatable {
        /// Registered; `first` when the user had no other live connection (they came online).
        case admitted(first: Bool)
        /// The user has `limit` live connections already: nothing was registered.
        case refused
    }

    /// Registers a connection unless the user has `limit` live ones already,
    /// in one atomic step (no check-then-act race between instances).
    func admit(userID: UUID, connectionID: UUID, limit: Int) async throws -> Admission {
        let before = try await self.redis.evalsha(
            Self.addScript, keys: [Self.key(userID), PresenceKeys.index(of: userID)],
            arguments: [.string(connectionID.lowercased), RedisArgument(self.ttlMilliseconds), .string(userID.lowercased), RedisArgument(limit)]
        )
        guard let live = before.int, live >= 0 else { return .refused }
        return .admitted(first: live == 0)
    }

    /// Removes a connection; true when it was the user's last (they went offline).
    func disconnected(userID: UUID, connectionID: UUID) async throws -> Bool {
        let after = try await self.redis.evalsha(
            Self.removeScript, keys: [Self.key(userID), PresenceKeys.index(of: userID)], arguments: [.string(connectionID.lowercased), .string(userID.lowercased)]
        )
        return after.int == 0
    }

    func online(_ userIDs: [UUID]) async throws -> [UUID] {
        try await PresenceKeys.online(userIDs, redis: self.redis)
    }

    /// Refreshes every connection of this instance, one script call per
    /// group, all at once; returns the users this brought back online (their
    /// entries had been lost, say to a long Redis outage, and swept as offline).
    func heartbeat(_ connections: [Connection]) async throws -> [UUID] {
        let groups = Dictionary(grouping: connections) { PresenceKeys.bucket($0.userID) }
        let revived = try await withThrowingTaskGroup(of: [UUID].self) { tasks in
            for (bucket, connections) in groups {
                tasks.addTask {
                    var keys = [PresenceKeys.index(bucket: bucket)]
                    var arguments: [RedisArgument] = [RedisArgument(self.ttlMilliseconds)]
                    for connection in connections {
                        keys.append(Self.key(connection.userID))
                        arguments.append(.string(connection.userID.lowercased))
                        arguments.append(.string(connection.id.lowercased))
                    }
                    let reply = try await self.redis.evalsha(Self.heartbeatScript, keys: keys, arguments: arguments)
                    return (reply.array ?? []).compactMap { $0.string.flatMap(UUID.init(uuidString:)) }
                }
            }
            return try await tasks.reduce(into: [UUID]()) { $0 += $1 }
        }
        return Array(Set(revived))
    }

    /// Removes expired connections of every group; returns the users who are now offline.
    func sweep() async throws -> [UUID] {
        let offline = try await withThrowingTaskGroup(of: [UUID].self) { tasks in
            for bucket in 0..<PresenceKeys.buckets {
                tasks.addTask {
                    let reply = try await self.redis.evalsha(
                        Self.sweepScript, keys: [PresenceKeys.index(bucket: bucket)], arguments: [.string(PresenceKeys.prefix(bucket: bucket))]
                    )
                    return (reply.array ?? []).compactMap { $0.string.flatMap(UUID.init(uuidString:)) }
                }
            }
            return try await tasks.reduce(into: [UUID]()) { $0 += $1 }
        }
        return Array(Set(offline))
    }

    func announce(_ userID: UUID, online: Bool, logger: Logger) async {
        do {
            let chats = try await self.store.chatIDs(of: userID)
            await self.publisher.publish(.presence(userID: userID, online: online, chatIDs: chats), logger: logger)
        } catch {
            logger.warning("could not announce presence", metadata: ["error": "\(error)"])
        }
    }

    /// Returns the user's live connections before this one, or -1 (and adds
    /// nothing) when there are ARGV[4] already.
    static let addScript = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local before = redis.call('ZCOUNT', KEYS[1], now, '+inf')
        if before >= tonumber(ARGV[4]) then return -1 end
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3] .. '|' .. ARGV[1])
        return before
        """
    )

    static let removeScript = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREM', KEYS[1], ARGV[1])
        redis.call('ZREM', KEYS[2], ARGV[2] .. '|' .. ARGV[1])
        return redis.call('ZCOUNT', KEYS[1], now, '+inf')
        """
    )

    /// KEYS[1] the group's index, KEYS[1 + n] the user key of the n-th
    /// connection; ARGV[1] the ttl, then user and connection per connection.
    static let heartbeatScript = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local expiry = now + tonumber(ARGV[1])
        local revived = {}
        for i = 2, #ARGV, 2 do
          local key = KEYS[i / 2 + 1]
          local before = redis.call('ZCOUNT', key, now, '+inf')
          redis.call('ZADD', key, expiry, ARGV[i + 1])
          redis.call('PEXPIRE', key, ARGV[1])
          redis.call('ZADD', KEYS[1], expiry, ARGV[i] .. '|' .. ARGV[i + 1])
          if before == 0 then table.insert(revived, ARGV[i]) end
        end
        return revived
        """
    )

    /// KEYS[1] a group's index; ARGV[1] the group's key prefix. The user
    /// keys it derives carry the group's hash tag: the same slot as KEYS[1].
    static let sweepScript = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
        local offline = {}
        for _, entry in ipairs(expired) do
          redis.call('ZREM', KEYS[1], entry)
          local sep = string.find(entry, '|', 1, true)
          if sep then
            local user = string.sub(entry, 1, sep - 1)
            local key = ARGV[1] .. user
            redis.call('ZREM', key, string.sub(entry, sep + 1))
            redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
            if redis.call('ZCARD', key) == 0 then table.insert(offline, user) end
          end
        end
        return offline
        """
    )
}
