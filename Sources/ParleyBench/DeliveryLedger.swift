/// Checks PROTOCOL.md's delivery guarantee from the receiving side: every
/// open connection of every member gets each acknowledged message of the
/// chat exactly once, in seq order.
///
/// Per (connection, chat) it keeps the next expected seq and the seqs that
/// were skipped. A seq beyond the next one is out of order (its skipped
/// predecessors become "missing"); a missing seq arriving later is the other
/// half of that reordering; any other seq at or below the expected one is a
/// duplicate. At the end, an acknowledged seq the connection never received
/// is lost. Chats are assumed to start empty (seq 1 first), as the
/// benchmark's own chats do.
public struct DeliveryLedger: Sendable {
    struct Stream {
        var next: Int64 = 1
        var missing: Set<Int64> = []
    }

    public struct Key: Hashable, Sendable {
        public let connection: Int
        public let chat: String
        public init(connection: Int, chat: String) {
            self.connection = connection
            self.chat = chat
        }
    }

    var streams: [Key: Stream] = [:]
    var acked: [String: Set<Int64>] = [:]
    public private(set) var delivered = 0
    public private(set) var duplicated = 0
    public private(set) var outOfOrder = 0

    public init() {}

    public mutating func acknowledged(chat: String, seq: Int64) {
        self.acked[chat, default: []].insert(seq)
    }

    public mutating func received(connection: Int, chat: String, seq: Int64) {
        let key = Key(connection: connection, chat: chat)
        var stream = self.streams[key] ?? Stream()
        defer { self.streams[key] = stream }
        if seq == stream.next {
            stream.next += 1
            self.delivered += 1
        } else if seq > stream.next {
            self.outOfOrder += 1
            self.delivered += 1
            for skipped in stream.next..<seq { stream.missing.insert(skipped) }
            stream.next = seq + 1
        } else if stream.missing.remove(seq) != nil {
            self.delivered += 1
        } else {
            self.duplicated += 1
        }
    }

    public var ackedCount: Int { self.acked.values.reduce(0) { $0 + $1.count } }

    /// Acknowledged messages that a member connection never received;
    /// `members[chat]` lists the connections that follow the chat.
    public func lost(members: [String: [Int]]) -> Int {
        var lost = 0
        for (chat, seqs) in self.acked {
            for connection in members[chat] ?? [] {
                let stream = self.streams[Key(connection: connection, chat: chat)] ?? Stream()
                lost += seqs.filter { $0 >= stream.next || stream.missing.contains($0) }.count
            }
        }
        return lost
    }
}
