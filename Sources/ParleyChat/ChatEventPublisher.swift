public import Foundation
public import HiredisNIO
public import Logging
public import NIOCore
import Synchronization
public import ParleyCore

/// A change other members must see. Every write path (REST and WebSocket)
/// hands its changes to `ChatEventPublisher.publish`, the one place that
/// announces them.
public enum ChatEvent: Sendable {
    case messageCreated(MessageRecord)
    case messageUpdated(MessageRecord)
    case read(chatID: UUID, userID: UUID, seq: Int64)
    /// `userID` added (or removed) `emoji` on message `seq`.
    case reaction(chatID: UUID, seq: Int64, userID: UUID, emoji: String, added: Bool)
    /// `lastSeq`: the chat's last seq when the member joined; they get what comes after.
    case memberAdded(chatID: UUID, userID: UUID, lastSeq: Int64)
    case memberRemoved(chatID: UUID, userID: UUID)
    case chatUpdated(chatID: UUID)
    /// The chat changed for one member only (their settings): their own sockets read it again.
    case settingsChanged(chatID: UUID, userID: UUID)
    case typing(chatID: UUID, userID: UUID, active: Bool)
    /// To every chat of the user: members see each other's presence.
    case presence(userID: UUID, online: Bool, chatIDs: [UUID])
    /// A new account: only in the notifier's stream (webhooks), on no channel.
    case userRegistered(userID: UUID)
}

/// Publishes chat events on the chat's Redis channel (`chat:{<id>}`; in a
/// Redis Cluster a shard channel, SPUBLISH, relayed by the master of its
/// slot only) and appends new messages to the
/// `events:messages` stream (for the mail worker), in one pipelined round
/// trip, after the change is committed.
///
/// Every payload is an `EventEnvelope`: a header that receiving gateways
/// route by, and the JSON event as clients receive it (PROTOCOL.md "Server →
/// client events"), encoded once here and forwarded without re-encoding or
/// parsing. Membership changes carry no frame (`member_added`,
/// `member_removed`, `chat_updated`): gateways turn them into per-user
/// `chat`/`chat_removed` events. Stream entries hold the header alone (in
/// the field `e`), and for one release also the fields the mailers of the
/// previous version read.
public struct ChatEventPublisher: Sendable {
    public static let messageStream = EventStreams.messages
    let redis: RedisClient
    /// Where events go when Redis cannot take them: this process's own
    /// connections (the realtime service), so that members connected here
    /// still see them live; members elsewhere catch up from PostgreSQL once
    /// their subscriber is back.
    public let local = LocalDelivery()
    /// The kinds appended to `events:messages` as well as published.
    let streamed: Set<EventEnvelope.Kind>
    /// Sharded pub/sub (in a Redis Cluster); classic PUBLISH with a single
    /// Redis. Gateways subscribe the same way (`SubscriptionManager.split`).
    let sharded: Bool

    /// `pushEnabled`: read positions go on the stream only for Web Push
    /// (they retract pushes; nothing else reads them), so a gateway without
    /// a VAPID key spares each read receipt that `XADD`.
    public init(redis: RedisClient, pushEnabled: Bool = true) {
        self.redis = redis
        self.sharded = redis.configuration.isCluster
        self.streamed = pushEnabled ? EventStreams.streamedKinds : EventStreams.streamedKinds.subtracting([.read])
    }

    public final class LocalDelivery: Sendable {
        public typealias Handler = @Sendable ([(channel: String, payload: ByteBuffer)]) async -> Void
        private final class Box: Sendable {
            let handler: Handler
            init(_ handler: @escaping Handler) { self.handler = handler }
        }

        private let box = Mutex<Box?>(nil)

        public func set(_ handler: @escaping Handler) { self.box.withLock { $0 = Box(handler) } }
        var handler: Handler? { self.box.withLock { $0 }?.handler }
    }

    public static func channel(_ chatID: UUID) -> String { "chat:{\(chatID.lowercased)}" }
    /// Events for one user wherever they are connected (added to or removed from a chat).
    public static func userChannel(_ userID: UUID) -> String { "user:{\(userID.lowercased)}" }

