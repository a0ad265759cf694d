import Foundation
import HiredisNIO
import Logging
import ParleyCore
import ParleyChat

/// Who is online, shared by every instance through Redis.
///
/// Each connection is an entry in its user's sorted set (connection →
/// expiry) and in the expiry index of the user's group (user|connection →
/// expiry); in a Redis Cluster a user's keys and their group's index share
/// one hash tag (`PresenceKeys`), so each script works in one slot. Each
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

    var cluster: Bool { self.redis.configuration.isCluster }
    func key(_ userID: UUID) -> String { PresenceKeys.user(userID, cluster: self.cluster) }
    func index(of userID: UUID) -> String { PresenceKeys.index(bucket: PresenceKeys.bucket(userID, cluster: self.cluster), cluster: self.cluster) }
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
            Self.addScript, keys: [self.key(userID), self.index(of: userID)],
            arguments: [.string(connectionID.lowercased), RedisArgument(self.ttlMilliseconds), .string(userID.lowercased), RedisArgument(limit)]
        )
        guard let live = before.int, live >= 0 else { return .refused }
        return .admitted(first: live == 0)
    }

    /// Removes a connection; true when it was the user's last (they went offline).
    func disconnected(userID: UUID, connectionID: UUID) async throws -> Bool {
        let after = try await self.redis.evalsha(
            Self.removeScript, keys: [self.key(userID), self.index(of: userID)], arguments: [.string(connectionID.lowercased), .string(userID.lowercased)]
        )
        return after.int == 0
    }

    func online(_ userIDs: [UUID]) async throws -> [UUID] {
        try await PresenceKeys.online(userIDs, redis: self.redis)
    }

    /// Refreshes every connection of this instance, one script call per
    /// group, all at once; returns the users this brought back online (their
    /// entries had been lost, say to a long Redis outage, and swept as
    /// offline). A group that fails (its master failing over) does not cost
    /// the others their answers; it throws only when every group failed.
    func heartbeat(_ connections: [Connection]) async throws -> [UUID] {
        let cluster = self.cluster
        let groups = Dictionary(grouping: connections) { PresenceKeys.bucket($0.userID, cluster: cluster) }
        return try await Self.eachGroup(Array(groups.keys)) { bucket in
            var keys = [PresenceKeys.index(bucket: bucket, cluster: cluster)]
            var arguments: [RedisArgument] = [RedisArgument(self.ttlMilliseconds)]
            for connection in groups[bucket] ?? [] {
                keys.append(self.key(connection.userID))
                arguments.append(.string(connection.userID.lowercased))
                arguments.append(.string(connection.id.lowercased))
            }
            return try await self.redis.evalsha(Self.heartbeatScript, keys: keys, arguments: arguments)
        }
    }

    /// Removes expired connections of every group; returns the users who are
    /// now offline (from every group that answered).
    func sweep() async throws -> [UUID] {
        let cluster = self.cluster
        return try await Self.eachGroup(Array(0..<PresenceKeys.buckets(cluster: cluster))) { bucket in
            let (prefix, suffix) = PresenceKeys.userKeyParts(bucket: bucket, cluster: cluster)
            return try await self.redis.evalsha(
                Self.sweepScript, keys: [PresenceKeys.index(bucket: bucket, cluster: cluster)], arguments: [.string(prefix), .string(suffix)]
            )
        }
    }

    /// Runs `call` for every group at once and gathers the user ids they
    /// return; throws only if no group answered.
    static func eachGroup(_ buckets: [Int], _ call: @escaping @Sendable (Int) async throws -> RedisValue) async throws -> [UUID] {
        guard !buckets.isEmpty else { return [] }
        let results = await withTaskGroup(of: Result<RedisValue, any Error>.self) { tasks in
            for bucket in buckets {
                tasks.addTask {
                    do { return .success(try await call(bucket)) } catch { return .failure(error) }
                }
            }
            return await tasks.reduce(into: [Result<RedisValue, any Error>]()) { $0.append($1) }
        }
        var users = Set<UUID>()
        var answered = false
        var failure: (any Error)?
        for result in results {
            switch result {
            case .success(let reply):
                answered = true
                users.formUnion((reply.array ?? []).compactMap { $0.string.flatMap(UUID.init(uuidString:)) })
            case .failure(let error):
                failure = error
            }
        }
        if !answered, let failure { throw failure }
        return Array(users)
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

    /// KEYS[1] a group's index; ARGV[1] and ARGV[2] what goes before and
    /// after a user's id in their key. In a cluster the user keys it derives
    /// carry the group's hash tag: the same slot as KEYS[1].
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
            local key = ARGV[1] .. user .. ARGV[2]
            redis.call('ZREM', key, string.sub(entry, sep + 1))
            redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
            if redis.call('ZCARD', key) == 0 then table.insert(offline, user) end
          end
        end
        return offline
        """
    )
}
