import Foundation
import NIOCore
import ParleyChat
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

    @Test func sendFramesCarryMentions() throws {
        let chat = UUID().uuidString
        guard case .send(_, _, let request) = try ClientFrame.parse(
            #"{"type": "send", "chat_id": "\#(chat)", "client_id": "x", "body": "hi", "mentions": ["\#(Self.a.uuidString)"]}"#
        ) else {
            Issue.record("not a send")
            return
        }
        #expect(request.mentions == [Self.a.uuidString])
        guard case .send(_, _, let plain) = try ClientFrame.parse(#"{"type": "send", "chat_id": "\#(chat)", "client_id": "x", "body": "hi", "mentions": null}"#) else {
            Issue.record("not a send")
            return
        }
        #expect(plain.mentions.isEmpty)
        #expect(throws: ClientFrame.Invalid.self) { try ClientFrame.parse(#"{"type": "send", "chat_id": "\#(chat)", "client_id": "x", "mentions": "me"}"#) }
        #expect(throws: ClientFrame.Invalid.self) { try ClientFrame.parse(#"{"type": "send", "chat_id": "\#(chat)", "client_id": "x", "mentions": [1]}"#) }
    }

    @Test func searchCursorsRoundTripAndForgeriesAreRefused() {
        let cursor = SearchCursor(rank: 0.0607927, createdAt: Date(timeIntervalSince1970: 1_764_000_000.123456), chatID: Self.a, seq: 42)
        let decoded = SearchCursorCoding.decode(SearchCursorCoding.encode(cursor))
        #expect(decoded?.rank.bitPattern == cursor.rank.bitPattern, "the rank exactly: the next page compares with it")
        #expect(decoded?.chatID == Self.a)
        #expect(decoded?.seq == 42)
        #expect(decoded.map { abs($0.createdAt.timeIntervalSince(cursor.createdAt)) < 0.000_001 } == true)
        for forged in ["", "x", Secrets.base64URL(Data("1:2:3".utf8)), Secrets.base64URL(Data("\(Float.nan.bitPattern):1:\(Self.a):1".utf8)),
                       Secrets.base64URL(Data("0:1:\(Self.a):0".utf8)), Secrets.base64URL(Data("0:-1:\(Self.a):1".utf8))] {
            #expect(SearchCursorCoding.decode(forged) == nil, "\(forged)")
        }
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
        connection.enqueue(.typing(chatID: Self.a, userID: UUID(), payload: ByteBuffer(string: frame)))
        #expect(!connection.isClosing)
        connection.enqueue(.frame(frame))
        connection.enqueue(.frame(frame))
        #expect(!connection.isClosing, "900 of 1000 bytes")
        connection.enqueue(.frame(frame))
        #expect(connection.socket.code == 4008, "over the byte limit with 4 frames of 100 allowed")
    }
}

@Suite struct MessageOrderTests {
    static let a = UUID(uuidString: "00000000-0000-0000-0000-0000000000aa")!
    static let b = UUID(uuidString: "00000000-0000-0000-0000-0000000000bb")!
    let start = ContinuousClock.now

    func at(_ ms: Int) -> ContinuousClock.Instant { self.start + .milliseconds(ms) }

    @Test func aMessagePastAGapWaitsForTheGapAndLeavesWithIt() {
        var order = MessageOrder<Int64>(window: .milliseconds(100))
        #expect(order.receive(chat: Self.a, seq: 5, item: 5, now: self.at(0)) == [5], "a chat's first event passes")
        #expect(order.receive(chat: Self.a, seq: 6, item: 6, now: self.at(1)) == [6])
        #expect(order.receive(chat: Self.a, seq: 8, item: 8, now: self.at(2)) == [], "8 waits for 7")
        #expect(order.receive(chat: Self.a, seq: 9, item: 9, now: self.at(3)) == [])
        #expect(order.receive(chat: Self.b, seq: 1, item: 101, now: self.at(3)) == [101], "other chats do not wait")
        #expect(order.holding == 1)
        #expect(order.nextDeadline == self.at(102))
        #expect(order.receive(chat: Self.a, seq: 7, item: 7, now: self.at(4)) == [7, 8, 9], "the gap closes: all in order")
        #expect(order.holding == 0 && order.nextDeadline == nil)
        #expect(order.receive(chat: Self.a, seq: 10, item: 10, now: self.at(5)) == [10])
        // a republished resend, or a duplicate, passes at once: sockets drop seqs they have
        #expect(order.receive(chat: Self.a, seq: 7, item: 7, now: self.at(6)) == [7])
        #expect(order.receive(chat: Self.a, seq: 12, item: 12, now: self.at(7)) == [])
        #expect(order.receive(chat: Self.a, seq: 12, item: 12, now: self.at(8)) == [], "held once")
        #expect(order.receive(chat: Self.a, seq: 11, item: 11, now: self.at(9)) == [11, 12])
    }

