import Foundation
@testable import ParleyChat
import Testing

@Suite struct SendQueueTests {
    static let a = UUID(uuidString: "00000000-0000-0000-0000-0000000000aa")!
    static let b = UUID(uuidString: "00000000-0000-0000-0000-0000000000bb")!

    @Test func aBusyChatsSendsWaitAndGoTogetherWhileOtherChatsProceed() {
        var queue = SendQueue<String>(maxInFlight: 2)
        do { let started = queue.enqueue("a1", chat: Self.a); #expect(started, "a lone send starts a batch at once") }
        do { let batch = queue.nextBatch(max: 10); #expect(batch == ["a1"]) }
        do { let started = queue.enqueue("a2", chat: Self.a); #expect(!started, "its chat is held: it waits for that batch") }
        do { let started = queue.enqueue("a3", chat: Self.a); #expect(!started) }
        do { let started = queue.enqueue("b1", chat: Self.b); #expect(started, "another chat goes ahead in a second batch") }
        do { let batch = queue.nextBatch(max: 10); #expect(batch == ["b1"]) }
        do { let started = queue.enqueue("b2", chat: Self.b); #expect(!started) }
        // the first batch is written: its loop takes everything of its chat that queued meanwhile
        queue.finished(chats: [Self.a])
        do { let batch = queue.nextBatch(max: 10); #expect(batch == ["a2", "a3"], "the batch grew instead of queueing transactions") }
        #expect(queue.inFlight == 2)
        queue.finished(chats: [Self.a, Self.a])
        do { let batch = queue.nextBatch(max: 10); #expect(batch == [], "b2 waits for b's batch; this loop ends") }
        #expect(queue.inFlight == 1)
        queue.finished(chats: [Self.b])
        do { let batch = queue.nextBatch(max: 10); #expect(batch == ["b2"]) }
        queue.finished(chats: [Self.b])
        do { let batch = queue.nextBatch(max: 10); #expect(batch == []) }
        #expect(queue.inFlight == 0 && queue.items.isEmpty && queue.held.isEmpty)
    }

    @Test func aFullBatchLeavesAChatsLaterSendsBehindInOrder() {
        var queue = SendQueue<String>(maxInFlight: 4)
        do { let started = queue.enqueue("a1", chat: Self.a); #expect(started) }
        for item in ["a2", "b1", "a3"] { _ = queue.enqueue(item, chat: item.hasPrefix("a") ? Self.a : Self.b) }
        do { let batch = queue.nextBatch(max: 2); #expect(batch == ["a1", "a2"]) }
        // a3 must not overtake: a is held by the batch in flight; b1 may go
        do { let batch = queue.nextBatch(max: 2); #expect(batch == ["b1"]) }
        queue.finished(chats: [Self.a, Self.a])
        do { let batch = queue.nextBatch(max: 2); #expect(batch == ["a3"]) }
    }
}
