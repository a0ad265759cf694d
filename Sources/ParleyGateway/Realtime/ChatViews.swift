import Foundation
import Metrics
import ParleyCore
import Synchronization

/// A changed chat (`chat_updated`) read once for every local socket the
/// event concerns, each member seeing their own view (read position,
/// settings, the peer of a direct chat). Each socket awaits the read when it
/// reaches the event in its queue, so the event keeps its place among the
/// socket's other frames.
///
/// A chat has at most one read running and one waiting: a read starts once
/// the chat's previous one ended, and events that arrive before it started
/// join it (`join`) — it reads after them, so it shows what they changed.
/// A burst of changes (members added one by one to a large group) thus costs
/// a few reads, not one per event. A socket's frame is dropped once taken,
/// so a socket that does not read holds only its own.
final class ChatViews: Sendable {
    private struct State {
        /// Sockets told, per viewer, that have not taken their frame yet.
        var waiting: [UUID: Int] = [:]
        var started = false
        var frames: [UUID: String] = [:]
    }

    private let state: Mutex<State>
    private let read = Mutex<Task<Void, any Error>?>(nil)

    private init(viewers: [UUID]) {
        var state = State()
        for viewer in viewers { state.waiting[viewer, default: 0] += 1 }
        self.state = Mutex(state)
    }

    /// A read of `chat` for `viewers` (one entry per socket told) that starts
    /// once `previous` ended; `ended` is called when it has.
    static func start(
        chat: UUID, viewers: [UUID], after previous: ChatViews?, store: ChatStore, reads: Counter, ended: @escaping @Sendable (ChatViews) -> Void
    ) -> ChatViews {
        let views = ChatViews(viewers: viewers)
        let task = Task {
            defer { ended(views) }
            try? await previous?.finished()
            let asked = views.state.withLock { state in
                state.started = true
                return Set(state.waiting.keys)
            }
            reads.increment()
            let read = try await store.chat(chat, viewers: asked)
            let frames = read.mapValues { ServerFrame.encoded(ServerFrame.ChatEvent(chat: ChatBody(chat: $0, members: nil))) }
            views.state.withLock { state in
                for (viewer, frame) in frames where state.waiting[viewer] != nil { state.frames[viewer] = frame }
            }
        }
        views.read.withLock { $0 = task }
        return views
    }

    /// Adds sockets of these viewers if the read has not started yet (then
    /// it will show them what changed too): true if it took them.
    func join(_ viewers: [UUID]) -> Bool {
        self.state.withLock { state in
            guard !state.started else { return false }
            for viewer in viewers { state.waiting[viewer, default: 0] += 1 }
            return true
        }
    }

    private func finished() async throws {
        try await self.read.withLock { $0 }?.value
    }

    /// The `chat` frame for one socket of `viewer`; nil once they may no
    /// longer see the chat. A failed read fails each socket as its own read
    /// would.
    func frame(for viewer: UUID) async throws -> String? {
        var failure: (any Error)?
        do { try await self.finished() } catch { failure = error }
        let frame = self.state.withLock { state -> String? in
            let frame = state.frames[viewer]
            let left = (state.waiting[viewer] ?? 1) - 1
            if left > 0 {
                state.waiting[viewer] = left
            } else {
                state.waiting[viewer] = nil
                state.frames[viewer] = nil
            }
            return frame
        }
        if let failure { throw failure }
        return frame
    }
}