    public func publish(_ events: [ChatEvent], logger: Logger) async {
        var commands: [RedisCommand] = []
        var deliveries: [(channel: String, payload: ByteBuffer)] = []
        for event in events {
            if case .userRegistered(let userID) = event {
                commands.append(Self.streamEntry(EventEnvelope(.userRegistered, userID: userID)))
                continue
            }
            for (channel, envelope) in (try? Self.deliveries(event)) ?? [] {
                let payload = envelope.encoded()
                deliveries.append((channel, payload))
                commands.append(self.sharded ? .spublish(channel, .bytes(payload)) : .publish(channel, .bytes(payload)))
                if self.streamed.contains(envelope.kind) { commands.append(Self.streamEntry(envelope)) }
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

    /// The notifier's copy of an event: the header alone (and, for a new
    /// message, the fields of the previous version).
    static func streamEntry(_ envelope: EventEnvelope) -> RedisCommand {
        let fields = [(EventStreams.envelopeField, envelope.header)] + EventStreams.legacyFields(of: envelope)
        return .xadd(Self.messageStream, maxLength: EventStreams.messagesMaxLength, fields: fields.map { ($0.0, .string($0.1)) })
    }

    /// (channel, envelope) pairs for an event.
    static func deliveries(_ event: ChatEvent) throws -> [(String, EventEnvelope)] {
        func json(_ object: [String: Any]) throws -> ByteBuffer {
            ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        }
        switch event {
        case .messageCreated(let message):
            let frame = try JSONEncoder.parley.encode(MessageEvent(type: "message", message: MessageBody(message)))
            return [(Self.channel(message.chatID), EventEnvelope(.message, chatID: message.chatID, userID: message.senderID, seq: message.seq, frame: ByteBuffer(bytes: frame)))]
        case .messageUpdated(let message):
            let frame = try JSONEncoder.parley.encode(MessageEvent(type: "message_updated", message: MessageBody(message)))
            return [(Self.channel(message.chatID), EventEnvelope(.messageUpdated, chatID: message.chatID, userID: message.senderID, seq: message.seq, frame: ByteBuffer(bytes: frame)))]
        case .read(let chatID, let userID, let seq):
            let frame = try json(["type": "read", "chat_id": chatID.lowercased, "user_id": userID.lowercased, "seq": seq])
            return [(Self.channel(chatID), EventEnvelope(.read, chatID: chatID, userID: userID, seq: seq, frame: frame))]
        case .reaction(let chatID, let seq, let userID, let emoji, let added):
            let frame = try json([
                "type": "reaction", "chat_id": chatID.lowercased, "seq": seq, "user_id": userID.lowercased, "emoji": emoji, "added": added,
            ])
            return [(Self.channel(chatID), EventEnvelope(.reaction, chatID: chatID, userID: userID, seq: seq, flag: added, frame: frame))]
        case .memberAdded(let chatID, let userID, let lastSeq):
            return [
                (Self.userChannel(userID), EventEnvelope(.memberAdded, chatID: chatID, userID: userID, seq: lastSeq)),
                (Self.channel(chatID), EventEnvelope(.chatUpdated, chatID: chatID)),
            ]
        case .memberRemoved(let chatID, let userID):
            return [
                (Self.userChannel(userID), EventEnvelope(.memberRemoved, chatID: chatID, userID: userID)),
                (Self.channel(chatID), EventEnvelope(.chatUpdated, chatID: chatID)),
            ]
        case .chatUpdated(let chatID):
            return [(Self.channel(chatID), EventEnvelope(.chatUpdated, chatID: chatID))]
        case .settingsChanged(let chatID, let userID):
            return [(Self.channel(chatID), EventEnvelope(.chatUpdated, chatID: chatID, userID: userID))]
        case .typing(let chatID, let userID, let active):
            let frame = try json(["type": "typing", "chat_id": chatID.lowercased, "user_id": userID.lowercased, "active": active])
            return [(Self.channel(chatID), EventEnvelope(.typing, chatID: chatID, userID: userID, flag: active, frame: frame))]
        case .presence(let userID, let online, let chatIDs):
            let frame = try json(["type": "presence", "user_id": userID.lowercased, "online": online, "last_seen_at": Timestamp.format(Date())])
            return chatIDs.map { (Self.channel($0), EventEnvelope(.presence, chatID: $0, userID: userID, flag: online, frame: frame)) }
        case .userRegistered:
            return []
        }
    }

    struct MessageEvent: Encodable {
        let type: String
        let message: MessageBody
    }
}
