import Foundation

/// The writer's queue of sends, and which chats the batches in flight hold.
/// Pure: `MessageWriter` keeps it under a lock.
///
/// - `enqueue` says whether to start another batch: when a slot is free and
///   the send's chat is not held (a held chat's sends go with the next batch
///   of whoever holds it).
/// - `nextBatch` takes, in arrival order, up to `max` sends of chats no
///   batch in flight holds, and holds those chats; a chat's later sends stay
///   queued behind its earlier ones, so seqs follow arrival order per chat.
///   An empty batch means this batch loop ends (its slot is free again).
/// - `finished` releases a written batch's chats.
struct SendQueue<Item> {
    let maxInFlight: Int
    private(set) var items: [(chat: UUID, item: Item)] = []
    private(set) var held: [UUID: Int] = [:]
    private(set) var inFlight = 0

    init(maxInFlight: Int) {
        self.maxInFlight = maxInFlight
    }

    mutating func enqueue(_ item: Item, chat: UUID) -> Bool {
        self.items.append((chat, item))
        guard self.inFlight < self.maxInFlight, self.held[chat] == nil else { return false }
        self.inFlight += 1
        return true
    }

    mutating func nextBatch(max: Int) -> [Item] {
        var batch: [Item] = []
        var taken: Set<UUID> = []
        // chats with a send left behind in this pass: their later sends stay behind too
        var behind: Set<UUID> = []
        var rest: [(chat: UUID, item: Item)] = []
        for entry in self.items {
            if batch.count < max, self.held[entry.chat] == nil, !behind.contains(entry.chat) {
                batch.append(entry.item)
                taken.insert(entry.chat)
            } else {
                rest.append(entry)
                behind.insert(entry.chat)
            }
        }
        self.items = rest
        guard !batch.isEmpty else {
            self.inFlight -= 1
            return []
        }
        for chat in taken { self.held[chat, default: 0] += 1 }
        return batch
    }

    /// Takes every queued item (the writer is stopping).
    mutating func removeAll() -> [Item] {
        defer { self.items = [] }
        return self.items.map(\.item)
    }

    mutating func finished(chats: [UUID]) {
        for chat in Set(chats) {
            guard let count = self.held[chat] else { continue }
            self.held[chat] = count > 1 ? count - 1 : nil
        }
    }
}