    @Test func afterARedisGapWhatEachChatMissedIsOneGapToRead() {
        var order = MessageOrder<Int64>(window: .milliseconds(100))
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        _ = order.receive(chat: Self.b, seq: 1, item: 101, now: self.at(0))
        let (c, d) = (UUID(), UUID())
        _ = order.receive(chat: c, seq: 1, item: 201, now: self.at(0))
        _ = order.receive(chat: d, seq: 1, item: 301, now: self.at(0))
        #expect(order.receive(chat: Self.a, seq: 4, item: 4, now: self.at(1)) == [])
        #expect(order.receive(chat: c, seq: 3, item: 203, now: self.at(1)) == [])
        // a: 2 and 3 lost, 4 held, 6 is PostgreSQL's last; b: nothing missed;
        // c: 2 lost, 3 held, no socket here follows it any more; d: 2 lost, not held
        let (released, gaps) = order.resumed(latest: [Self.a: 6, Self.b: 1, d: 2], now: self.at(2))
        #expect(released.count == 1 && released.first?.chat == c && released.first?.items == [203], "a chat no socket follows hands over and is forgotten")
        #expect(Set(gaps.map { "\($0.chat) \($0.after) \($0.through)" }) == ["\(Self.a) 1 6", "\(d) 1 2"], "from what went out through PostgreSQL's last")
        #expect(order.holding == 0 && order.nextDeadline == nil, "a filling chat has no deadline")
        #expect(order.remembered == 3)
        // while they are read, what comes waits; other chats flow
        #expect(order.receive(chat: Self.a, seq: 7, item: 7, now: self.at(3)) == [])
        #expect(order.receive(chat: Self.a, seq: 3, item: 3, now: self.at(3)) == [], "a late publish from before the gap waits too")
        #expect(order.receive(chat: Self.b, seq: 2, item: 102, now: self.at(3)) == [102])
        #expect(order.holding == 0 && order.nextDeadline == nil)
        #expect(order.expire(now: self.at(500)).isEmpty, "the gaps are read once, not again when the window ends")
        #expect(order.filled(.init(chat: Self.a, after: 1, through: 6), read: [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)], now: self.at(4)) == [2, 3, 4, 5, 6, 7], "each once, in order")
        #expect(order.filled(.init(chat: d, after: 1, through: 2), read: [], now: self.at(4)) == [], "a failed read: the sockets read it themselves")
        #expect(order.receive(chat: d, seq: 3, item: 303, now: self.at(5)) == [303])
        // a chat forgotten starts afresh with its next event
        #expect(order.receive(chat: c, seq: 9, item: 209, now: self.at(5)) == [209])
    }

    @Test func aChatFollowedHereIsRememberedBeforeItsFirstEventAndARedisGapFindsIt() {
        var order = MessageOrder<Int64>(window: .milliseconds(100), forgetAfter: .seconds(60))
        let c = UUID()
        // two sockets registered: their chats' last seqs, read once subscribed
        order.follow([Self.a: 4, Self.b: 2], now: self.at(0))
        #expect(order.remembered == 2 && order.holding == 0)
        #expect(order.receive(chat: Self.a, seq: 5, item: 5, now: self.at(1)) == [5])
        #expect(order.receive(chat: Self.b, seq: 4, item: 4, now: self.at(1)) == [], "3 is missing: 4 waits, as in a chat seen before")
        #expect(order.receive(chat: Self.b, seq: 3, item: 3, now: self.at(2)) == [3, 4])
        order.follow([Self.a: 3], now: self.at(3))
        #expect(order.receive(chat: Self.a, seq: 6, item: 6, now: self.at(4)) == [6], "a chat it knows is left as it is")
        // quiet for longer than it remembers idle chats: kept while followed here
        _ = order.expire(now: self.at(31_000), followed: { $0 == Self.a })
        _ = order.expire(now: self.at(100_000), followed: { $0 == Self.a })
        #expect(order.remembered == 1, "b, followed by no socket here any more, is forgotten; a is kept")
        // a Redis gap: a missed 7 and 8; c was joined meanwhile
        let (released, gaps) = order.resumed(latest: [Self.a: 8, c: 3], now: self.at(100_001))
        #expect(released.isEmpty && gaps == [.init(chat: Self.a, after: 6, through: 8)], "read once, for all of a's sockets")
        #expect(order.filled(gaps[0], read: [(7, 7), (8, 8)], now: self.at(100_002)) == [7, 8])
        // c is left to its sockets this time, and remembered from its latest on
        #expect(order.remembered == 2)
        #expect(order.receive(chat: c, seq: 5, item: 5, now: self.at(100_003)) == [], "4 is missing")
        #expect(order.receive(chat: c, seq: 4, item: 4, now: self.at(100_004)) == [4, 5])
        var none = MessageOrder<Int64>(window: .zero)
        none.follow([Self.a: 4], now: self.at(0))
        #expect(none.remembered == 0, "without a window nothing is held, nor remembered")
    }

