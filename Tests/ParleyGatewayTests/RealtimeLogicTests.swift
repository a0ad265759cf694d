import Foundation
import ParleyCore
import Synchronization
import Testing

@testable import ParleyGateway

/// Pure parts of the realtime gateway: catch-up paging, frame parsing, the bounded queue.
@Suite struct RealtimeLogicTests {
    static let a = UUID(uuidString: "00000000-0000-0000-0000-00000000000a")!
    static let b = UUID(uuidString: "00000000-0000-0000-0000-00000000000b")!
    static let c = UUID(uuidString: "00000000-0000-0000-0000-00000000000c")!

    @Test func catchUpReadsBoundedPagesAndResyncsWhatIsTooFarBehind() {
        let plan = CatchUpPlan(
            [
                SeqRange(chatID: Self.c, after: 10, through: 10),  // nothing missed
                SeqRange(chatID: Self.b, after: 0, through: 250),  // split over pages
                SeqRange(chatID: Self.a, after: 5, through: 35),  // shares a page
                SeqRange(chatID: UUID(), after: 0, through: 501),  // too far behind
            ],
            pageSize: 100, resyncAbove: 500
        )
        #expect(plan.resync.map(\.count) == [501])
        #expect(plan.pages.map { $0.reduce(0) { $0 + $1.count } } == [100, 100, 80])
        #expect(plan.pages == [
            [SeqRange(chatID: Self.a, after: 5, through: 35), SeqRange(chatID: Self.b, after: 0, through: 70)],
            [SeqRange(chatID: Self.b, after: 70, through: 170)],
            [SeqRange(chatID: Self.b, after: 170, through: 250)],
        ])
        // every seq once, in order per chat
        let seqs = plan.pages.flatMap { $0 }.filter { $0.chatID == Self.b }.flatMap { ($0.after + 1)...$0.through }
        #expect(seqs == Array(1...250))
        #expect(CatchUpPlan([], pageSize: 100, resyncAbove: 500) == CatchUpPlan([], pageSize: 1, resyncAbove: 0))
    }

    @Test func refsAreBounded() throws {
        let long = String(repeating: "r", count: 129)
        #expect(throws: ClientFrame.Invalid.self) { try ClientFrame.parse(#"{"type": "ping", "ref": "\#(long)"}"#) }
        do {
            _ = try ClientFrame.parse(#"{"type": "ping", "ref": "\#(long)"}"#)
        } catch {
            #expect(error.ref == nil, "a refused ref is not echoed")
            #expect(error.code == "invalid_frame")
        }
        guard case .ping(let ref) = try ClientFrame.parse(#"{"type": "ping", "ref": "\#(String(repeating: "é", count: 128))"}"#) else {
            Issue.record("not a ping")
            return
        }
        #expect(ref?.count == 128)
    }

    @Test func theQueueIsBoundedInBytesAsWellAsFrames() {
        let closed = Mutex<[UInt16]>([])
        let connection = Connection(
            userID: UUID(), sessionID: UUID(), expiresAt: .distantFuture, chats: [Self.a], queueLimit: 100, byteLimit: 1000,
            socket: SocketClose { code, _ in closed.withLock { $0.append(code) } }
        )
        let frame = String(repeating: "x", count: 300)
        // typing is dropped once the queue holds half its bytes
        connection.enqueue(.frame(frame))
        connection.enqueue(.typing(chatID: Self.a, userID: UUID(), payload: frame))
        #expect(!connection.isClosing)
        connection.enqueue(.frame(frame))
        connection.enqueue(.frame(frame))
        #expect(!connection.isClosing, "900 of 1000 bytes")
        connection.enqueue(.frame(frame))
        #expect(connection.socket.code == 4008, "over the byte limit with 4 frames of 100 allowed")
    }
}
