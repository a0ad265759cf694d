import Foundation

/// Puts each chat's message events back in seq order before they reach this
/// instance's sockets. Pure: `RealtimeService` keeps it under a lock.
///
/// Several gateways write to the same chat, and each publishes after its own
/// commit, so seq 8 can reach Redis before seq 7. Handed over as they come,
/// every socket in the chat would see the gap and read seq 7 from PostgreSQL
/// on its own (one query per member, each stalling that socket), only for the
/// real seq 7 to arrive a moment later. Instead, a message past a gap is held
/// until the gap closes, for at most `window`; only a gap still open then
/// (an event Redis lost, a gateway that died between commit and publish) is
/// left to the sockets, which read it from PostgreSQL as before.
///
/// - `receive` takes a message event and answers what to hand over now, in
///   order: nothing while it waits behind a gap, or itself and what it
///   released. An event at or below what was handed over already (a resend's
///   republish, a duplicate) passes at once: sockets drop seqs they have.
/// - `flush` hands over everything a chat holds: any other event of the chat
///   (an edit, a read position, a membership change) goes out after the
///   messages received before it, as it would have without holding.
/// - `expire` hands over what has waited `window` (gap or not) and forgets
///   chats idle for `forgetAfter`, so memory follows the chats in use.
/// - A chat holding `maxHeld` events hands them all over at once.
struct MessageOrder<Item> {
    let window: Duration
    let maxHeld: Int
    let forgetAfter: Duration
    private var chats: [UUID: Chat] = [:]
    /// The chats that hold events (what `expire` looks at), and when it last looked for idle ones.
    private var holdingChats: Set<UUID> = []
    private var lastSweep: ContinuousClock.Instant?

    struct Chat {
        /// The seq the chat waits for: everything below was handed over.
        var next: Int64
        var held: [Int64: Item] = [:]
        /// When the oldest held event arrived.
        var since: ContinuousClock.Instant?
        var touched: ContinuousClock.Instant
    }

    init(window: Duration, maxHeld: Int = 1000, forgetAfter: Duration = .seconds(60)) {
        self.window = window
        self.maxHeld = maxHeld
        self.forgetAfter = forgetAfter
    }

    /// Chats that hold events now.
    var holding: Int { self.holdingChats.count }
    /// Chats it remembers.
    var remembered: Int { self.chats.count }
    /// When `expire` has something to hand over, if anything is held.
    var nextDeadline: ContinuousClock.Instant? {
        self.holdingChats.compactMap { self.chats[$0]?.since }.min().map { $0 + self.window }
    }

    mutating func receive(chat chatID: UUID, seq: Int64, item: Item, now: ContinuousClock.Instant) -> [Item] {
        guard var chat = self.chats[chatID] else {
            // the first event of a chat since this instance started (or forgot it)
            self.chats[chatID] = Chat(next: seq + 1, touched: now)
            return [item]
        }
        chat.touched = now
        defer { self.chats[chatID] = chat }
        if seq < chat.next || self.window <= .zero { return [item] }
        if seq > chat.next {
            if chat.held[seq] == nil { chat.held[seq] = item }
            if chat.since == nil {
                chat.since = now
                self.holdingChats.insert(chatID)
            }
            guard chat.held.count >= self.maxHeld else { return [] }
            self.holdingChats.remove(chatID)
            return Self.release(&chat)
        }
        var out = [item]
        chat.next = seq + 1
        while let following = chat.held.removeValue(forKey: chat.next) {
            out.append(following)
            chat.next += 1
        }
        if chat.held.isEmpty, chat.since != nil {
            chat.since = nil
            self.holdingChats.remove(chatID)
        }
        return out
    }

    mutating func flush(chat chatID: UUID) -> [Item] {
        guard var chat = self.chats[chatID], !chat.held.isEmpty else { return [] }
        defer { self.chats[chatID] = chat }
        self.holdingChats.remove(chatID)
        return Self.release(&chat)
    }

    mutating func expire(now: ContinuousClock.Instant) -> [(chat: UUID, items: [Item])] {
        var out: [(chat: UUID, items: [Item])] = []
        for chatID in self.holdingChats {
            guard var chat = self.chats[chatID], let since = chat.since, now - since >= self.window else { continue }
            out.append((chatID, Self.release(&chat)))
            self.chats[chatID] = chat
            self.holdingChats.remove(chatID)
        }
        if let last = self.lastSweep, now - last < self.forgetAfter / 2 { return out }
        self.lastSweep = now
        self.chats = self.chats.filter { $0.value.since != nil || now - $0.value.touched < self.forgetAfter }
        return out
    }

    /// Releases everything held in every chat, and forgets every chat: after
    /// a Redis subscription gap the seqs seen before say nothing about what
    /// comes next (the sockets catch up from PostgreSQL instead).
    mutating func reset() -> [(chat: UUID, items: [Item])] {
        var out: [(chat: UUID, items: [Item])] = []
        for chatID in self.holdingChats {
            guard var chat = self.chats[chatID] else { continue }
            out.append((chatID, Self.release(&chat)))
        }
        self.chats = [:]
        self.holdingChats = []
        return out
    }

    /// Everything held, in seq order; the chat then waits for the seq after the last.
    private static func release(_ chat: inout Chat) -> [Item] {
        let seqs = chat.held.keys.sorted()
        let out = seqs.map { chat.held[$0]! }
        chat.held = [:]
        chat.since = nil
        if let last = seqs.last { chat.next = max(chat.next, last + 1) }
        return out
    }
}