    @Test func aChatAlreadyPastItsLatestAfterARedisGapKeepsWhatItHoldsAndItsDeadline() {
        var order = MessageOrder<Int64>(window: .milliseconds(100))
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        _ = order.receive(chat: Self.a, seq: 2, item: 2, now: self.at(0))
        // 3 and 4 were routed after the chat's last seq was read (2): 3 is missing, 4 held
        #expect(order.receive(chat: Self.a, seq: 4, item: 4, now: self.at(1)) == [])
        let (released, gaps) = order.resumed(latest: [Self.a: 2], now: self.at(2))
        #expect(released.isEmpty && gaps.isEmpty, "nothing before what it handed over is missing")
        #expect(order.holding == 1 && order.nextDeadline == self.at(101), "4 still waits for 3, for the window")
        #expect(order.expire(now: self.at(101)) == [.init(chat: Self.a, after: 2, through: 3)], "and 3 is read when it does not come")
    }

    @Test func aChatReadTwiceAtOnceWaitsForBothReads() {
        var order = MessageOrder<Int64>(window: .milliseconds(100))
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        #expect(order.receive(chat: Self.a, seq: 3, item: 3, now: self.at(1)) == [])
        #expect(order.expire(now: self.at(101)) == [.init(chat: Self.a, after: 1, through: 2)], "an open gap is being read")
        // a Redis gap meanwhile: PostgreSQL is at 6
        let (_, gaps) = order.resumed(latest: [Self.a: 6], now: self.at(102))
        #expect(gaps == [.init(chat: Self.a, after: 1, through: 6)])
        #expect(order.receive(chat: Self.a, seq: 7, item: 7, now: self.at(103)) == [])
        #expect(order.filled(.init(chat: Self.a, after: 1, through: 2), read: [(2, 2)], now: self.at(104)) == [], "the other read still runs: nothing goes out early")
        #expect(order.holding == 0 && order.expire(now: self.at(500)).isEmpty, "and nothing is read a third time")
        #expect(order.filled(.init(chat: Self.a, after: 1, through: 6), read: [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)], now: self.at(105)) == [2, 3, 4, 5, 6, 7], "each once, in order")
        #expect(order.receive(chat: Self.a, seq: 8, item: 8, now: self.at(106)) == [8])
        // both reads failing: the chat goes on after the furthest of them (the sockets read the rest)
        #expect(order.receive(chat: Self.a, seq: 10, item: 10, now: self.at(200)) == [])
        #expect(order.expire(now: self.at(300)) == [.init(chat: Self.a, after: 8, through: 9)])
        #expect(order.resumed(latest: [Self.a: 12], now: self.at(301)).gaps == [.init(chat: Self.a, after: 8, through: 12)])
        #expect(order.filled(.init(chat: Self.a, after: 8, through: 12), read: [], now: self.at(302)) == [])
        #expect(order.filled(.init(chat: Self.a, after: 8, through: 9), read: [], now: self.at(303)) == [10])
        #expect(order.receive(chat: Self.a, seq: 13, item: 13, now: self.at(304)) == [13], "after 12, not after 10")
    }

    @Test func withoutAWindowARedisGapForgetsEveryChat() {
        var order = MessageOrder<Int64>(window: .zero)
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        let (released, gaps) = order.resumed(latest: [Self.a: 5], now: self.at(1))
        #expect(released.isEmpty && gaps.isEmpty, "the sockets catch up themselves")
        #expect(order.remembered == 0)
    }

