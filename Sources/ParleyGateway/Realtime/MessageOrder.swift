import Foundation

/// Puts each chat's message events back in seq order before they reach this
/// instance's sockets. Pure: `RealtimeService` keeps it under a lock.
///
/// Several gateways write to the same chat, and each publishes after its own
/// commit, so seq 8 can reach Redis before seq 7. Handed over as they come,
/// every socket in the chat would see the gap and read seq 7 from PostgreSQL
/// on its own (one query per member, each stalling that socket), only for the
/// real seq 7 to arrive a moment later. Instead, a message past a gap is held
/// until the gap closes, for at most `window`. A gap still open then (an
/// event Redis lost, a gateway that died between commit and publish) is read
/// from PostgreSQL once, for all of the chat's sockets here, by the caller:
/// the chat is then *filling*, holding whatever comes, until `filled` gets
/// the missing messages and hands everything over in order.
///
/// - `receive` takes a message event and answers what to hand over now, in
///   order: nothing while it waits behind a gap or for a fill, or itself and
///   what it released. An event at or below what was handed over already (a
///   resend's republish, a duplicate) passes at once: sockets drop seqs they have.
/// - `flush` hands over everything a chat holds: any other event of the chat
///   (an edit, a read position, a membership change) goes out after the
///   messages received before it, as it would have without holding.
/// - `follow` remembers the chats the sockets here follow that it has not
///   seen yet (a quiet chat, a gateway just started), as handed over through
///   their last seq: a Redis gap then finds them behind, like any other.
/// - `expire` answers the gaps that stayed open for `window` (to be read),
///   and forgets chats idle for `forgetAfter` that no socket here follows any
///   more, so memory follows the chats in use.
/// - `filled` takes what was read for a gap (nothing when the read failed:
///   the sockets then read it themselves, each) and hands over the chat.
/// - `resumed` answers, after a Redis subscription gap, what each chat may
///   have missed meanwhile (to be read once, like an open gap).
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
        /// Gaps being read from PostgreSQL (an open gap's, a Redis gap's):
        /// everything waits for the last of them.
        var fills = 0
        /// Where the gaps being read end.
        var fillsThrough: Int64 = 0
    }

    /// A gap to read: the messages after `after`, through `through`.
    struct Gap: Equatable {
        var chat: UUID
        var after: Int64
        var through: Int64
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
        if seq > chat.next || chat.fills > 0 {
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

    /// Chats the sockets here follow, each with its last seq in PostgreSQL,
    /// read once its subscription took effect (so that everything after it
    /// comes through Redis): a chat not seen yet is remembered as handed over
    /// through it. A chat already remembered is left as it is (what it
    /// handed over is known; a late publish at or below it passes anyway).
    mutating func follow(_ latest: [UUID: Int64], now: ContinuousClock.Instant) {
        guard self.window > .zero else { return }
        for (chatID, last) in latest where self.chats[chatID] == nil {
            self.chats[chatID] = Chat(next: last + 1, touched: now)
        }
    }

    /// The gaps open for `window`, each chat now filling (it holds what comes
    /// until `filled`). A gap is from the seq the chat waits for through the
    /// seq before the last it holds (seqs it holds are read again: the gap
    /// may be several). Idle chats are forgotten unless `followed` (a socket
    /// here follows them: a Redis gap must find where they were).
    mutating func expire(now: ContinuousClock.Instant, followed: (UUID) -> Bool = { _ in false }) -> [Gap] {
        var out: [Gap] = []
        for chatID in self.holdingChats {
            guard var chat = self.chats[chatID], let since = chat.since, now - since >= self.window, let last = chat.held.keys.max() else { continue }
            out.append(self.startFill(&chat, chatID, through: last - 1, now: now))
            self.chats[chatID] = chat
        }
        if let last = self.lastSweep, now - last < self.forgetAfter / 2 { return out }
        self.lastSweep = now
        self.chats = self.chats.filter { $0.value.since != nil || now - $0.value.touched < self.forgetAfter || followed($0.key) }
        return out
    }

    /// Ends the fill of `gap`: `read` is what PostgreSQL had for it (empty
    /// when the read failed). Once no other read of the chat is running, it
    /// hands over, in seq order, what was read and everything held; the chat
    /// then waits for the seq after the last, or after the gaps (a failed
    /// read is left to the sockets: the chat does not wait for it again). A
    /// chat flushed or forgotten meanwhile takes only what is still ahead of it.
    mutating func filled(_ gap: Gap, read: [(seq: Int64, item: Item)], now: ContinuousClock.Instant) -> [Item] {
        let chatID = gap.chat
        guard var chat = self.chats[chatID] else { return [] }
        defer { self.chats[chatID] = chat }
        chat.touched = now
        for (seq, item) in read where seq >= chat.next && chat.held[seq] == nil { chat.held[seq] = item }
        chat.fills = max(0, chat.fills - 1)
        guard chat.fills == 0 else { return [] }
        self.holdingChats.remove(chatID)
        let through = max(chat.fillsThrough, gap.through)
        let out = Self.release(&chat)
        chat.next = max(chat.next, through + 1)
        return out
    }

    /// After a Redis subscription gap: `latest` is each chat's last seq in
    /// PostgreSQL, read after the subscriptions came back. Every chat it
    /// remembers that is behind its `latest` is missing what was published
    /// during the gap: it answers that gap (after what it handed over,
    /// through `latest`, holding what it held) and the chat fills, holding
    /// what comes until `filled`, as an open gap does. A chat missing from
    /// `latest` (none of the sockets here follows it, or their read failed)
    /// hands over what it holds and is forgotten: the sockets catch up
    /// themselves. A chat already past its `latest` (routed meanwhile) is
    /// left as it is, with what it holds and its deadline. A chat of
    /// `latest` it did not remember (joined meanwhile) is left to its
    /// sockets this time, and remembered from `latest` on (`follow`).
    mutating func resumed(latest: [UUID: Int64], now: ContinuousClock.Instant) -> (released: [(chat: UUID, items: [Item])], gaps: [Gap]) {
        var released: [(chat: UUID, items: [Item])] = []
        var gaps: [Gap] = []
        for (chatID, var chat) in self.chats {
            guard let last = latest[chatID], self.window > .zero else {
                if !chat.held.isEmpty { released.append((chatID, Self.release(&chat))) }
                self.chats[chatID] = nil
                self.holdingChats.remove(chatID)
                continue
            }
            guard last >= chat.next else { continue }
            gaps.append(self.startFill(&chat, chatID, through: last, now: now))
            self.chats[chatID] = chat
        }
        self.follow(latest, now: now)
        return (released, gaps)
    }

    /// The chat's gap from the seq it waits for through `through`, now being
    /// read: the chat holds what comes (with no deadline of its own: `since`
    /// set, out of `holdingChats`) until the last of its reads ends.
    private mutating func startFill(_ chat: inout Chat, _ chatID: UUID, through: Int64, now: ContinuousClock.Instant) -> Gap {
        chat.fills += 1
        chat.fillsThrough = max(chat.fillsThrough, through)
        chat.since = chat.since ?? now
        self.holdingChats.remove(chatID)
        return Gap(chat: chatID, after: chat.next - 1, through: through)
    }

    /// Everything held, in seq order; the chat then waits for the seq after the last.
    private static func release(_ chat: inout Chat) -> [Item] {
        let seqs = chat.held.keys.sorted()
        let out = seqs.map { chat.held[$0]! }
        chat.held = [:]
        chat.since = nil
        chat.fills = 0
        chat.fillsThrough = 0
        if let last = seqs.last { chat.next = max(chat.next, last + 1) }
        return out
    }
}
