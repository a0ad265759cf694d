public import Foundation
public import HiredisNIO
public import Logging
import Synchronization
public import ParleyCore

/// A change other members must see. Every write path (REST and WebSocket)
/// hands its changes to `ChatEventPublisher.publish`, the one place that
/// announces them.
public enum ChatEvent: Sendable {
    case messageCreated(MessageRecord)
    case messageUpdated(MessageRecord)
    case read(chatID: UUID, userID: UUID, seq: Int64)
    /// `lastSeq`: the chat's last seq when the member joined; they get what comes after.
    case memberAdded(chatID: UUID, userID: UUID, lastSeq: Int64)
    case memberRemoved(chatID: UUID, userID: UUID)
    case chatUpdated(chatID: UUID)
    case typing(chatID: UUID, userID: UUID, active: Bool)
    /// To every chat of the user: members see each other's presence.
    case presence(userID: UUID, online: Bool, chatIDs: [UUID])
}

/// Publishes chat events on the chat's Redis channel (`chat:{<id>}`,
/// hash-tagged for Redis Cluster) and appends `message.created` entries to
/// the `events:messages` stream (for the mail worker), in one pipelined
/// round trip, after the change is committed.
///
/// The channel payload is the JSON event as clients receive it (PROTOCOL.md
/// "Server → client events"), so gateways forward it without re-encoding;
/// membership changes use internal types (`member_added`, `member_removed`,
/// `chat_updated`) that gateways turn into per-user `chat`/`chat_removed` events.
public struct ChatEventPublisher: Sendable {
    public static let messageStream = "events:messages"
    let redis: RedisClient
    /// Where events go when Redis cannot take them: this process's own
    /// connections (the realtime service), so that members connected here
    /// still see them live; members elsewhere catch up from PostgreSQL once
    /// their subscriber is back.
    let local = LocalDelivery()

    public init(redis: RedisClient) {
        self.redis = redis
    }

    final class LocalDelivery: Sendable {
        typealias Handler = @Sendable ([(channel: String, payload: Data)]) async -> Void
        private final class Box: Sendable {
            let handler: Handler
            init(_ handler: @escaping Handler) { self.handler = handler }
        }

        private let box = Mutex<Box?>(nil)

        func set(_ handler: @escaping Handler) { self.box.withLock { $0 = Box(handler) } }
        var handler: Handler? { self.box.withLock { $0 }?.handler }
    }

    public static func channel(_ chatID: UUID) -> String { "chat:{\(chatID.lowercased)}" }
    /// Events for one user wherever they are connected (added to or removed from a chat).
    public static func userChannel(_ userID: UUID) -> String { "user:{\(userID.lowercased)}" }

    public func publish(_ events: [ChatEvent], logger: Logger) async {
        var commands: [RedisCommand] = []
        var deliveries: [(channel: String, payload: Data)] = []
        for event in events {
            for (channel, payload) in (try? Self.deliveries(event)) ?? [] {
                deliveries.append((channel, payload))
                commands.append(RedisCommand("PUBLISH", [.string(channel), .bytes(ByteBuffer(bytes: payload))]))
            }
            if case .messageCreated(let message) = event {
                commands.append(RedisCommand("XADD", [
                    .string(Self.messageStream), "MAXLEN", "~", "1000000", "*",
                    "type", "message.created", "chat_id", .string(message.chatID.lowercased), "seq", RedisArgument(message.seq),
                    "sender_id", .string(message.senderID.lowercased),
                ]))
            }
        }
        guard !commands.isEmpty else { return }
        do {
            _ = try await self.redis.pipeline(commands)
        } catch {
            // Committed changes are in PostgreSQL: clients elsewhere that missed the
            // live event get it by resuming from their last seq; those here get it now.
            logger.warning("could not publish chat events; delivering them to this instance's connections", metadata: ["error": "\(error)", "events": "\(events.count)"])
            await self.local.handler?(deliveries)
        }
    }

    public func publish(_ event: ChatEvent, logger: Logger) async {
        await self.publish([event], logger: logger)
    }

    /// (channel, payload) pairs for an event.
    static func deliveries(_ event: ChatEvent) throws -> [(String, Data)] {
        func json(_ object: [String: Any]) throws -> Data { try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) }
        switch event {
        case .messageCreated(let message):
            return [(Self.channel(message.chatID), try JSONEncoder.parley.encode(MessageEvent(type: "message", message: MessageBody(message))))]
        case .messageUpdated(let message):
            return [(Self.channel(message.chatID), try JSONEncoder.parley.encode(MessageEvent(type: "message_updated", message: MessageBody(message))))]
        case .read(let chatID, let userID, let seq):
            return [(Self.channel(chatID), try json(["type": "read", "chat_id": chatID.lowercased, "user_id": userID.lowercased, "seq": seq]))]
        case .memberAdded(let chatID, let userID, let lastSeq):
            return [
                (Self.userChannel(userID), try json(["type": "member_added", "chat_id": chatID.lowercased, "user_id": userID.lowercased, "last_seq": lastSeq])),
                (Self.channel(chatID), try json(["type": "chat_updated", "chat_id": chatID.lowercased])),
            ]
        case .memberRemoved(let chatID, let userID):
            return [
                (Self.userChannel(userID), try json(["type": "member_removed", "chat_id": chatID.lowercased, "user_id": userID.lowercased])),
                (Self.channel(chatID), try json(["type": "chat_updated", "chat_id": chatID.lowercased])),
            ]
        case .chatUpdated(let chatID):
            return [(Self.channel(chatID), try json(["type": "chat_updated", "chat_id": chatID.lowercased]))]
        case .typing(let chatID, let userID, let active):
            return [(Self.channel(chatID), try json(["type": "typing", "chat_id": chatID.lowercased, "user_id": userID.lowercased, "active": active]))]
        case .presence(let userID, let online, let chatIDs):
            let payload = try json(["type": "presence", "user_id": userID.lowercased, "online": online, "last_seen_at": Timestamp.format(Date())])
            return chatIDs.map { (Self.channel($0), payload) }
        }
    }

    struct MessageEvent: Encodable {
        let type: String
        let message: MessageBody
    }
}

import NIOCore