    @Test func aGapStillOpenAfterTheWindowIsReadOnceAndEverythingWaitsForIt() {
        var order = MessageOrder<Int64>(window: .milliseconds(100))
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        #expect(order.receive(chat: Self.a, seq: 3, item: 3, now: self.at(10)) == [])
        #expect(order.receive(chat: Self.a, seq: 5, item: 5, now: self.at(50)) == [])
        #expect(order.expire(now: self.at(109)).isEmpty, "not yet")
        #expect(order.expire(now: self.at(110)) == [.init(chat: Self.a, after: 1, through: 4)], "from the seq awaited to the last held")
        #expect(order.holding == 0 && order.nextDeadline == nil, "a filling chat is not expired again")
        #expect(order.expire(now: self.at(300)).isEmpty)
        // while it is read, everything waits: the awaited seq too, and what comes after
        #expect(order.receive(chat: Self.a, seq: 2, item: 2, now: self.at(120)) == [])
        #expect(order.receive(chat: Self.a, seq: 6, item: 6, now: self.at(121)) == [])
        #expect(order.receive(chat: Self.b, seq: 1, item: 101, now: self.at(121)) == [101], "other chats do not wait")
        // what was read joins what came (2 came live, 3 was held): each once, in order
        #expect(order.filled(.init(chat: Self.a, after: 1, through: 4), read: [(2, 2), (3, 3), (4, 4)], now: self.at(130)) == [2, 3, 4, 5, 6])
        #expect(order.receive(chat: Self.a, seq: 7, item: 7, now: self.at(131)) == [7], "then it flows again")
        #expect(order.receive(chat: Self.a, seq: 4, item: 4, now: self.at(132)) == [4], "a late duplicate passes (sockets drop it)")
    }

    @Test func aFailedReadLeavesTheGapToTheSocketsAndAFlushDoesNotWait() {
        var order = MessageOrder<Int64>(window: .milliseconds(100))
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        #expect(order.receive(chat: Self.a, seq: 3, item: 3, now: self.at(10)) == [])
        #expect(order.expire(now: self.at(110)).count == 1)
        #expect(order.filled(.init(chat: Self.a, after: 1, through: 2), read: [], now: self.at(120)) == [3], "released as it is: the sockets read 2 themselves")
        #expect(order.receive(chat: Self.a, seq: 4, item: 4, now: self.at(121)) == [4])
        // an edit during a read releases what is held; the read then brings only what is still ahead
        #expect(order.receive(chat: Self.a, seq: 6, item: 6, now: self.at(130)) == [])
        #expect(order.expire(now: self.at(230)) == [.init(chat: Self.a, after: 4, through: 5)])
        #expect(order.flush(chat: Self.a) == [6])
        #expect(order.filled(.init(chat: Self.a, after: 4, through: 5), read: [(5, 5)], now: self.at(240)) == [], "5 is behind what went out")
        #expect(order.filled(.init(chat: Self.b, after: 0, through: 1), read: [(1, 1)], now: self.at(240)) == [], "a chat it does not know")
    }

    @Test func anotherEventOfTheChatGoesAfterTheMessagesReceivedBeforeIt() {
        var order = MessageOrder<Int64>(window: .milliseconds(100))
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        _ = order.receive(chat: Self.a, seq: 3, item: 3, now: self.at(1))
        #expect(order.flush(chat: Self.b) == [])
        #expect(order.flush(chat: Self.a) == [3])
        #expect(order.flush(chat: Self.a) == [])
        #expect(order.holding == 0)
    }

    @Test func holdingIsBoundedAndIdleChatsAreForgotten() {
        var order = MessageOrder<Int64>(window: .milliseconds(100), maxHeld: 3, forgetAfter: .seconds(60))
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        #expect(order.receive(chat: Self.a, seq: 3, item: 3, now: self.at(1)) == [])
        #expect(order.receive(chat: Self.a, seq: 4, item: 4, now: self.at(1)) == [])
        #expect(order.receive(chat: Self.a, seq: 6, item: 6, now: self.at(1)) == [3, 4, 6], "a full hold hands everything over")
        _ = order.receive(chat: Self.b, seq: 1, item: 1, now: self.at(30_000))
        #expect(order.expire(now: self.at(30_001)).isEmpty)
        #expect(order.remembered == 2)
        _ = order.expire(now: self.at(61_000))
        #expect(order.remembered == 1, "a was idle for a minute; b was not")
        _ = order.expire(now: self.at(122_000))
        #expect(order.remembered == 0)
        #expect(order.receive(chat: Self.a, seq: 9, item: 9, now: self.at(122_001)) == [9], "a forgotten chat starts over")
    }

