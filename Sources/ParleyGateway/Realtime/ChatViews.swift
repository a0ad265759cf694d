import Foundation
import Metrics
import ParleyCore

/// A changed chat (`chat_updated`) read once for every local socket the
/// event concerns, each member seeing their own view (read position,
/// settings, the peer of a direct chat). The read starts when the event
/// arrives; each socket awaits it when it reaches the event in its queue,
/// so the event keeps its place among the socket's other frames.
final class ChatViews: Sendable {
    private let read: Task<[UUID: String], any Error>

    init(chat: UUID, viewers: Set<UUID>, store: ChatStore, reads: Counter) {
        self.read = Task {
            reads.increment()
            return try await store.chat(chat, viewers: viewers).mapValues {
                ServerFrame.encoded(ServerFrame.ChatEvent(chat: ChatBody(chat: $0, members: nil)))
            }
        }
    }

    /// The `chat_updated` frame for `viewer`; nil once they may no longer
    /// see the chat. A failed read fails each socket as its own read would.
    func frame(for viewer: UUID) async throws -> String? {
        try await self.read.value[viewer]
    }
}
