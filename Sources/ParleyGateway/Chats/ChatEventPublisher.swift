public import Foundation
public import HiredisNIO
public import Logging
public import ParleyCore

/// A change other members must see. Every write path (REST and WebSocket)
/// hands its changes to `ChatEventPublisher.publish`, the one place that
/// announces them.
public enum ChatEvent: Sendable {
    case messageCreated(MessageRecord)
    case messageUpdated(MessageRecord)
    case read(chatID: UUID, userID: UUID, seq: Int64)
    case memberAdded(chatID: UUID, userID: UUID)
    case memberRemoved(chatID: UUID, userID: UUID)
    case chatUpdated(chatID: UUID)

    public var chatID: UUID {
        switch self {
        case .messageCreated(let m), .messageUpdated(let m): return m.chatID
        case .read(let chatID, _, _), .memberAdded(let chatID, _), .memberRemoved(let chatID, _), .chatUpdated(let chatID): return chatID
        }
    }
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

    public init(redis: RedisClient) {
        self.redis = redis
    }

    public static func channel(_ chatID: UUID) -> String { "chat:{\(chatID.lowercased)}" }

    public func publish(_ events: [ChatEvent], logger: Logger) async {
        var commands: [RedisCommand] = []
        for event in events {
            guard let payload = try? Self.payload(event) else { continue }
            commands.append(RedisCommand("PUBLISH", [.string(Self.channel(event.chatID)), .bytes(ByteBuffer(bytes: payload))]))
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
            // Committed changes are in PostgreSQL: clients that missed the live
            // event get it by resuming from their last seq.
            logger.warning("could not publish chat events", metadata: ["error": "\(error)", "events": "\(events.count)"])
        }
    }

    public func publish(_ event: ChatEvent, logger: Logger) async {
        await self.publish([event], logger: logger)
    }

    static func payload(_ event: ChatEvent) throws -> Data {
        switch event {
        case .messageCreated(let message):
            return try JSONEncoder.parley.encode(MessageEvent(type: "message", message: MessageBody(message)))
        case .messageUpdated(let message):
            return try JSONEncoder.parley.encode(MessageEvent(type: "message_updated", message: MessageBody(message)))
        case .read(let chatID, let userID, let seq):
            return try JSONSerialization.data(withJSONObject: ["type": "read", "chat_id": chatID.lowercased, "user_id": userID.lowercased, "seq": seq] as [String: Any])
        case .memberAdded(let chatID, let userID):
            return try JSONSerialization.data(withJSONObject: ["type": "member_added", "chat_id": chatID.lowercased, "user_id": userID.lowercased])
        case .memberRemoved(let chatID, let userID):
            return try JSONSerialization.data(withJSONObject: ["type": "member_removed", "chat_id": chatID.lowercased, "user_id": userID.lowercased])
        case .chatUpdated(let chatID):
            return try JSONSerialization.data(withJSONObject: ["type": "chat_updated", "chat_id": chatID.lowercased])
        }
    }

    struct MessageEvent: Encodable {
        let type: String
        let message: MessageBody
    }
}

import NIOCore