    @Test func aZeroWindowHoldsNothing() {
        var order = MessageOrder<Int64>(window: .zero)
        _ = order.receive(chat: Self.a, seq: 1, item: 1, now: self.at(0))
        #expect(order.receive(chat: Self.a, seq: 3, item: 3, now: self.at(1)) == [3])
        #expect(order.holding == 0)
    }
}

/// Which channels a gateway needs, counted incrementally.
@Suite struct ChannelDemandTests {
    @Test func onlyChannelsWhoseFollowersWentToOrFromZeroAreChanges() {
        var demand = ChannelDemand(fixed: ["revocations"])
        demand.retain("chat:a")
        demand.retain("chat:a")
        demand.retain("user:1")
        var changes = demand.takeChanges(applied: [])
        #expect(changes.subscribe == ["chat:a", "revocations", "user:1"] && changes.unsubscribe.isEmpty)
        var applied: Set<String> = ["chat:a", "revocations", "user:1"]
        // a second follower leaving is no change; the last one is
        demand.release("chat:a")
        #expect(demand.takeChanges(applied: applied) == ([], []))
        demand.release("chat:a")
        changes = demand.takeChanges(applied: applied)
        #expect(changes.subscribe.isEmpty && changes.unsubscribe == ["chat:a"])
        applied.remove("chat:a")
        // gone and back between two passes: nothing to do
        demand.release("user:1")
        demand.retain("user:1")
        #expect(demand.takeChanges(applied: applied) == ([], []))
        // releasing what nobody follows changes nothing
        demand.release("chat:unknown")
        #expect(demand.takeChanges(applied: applied) == ([], []))
        #expect(demand.counts == ["revocations": 1, "user:1": 1])
    }

    @Test func aChangeRedisRefusedIsTakenAgain() {
        var demand = ChannelDemand()
        demand.retain("chat:a")
        let failed = demand.takeChanges(applied: [])
        #expect(demand.takeChanges(applied: []) == ([], []), "taken once")
        demand.retry(failed.subscribe)
        #expect(demand.takeChanges(applied: []).subscribe == ["chat:a"])
    }
}

/// The pieces of a connect built without Foundation's serializer or header parser.
@Suite struct ConnectPathTests {
    @Test func theReadyFrameIsTheJSONClientsExpect() throws {
        let connection = UUID(), user = UUID()
        let text = ServerFrame.ready(connectionID: connection, userID: user, heartbeat: .seconds(25))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(json["type"] as? String == "ready")
        #expect(json["connection_id"] as? String == connection.lowercased)
        #expect(json["user_id"] as? String == user.lowercased)
        #expect(json["heartbeat_s"] as? Int == 25)
        #expect(json.count == 4)
    }

    /// A head as a client sends it, lines joined with CRLF (without the blank line that ends it).
    static func head(_ lines: String...) -> [UInt8] { Array(lines.joined(separator: "\r\n").utf8) }
    static func handshake(_ head: [UInt8]) -> WebSocketHandshake? { WebSocketHandshake(RequestHead(head)) }
    static let handshakeLines = [
        "GET /v1/ws HTTP/1.1", "Host: chat.example:8080", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
    ]

    @Test func aPlainHandshakeIsReadFromItsBytes() throws {
        let plain = try #require(Self.handshake(Array(Self.handshakeLines.joined(separator: "\r\n").utf8)))
        #expect(plain.target == "/v1/ws" && plain.key == "dGhlIHNhbXBsZSBub25jZQ==" && plain.host == "chat.example:8080")
        #expect(plain.origins.isEmpty && plain.authorization == nil && plain.bearerToken == nil)
        // RFC 6455 §1.3's example
        #expect(WebSocketHandshake.accept(key: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(
            plain.response
                == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: upgrade\r\n\r\n"
        )
        // names in any case, spaces around values, lists, a query, what browsers and libraries add
        let browser = try #require(
            Self.handshake(
                Self.head(
                    "GET /v1/ws?v=1 HTTP/1.1", "host: a", "upgrade:WebSocket", "connection: keep-alive, Upgrade ",
                    "sec-websocket-key:\tx3JJHMbDL1EzLkh9GBhXDw==", "SEC-WEBSOCKET-VERSION: 13", "Origin: https://a.example",
                    "Origin: https://b.example", "Authorization: Bearer tok.en", "Authorization: Bearer second",
                    "Sec-WebSocket-Extensions: permessage-deflate", "User-Agent: Mozilla/5.0 (X11; Linux x86_64)"
                )
            )
        )
        #expect(browser.target == "/v1/ws?v=1" && browser.key == "x3JJHMbDL1EzLkh9GBhXDw==")
        #expect(browser.origins == ["https://a.example", "https://b.example"])
        #expect(browser.bearerToken == "tok.en", "the first Authorization, as the general way reads it")
        #expect(WebSocketHandshake.bearerToken("bearer abc") == "abc" && WebSocketHandshake.bearerToken("Basic abc") == nil)
    }

    @Test func anythingButAPlainHandshakeTakesTheGeneralWay() {
        func replacing(_ index: Int, with line: String?) -> [UInt8] {
            var lines = Self.handshakeLines
            if let line { lines[index] = line } else { lines.remove(at: index) }
            return Array(lines.joined(separator: "\r\n").utf8)
        }
        func adding(_ line: String) -> [UInt8] { Array((Self.handshakeLines + [line]).joined(separator: "\r\n").utf8) }
        let refused: [(String, [UInt8])] = [
            ("another method", replacing(0, with: "POST /v1/ws HTTP/1.1")),
            ("HTTP/1.0", replacing(0, with: "GET /v1/ws HTTP/1.0")),
            ("an absolute target", replacing(0, with: "GET http://a/v1/ws HTTP/1.1")),
            ("two spaces", replacing(0, with: "GET  /v1/ws HTTP/1.1")),
            ("no Upgrade", replacing(2, with: nil)),
            ("another protocol", replacing(2, with: "Upgrade: h2c")),
            ("two Upgrades", adding("Upgrade: websocket")),
            ("no Connection: upgrade", replacing(3, with: "Connection: keep-alive")),
            ("no key", replacing(4, with: nil)),
            ("an empty key", replacing(4, with: "Sec-WebSocket-Key: ")),
            ("two keys", adding("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==")),
            ("a key that is a list", replacing(4, with: "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, AAAA")),
            ("version 8", replacing(5, with: "Sec-WebSocket-Version: 8")),
            ("two versions", adding("Sec-WebSocket-Version: 13")),
            ("two hosts", adding("Host: b")),
            ("a body", adding("Content-Length: 1")),
            ("two lengths", Array((Self.handshakeLines + ["Content-Length: 0", "Content-Length: 0"]).joined(separator: "\r\n").utf8)),
            ("a chunked body", adding("Transfer-Encoding: chunked")),
            ("a folded line", adding(" folded")),
            ("a name with a space", adding("X Y: z")),
            ("an empty name", adding(": z")),
            ("a line without a colon", adding("nocolon")),
            ("a control byte", adding("X-A: a\u{1}b")),
            ("a bare LF", Array((Self.handshakeLines.joined(separator: "\r\n") + "\nX-A: b").utf8)),
            ("a bare CR", Array((Self.handshakeLines.joined(separator: "\r\n") + "\rX-A: b").utf8)),
            ("a long head", adding("X-Pad: " + String(repeating: "a", count: WebSocketHandshake.maxBytes))),
            ("many lines", Array((Self.handshakeLines + Array(repeating: "X-A: b", count: WebSocketHandshake.maxHeaderLines)).joined(separator: "\r\n").utf8)),
        ]
        for (reason, head) in refused {
            #expect(Self.handshake(head) == nil, "\(reason)")
        }
        #expect(Self.handshake(adding("X-A: b")) != nil, "the same head with one more ordinary line is plain")
        #expect(Self.handshake(adding("Content-Length: 0")) != nil, "an empty body, said so")
        // which targets open a socket is the route's to say
        #expect(Self.handshake(replacing(0, with: "GET /v1/wsx HTTP/1.1"))?.target == "/v1/wsx")
    }

    @Test func upgradesThatCannotBeTakenAreRefusedWithAPreciseAnswer() {
        func refusal(_ lines: [String], whole: Bool = true) -> WebSocketHandshake.Refusal? {
            WebSocketHandshake.Refusal(
                of: RequestHead(Array(lines.joined(separator: "\r\n").utf8)), whole: whole, path: "/v1/ws",
                originAllowed: { origins, host in origins.allSatisfy { $0 == "https://ok.example" } && host != nil }
            )
        }
        func replacing(_ index: Int, with line: String?) -> [String] {
            var lines = Self.handshakeLines
            if let line { lines[index] = line } else { lines.remove(at: index) }
            return lines
        }
        #expect(refusal(Self.handshakeLines) == nil, "a handshake that can be taken")
        #expect(refusal(Self.handshakeLines + ["Origin: https://ok.example"]) == nil)
        #expect(refusal(Self.handshakeLines + ["Origin: https://evil.example"]) == .forbiddenOrigin)
        #expect(refusal(replacing(0, with: "GET /elsewhere HTTP/1.1") + ["Origin: https://evil.example"]) == .forbiddenOrigin, "any target")
        #expect(refusal(Self.handshakeLines + ["Origin: https://evil.example"], whole: false) == .forbiddenOrigin, "a head too long: its origin")
        #expect(refusal(replacing(4, with: nil), whole: false) == nil, "a head too long: its handshake lines may come after")
        #expect(refusal(replacing(5, with: "Sec-WebSocket-Version: 8")) == .unsupportedVersion)
        #expect(refusal(replacing(5, with: nil)) == .unsupportedVersion)
        #expect(refusal(replacing(4, with: nil)) == .invalidHandshake)
        #expect(refusal(Self.handshakeLines + ["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]) == .invalidHandshake)
        #expect(refusal(Self.handshakeLines + ["Sec-WebSocket-Version: 13"]) == .invalidHandshake)
        #expect(refusal(replacing(3, with: "Connection: keep-alive")) == .invalidHandshake)
        #expect(refusal(replacing(5, with: "Sec-WebSocket-Version: 8") + ["X Y: folded\n bad"]) == .unsupportedVersion, "a malformed head too")
        // the general way answers: another target or method, no WebSocket asked for
        #expect(refusal(replacing(0, with: "GET /v1/chats HTTP/1.1") + ["Sec-WebSocket-Version: 8"]) == nil)
        #expect(refusal(replacing(0, with: "POST /v1/ws HTTP/1.1")) == nil)
        #expect(refusal(replacing(2, with: "Upgrade: h2c") + ["Origin: https://evil.example"]) == nil)
        // the answers
        let version = WebSocketHandshake.Refusal.unsupportedVersion.response
        #expect(version.hasPrefix("HTTP/1.1 426 Upgrade Required\r\n") && version.contains("\r\nSec-WebSocket-Version: 13\r\n"))
        #expect(version.contains("\"code\":\"unsupported_websocket_version\"") && version.contains("\r\nConnection: close\r\n"))
        let invalid = WebSocketHandshake.Refusal.invalidHandshake.response
        #expect(invalid.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && !invalid.contains("\r\nSec-WebSocket-Version: 13\r\n"))
        #expect(WebSocketHandshake.Refusal.forbiddenOrigin.response.hasPrefix("HTTP/1.1 403 Forbidden\r\nContent-Type: application/problem+json"))
        let body = WebSocketHandshake.Refusal.forbiddenOrigin.response.split(separator: "\r\n\r\n", maxSplits: 1).last ?? ""
        #expect(WebSocketHandshake.Refusal.forbiddenOrigin.response.contains("Content-Length: \(body.utf8.count)\r\n"))
    }

    @Test func aMalformedHeadIsStillReadButNotPlain() {
        let head = RequestHead(Array("GET /v1/ws HTTP/1.1\nUpgrade: websocket\r\nOrigin:  https://a.example \r\n folded".utf8))
        #expect(!head.wellFormed)
        #expect(head.method == "GET" && head.target == "/v1/ws" && head.version == "HTTP/1.1" && head.path == "/v1/ws")
        #expect(head.values("upgrade") == ["websocket"] && head.values("origin") == ["https://a.example"])
        #expect(RequestHead(Array("GET /v1/ws?a=b HTTP/1.1\r\nConnection: a, UPGRADE".utf8)).lists("connection", "upgrade"))
        #expect(RequestHead(Array("GET /v1/ws?a=b HTTP/1.1\r\nConnection: a, UPGRADE".utf8)).path == "/v1/ws")
        #expect(RequestHead(Array("GET /v1/ws?a=b HTTP/1.1\r\nConnection: a, UPGRADE".utf8)).wellFormed)
    }

    @Test func theEndOfAHeadIsFoundWhereverItIs() {
        func naive(_ bytes: [UInt8]) -> Int? {
            bytes.count < 4 ? nil : (0...(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == [13, 10, 13, 10] }
        }
        var buffer = ByteBuffer(string: "xx")
        buffer.moveReaderIndex(forwardBy: 1)  // offsets count from the reader index
        buffer.writeString("GET / HTTP/1.1\r\nHost: a\r\n\r\nrest")
        #expect(RequestHead.end(in: buffer) == naive(Array(buffer.readableBytesView)))
        #expect(RequestHead.end(in: ByteBuffer(string: "\r\n\r")) == nil)
        // a search that goes on from where the last one stopped (three bytes before the end)
        let trickled = ByteBuffer(string: "GET / HTTP/1.1\r\nA: b\r\n\r\n")
        #expect(RequestHead.end(in: trickled, from: trickled.readableBytes - 4 - 3) == trickled.readableBytes - 4)
        #expect(RequestHead.end(in: trickled, from: trickled.readableBytes) == nil)
        // every mix of CR, LF and another byte, up to 9 bytes, as a plain search finds it
        let alphabet: [UInt8] = [13, 10, 65]
        for length in 0...9 {
            var digits = [Int](repeating: 0, count: length)
            while true {
                let bytes = digits.map { alphabet[$0] }
                #expect(RequestHead.end(in: ByteBuffer(bytes: bytes)) == naive(bytes), "\(bytes)")
                guard let next = digits.indices.last(where: { digits[$0] < alphabet.count - 1 }) else { break }
                digits[next] += 1
                for index in (next + 1)..<length { digits[index] = 0 }
            }
        }
    }

    @Test func onlyAHeadWithAnOriginHeaderIsLookedAtForRefusal() {
        func has(_ head: String) -> Bool { RequestHead.hasField("origin:", in: Array(head.utf8)) }
        #expect(has("GET /v1/ws HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example"))
        #expect(has("GET /v1/ws HTTP/1.1\r\nORIGIN: https://evil.example\r\nHost: a"))
        #expect(has("GET /v1/ws HTTP/1.1\r\nHost: a\r\noRiGiN:x"))
        #expect(has("GET /v1/ws HTTP/1.1\r\nX-Forwarded: a\r\n\norigin:x"), "a bare newline too")
        #expect(!has("GET /v1/ws HTTP/1.1\r\nHost: a\r\nX-Origin: https://evil.example"))
        #expect(!has("GET /origin:/v1/ws HTTP/1.1\r\nHost: a"), "not a header line")
        #expect(!has("GET /v1/ws HTTP/1.1\r\nHost: a\r\nOrigi"))
        // a partial match that starts a new one ("\n\norigin:")
        #expect(has("GET / HTTP/1.1\r\n\norigin:x"))
    }
}

/// The heartbeat wheel's slots (`HeartbeatSlots`): every socket once per
/// turn, a whole turn after it joined, never after it left.
@Suite struct HeartbeatSlotsTests {
    final class Socket {}

    @Test func eachSocketBeatsOncePerTurnFromAWholeTurnAfterItJoined() {
        let (a, b, c) = (Socket(), Socket(), Socket())
        var slots = HeartbeatSlots<String>(slots: 4)
        let slotA = slots.add("a", id: ObjectIdentifier(a))
        #expect(slots.tick().isEmpty)
        _ = slots.add("b", id: ObjectIdentifier(b))
        _ = slots.add("c", id: ObjectIdentifier(c))
        #expect(slots.count == 3)
        var beats: [[String]] = []
        for _ in 0..<8 { beats.append(slots.tick().sorted()) }
        #expect(beats == [[], [], ["a"], ["b", "c"], [], [], ["a"], ["b", "c"]], "four ticks apart, each from four ticks after joining")
        slots.remove(ObjectIdentifier(a), slot: slotA)
        slots.remove(ObjectIdentifier(a), slot: slotA)  // twice: counted once
        #expect(slots.count == 2)
        beats = (0..<4).map { _ in slots.tick().sorted() }
        #expect(beats == [[], [], [], ["b", "c"]], "a left: no more beats")
        _ = withExtendedLifetime((a, b, c)) {}
    }
}
