import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import ParleyChat
import ParleyCore
import Testing

@testable import ParleyGateway

/// The per-socket state machine (`SocketMachine`) and the outbound queue's
/// decisions (`OutboundState`), without a socket.
@Suite struct SocketMachineTests {
    static let chat = UUID(uuidString: "00000000-0000-0000-0000-0000000000c1")!
    let start = ContinuousClock.now

    func at(_ ms: Int) -> ContinuousClock.Instant { self.start + .milliseconds(ms) }

    static func send(_ ref: String) -> SocketMachine.Input {
        .text(#"{"type": "send", "ref": "\#(ref)", "chat_id": "\#(Self.chat.uuidString)", "client_id": "\#(ref)", "body": "hi"}"#)
    }

    /// A compact picture of actions, to compare.
    static func describe(_ actions: [SocketMachine.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .authenticate(let token, let resume): return "authenticate \(token ?? "-") \(resume.count)"
            case .perform(let frame): return "perform \(frame.ref ?? "-")"
            case .reply(let text):
                let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
                return "reply \(json?["type"] as? String ?? "?") \(json?["code"] as? String ?? json?["ref"] as? String ?? "")"
            case .close(let code, _, let afterQueued): return "close \(code)\(afterQueued ? " after queued" : "")"
            case .pauseReading: return "pause"
            case .resumeReading: return "resume"
            case .drainLater: return "later"
            }
        }
    }

    func live() -> SocketMachine {
        var machine = SocketMachine(limits: RealtimeLimits(), now: self.at(0))
        _ = machine.received(.text(#"{"type": "hello", "token": "t"}"#), now: self.at(0))
        _ = machine.authenticated(now: self.at(0))
        return machine
    }

    @Test func helloThenFramesWaitingForTheCheckAreActedOnInOrder() {
        var machine = SocketMachine(limits: RealtimeLimits(), now: self.at(0))
        #expect(machine.phase == .awaitingHello)
        #expect(Self.describe(machine.received(.text(#"{"type": "hello", "token": "t", "resume": {"\#(Self.chat)": 3}}"#), now: self.at(1))) == ["authenticate t 1"])
        #expect(machine.phase == .authenticating)
        // frames sent right after hello wait for the check
        #expect(Self.describe(machine.received(.text(#"{"type": "ping", "ref": "p1"}"#), now: self.at(2))).isEmpty)
        #expect(Self.describe(machine.received(Self.send("s1"), now: self.at(3))).isEmpty)
        #expect(Self.describe(machine.received(.text(#"{"type": "ping", "ref": "p2"}"#), now: self.at(4))).isEmpty)
        #expect(Self.describe(machine.authenticated(now: self.at(5))) == ["reply pong p1", "perform s1"], "the send waits for nothing after it")
        #expect(machine.phase == .live)
        #expect(Self.describe(machine.performed(.done, now: self.at(6))) == ["reply pong p2"])
        #expect(machine.helloTimedOut().isEmpty, "the hello came in time")
    }

    @Test func aFirstFrameThatIsNotHelloOrNoHelloIsRefusedWith4001() {
        var notHello = SocketMachine(limits: RealtimeLimits(), now: self.at(0))
        #expect(Self.describe(notHello.received(.text(#"{"type": "ping"}"#), now: self.at(1))) == ["close 4001"])
        #expect(notHello.received(.text(#"{"type": "hello", "token": "t"}"#), now: self.at(2)).isEmpty, "closing: nothing acted on")
        var binary = SocketMachine(limits: RealtimeLimits(), now: self.at(0))
        #expect(Self.describe(binary.received(.binary, now: self.at(1))) == ["close 4001"])
        var malformed = SocketMachine(limits: RealtimeLimits(), now: self.at(0))
        #expect(Self.describe(malformed.received(.text("{"), now: self.at(1))) == ["reply error invalid_json", "close 4001 after queued"])
        var silent = SocketMachine(limits: RealtimeLimits(), now: self.at(0))
        #expect(Self.describe(silent.helloTimedOut()) == ["close 4001"])
        #expect(silent.phase == .closing)
    }

    @Test func oneFrameIsActedOnAtATimeAndAFullInboxPausesReading() {
        var machine = self.live()
        #expect(Self.describe(machine.received(Self.send("s0"), now: self.at(1))) == ["perform s0"])
        var actions: [String] = []
        for i in 1...SocketMachine.inboxLimit { actions += Self.describe(machine.received(Self.send("s\(i)"), now: self.at(1))) }
        #expect(actions == ["pause"], "a send in flight holds the others; reading pauses when \(SocketMachine.inboxLimit) wait")
        var performed: [String] = []
        for _ in 0..<SocketMachine.inboxLimit { performed += Self.describe(machine.performed(.done, now: self.at(2))) }
        let order = performed.filter { $0.hasPrefix("perform") }
        #expect(order == (1...SocketMachine.inboxLimit).map { "perform s\($0)" }, "in the order they came")
        #expect(performed.contains("resume"))
        #expect(performed.firstIndex(of: "resume")! < performed.count - 1, "reading resumes once half the inbox is free")
    }

    @Test func framesReadAfterThePauseWaitTheirTurnInOrderAndArePacedNotClosed() {
        // a client sending 10 frames a second to a server stalled for 20 s:
        // reading paused, and one read then brings 200 frames at once
        var machine = self.live()
        _ = machine.received(Self.send("s0"), now: self.at(1))
        var actions: [String] = []
        for i in 1...200 { actions += Self.describe(machine.received(Self.send("s\(i)"), now: self.at(20_000))) }
        #expect(actions == ["pause"], "a slow server's backlog is not the client's flood")
        // the server recovered: each send commits in 5 ms, faster than the 50 a
        // second the socket may have, so the backlog waits for the budget
        var now = 20_000
        var performed: [String] = []
        var next = Self.describe(machine.performed(.done, now: self.at(now)))
        var waits = 0
        while !next.isEmpty {
            performed += next
            if next.contains("later") {
                waits += 1
                now += 20  // the timer the handler sets (20 ms: one token at 50 a second)
                next = Self.describe(machine.paced(now: self.at(now)))
            } else if next.contains(where: { $0.hasPrefix("perform") }) {
                now += 5
                next = Self.describe(machine.performed(.done, now: self.at(now)))
            } else {
                break
            }
        }
        #expect(performed.filter { $0.hasPrefix("perform") } == (1...200).map { "perform s\($0)" }, "each once, in the order they came")
        #expect(!performed.contains { $0.hasPrefix("close") })
        #expect(waits > 100, "paced at the budget's rate once its 50 were spent")
        #expect(now - 20_000 >= 2_900, "200 frames at 50 a second, after a burst of 50: \(now - 20_000) ms")
    }

    @Test func framesOverTheBudgetThatTheServerCouldActOnAtOnceClose1008() {
        var machine = self.live()
        var actions: [String] = []
        // pings are answered at once (nothing waits): the 51st in a second is the client's flood
        for _ in 0...RealtimeLimits().framesPerSecond { actions += Self.describe(machine.received(.text(#"{"type": "ping"}"#), now: self.at(1))) }
        #expect(actions.filter { $0.hasPrefix("reply") }.count == RealtimeLimits().framesPerSecond)
        #expect(actions.last == "close 1008 after queued")
        #expect(!actions.contains("later"))
    }

    @Test func moreWaitingThanReadsCanBringCloses1008() {
        var machine = self.live()
        _ = machine.received(Self.send("s0"), now: self.at(1))
        let frame = String(repeating: " ", count: 8 * 1024 - 16) + #"{"type": "ping"}"#
        var actions: [String] = []
        for _ in 0..<(machine.inboxBytes / (8 * 1024) + 1) { actions += Self.describe(machine.received(.text(frame), now: self.at(1))) }
        #expect(actions == ["pause", "close 1008 after queued"], "reading pauses, and what was read already is bounded too")
        #expect(machine.performed(.done, now: self.at(2)).isEmpty, "nothing that waited is acted on")
    }

    @Test func badFramesAreAnsweredThenTooManyClose1008AndNothingMoreIsActedOn() {
        var machine = self.live()
        var actions: [String] = []
        for i in 0...RealtimeLimits().badFramesPerMinute {
            actions += Self.describe(machine.received(.binary, now: self.at(i)))
        }
        #expect(actions.filter { $0 == "reply error invalid_frame" }.count == RealtimeLimits().badFramesPerMinute + 1)
        #expect(actions.last == "close 1008 after queued")
        #expect(machine.phase == .closing)
        #expect(machine.received(Self.send("late"), now: self.at(100)).isEmpty)
        // a minute later the count starts again
        var patient = self.live()
        for i in 0..<RealtimeLimits().badFramesPerMinute { _ = patient.received(.binary, now: self.at(i)) }
        #expect(Self.describe(patient.received(.binary, now: self.at(61_000))) == ["reply error invalid_frame"])
    }

    @Test func outagesAreAnsweredButNotCountedAndTypingAndFramesArePaced() {
        var machine = self.live()
        for i in 0..<30 {
            _ = machine.received(Self.send("s\(i)"), now: self.at(i * 100))
            _ = machine.performed(.failed(ref: "s\(i)", code: "unavailable", detail: "try again"), now: self.at(i * 100))
        }
        #expect(machine.phase == .live, "a dependency's outage is not the client's fault")
        let typing = SocketMachine.Input.text(#"{"type": "typing", "chat_id": "\#(Self.chat)", "active": true}"#)
        var paced = self.live()
        #expect(Self.describe(paced.received(typing, now: self.at(10_000))) == ["perform -"])
        _ = paced.performed(.done, now: self.at(10_000))
        _ = paced.received(typing, now: self.at(10_000))
        _ = paced.performed(.done, now: self.at(10_000))
        #expect(Self.describe(paced.received(typing, now: self.at(10_000))) == ["reply error rate_limited"])
        var flood = self.live()
        var actions: [String] = []
        for _ in 0...RealtimeLimits().framesPerSecond { actions += Self.describe(flood.received(.text(#"{"type": "ping"}"#), now: self.at(20_000))) }
        #expect(actions.last == "close 1008 after queued")
    }

    @Test func aCloseDecidedElsewhereDropsWhatWaitsAndResumesReadingForTheClientsClose() {
        var machine = self.live()
        _ = machine.received(Self.send("s0"), now: self.at(1))
        var paused = false
        for i in 1...SocketMachine.inboxLimit where Self.describe(machine.received(Self.send("s\(i)"), now: self.at(1))) == ["pause"] { paused = true }
        #expect(paused)
        #expect(Self.describe(machine.closeDecided()) == ["resume"])
        #expect(machine.performed(.done, now: self.at(2)).isEmpty, "nothing that waited is acted on")
    }

    @Test func theOutboundQueueDeliversEachMessageOnceInOrderAndAsksForGaps() {
        let me = UUID()
        let other = UUID()
        var state = OutboundState(userID: me, delivered: [Self.chat: 5])
        let follows: (UUID) -> Bool = { $0 == Self.chat }
        func kind(_ decision: OutboundState.Decision) -> String {
            switch decision {
            case .skip: return "skip"
            case .write(let frame): return "write \(String(buffer: frame))"
            case .close(let code, _): return "close \(code)"
            case .step(.fill(_, let after, let seq, _)): return "fill \(after)..\(seq)"
            case .step(.catchUp): return "catch up"
            case .step(.chatAdded): return "chat added"
            case .step(.chatChanged): return "chat changed"
            }
        }
        #expect(kind(state.take(.message(chatID: Self.chat, seq: 5, payload: ByteBuffer(string: "m5")), follows: follows)) == "skip", "already delivered")
        #expect(kind(state.take(.message(chatID: Self.chat, seq: 6, payload: ByteBuffer(string: "m6")), follows: follows)) == "write m6")
        #expect(kind(state.take(.message(chatID: Self.chat, seq: 9, payload: ByteBuffer(string: "m9")), follows: follows)) == "fill 6..9")
        #expect(state.delivered[Self.chat] == 6, "a gap is read before the message past it")
        let accepted = [7, 8, 8].map { state.accept(chatID: Self.chat, seq: $0, follows: true) }
        #expect(accepted == [true, true, false], "the gap's messages once each, never twice")
        #expect(kind(state.take(.message(chatID: UUID(), seq: 1, payload: ByteBuffer(string: "x")), follows: follows)) == "skip", "a chat not followed")
        #expect(kind(state.take(.typing(chatID: Self.chat, userID: me, payload: ByteBuffer(string: "t")), follows: follows)) == "skip", "never echoed")
        #expect(kind(state.take(.typing(chatID: Self.chat, userID: other, payload: ByteBuffer(string: "t")), follows: follows)) == "write t")
        #expect(kind(state.take(.presence(userID: other, online: true, payload: ByteBuffer(string: "on")), follows: follows)) == "write on")
        #expect(kind(state.take(.presence(userID: other, online: true, payload: ByteBuffer(string: "on")), follows: follows)) == "skip", "told once")
        #expect(state.missed(upTo: [Self.chat: 12]) == [SeqRange(chatID: Self.chat, after: 8, through: 12)])
        #expect(kind(state.take(.chatRemoved(Self.chat), follows: follows)).hasPrefix("write"))
        #expect(state.delivered[Self.chat] == nil && state.missed(upTo: [Self.chat: 12]).isEmpty)
        #expect(kind(state.take(.close(code: 1008, reason: "x"), follows: follows)) == "close 1008")
    }

    @Test func aCatchUpWithNothingMissedIsDecidedWithoutAStep() {
        var state = OutboundState(userID: UUID(), delivered: [Self.chat: 5])
        let follows: (UUID) -> Bool = { $0 == Self.chat }
        func isStep(_ decision: OutboundState.Decision) -> Bool {
            if case .step(.catchUp) = decision { return true }
            return false
        }
        func isSkip(_ decision: OutboundState.Decision) -> Bool {
            if case .skip = decision { return true }
            return false
        }
        // a connect without resume: the second read found what the first did
        state.catchUpTo = [Self.chat: 5]
        #expect(isSkip(state.take(.catchUp(upTo: nil), follows: follows)), "nothing to read")
        #expect(state.catchUpTo == nil, "consumed, as the step would")
        // a message came in between the two reads, or a resume from further back
        state.catchUpTo = [Self.chat: 7]
        #expect(isStep(state.take(.catchUp(upTo: nil), follows: follows)), "7 > 5: read 6 and 7")
        #expect(state.catchUpTo == [Self.chat: 7], "left for the step")
        // where it stops is not known (a user whose chats could not be read after a Redis gap): the step reads it
        state.catchUpTo = nil
        #expect(isStep(state.take(.catchUp(upTo: nil), follows: follows)))
        // after a Redis gap, where the instance read what each chat missed:
        // up to where the user's chats were, nothing left to read
        state.catchUpTo = nil
        #expect(isSkip(state.take(.catchUp(upTo: [Self.chat: 5, UUID(): 9]), follows: follows)), "a chat it does not follow is not missed")
        #expect(state.catchUpTo == nil)
        #expect(isStep(state.take(.catchUp(upTo: [Self.chat: 6]), follows: follows)), "6 was not delivered here: the socket reads it")
        #expect(state.catchUpTo == [Self.chat: 6], "left for the step")
    }
}

/// Text frames encoded once for every socket (`WireFrame`), read back by NIO's decoder.
@Suite struct WireFrameTests {
    @Test(arguments: [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
    func aFrameOfEveryLengthClassDecodesAsTheTextItCarries(length: Int) throws {
        let text = String(repeating: "é", count: length / 2) + String(repeating: "x", count: length % 2)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
        var wire = WireFrame.text(text)
        #expect(wire.readableBytes == WireFrame.headerBytes(text.utf8.count) + text.utf8.count)
        // the same bytes from a buffer as from a string
        #expect(WireFrame.text(ByteBuffer(string: text)) == wire)
        // bytes that are not UTF-8 are replaced, never sent as text
        let invalid = WireFrame.text(ByteBuffer(bytes: Array(text.utf8) + [0xFF]))
        #expect(invalid == WireFrame.text(text + "\u{FFFD}"))
        // split in two, as TCP may deliver it
        let first = wire.readSlice(length: min(3, wire.readableBytes))!
        try channel.writeInbound(first)
        try channel.writeInbound(wire)
        let frame = try #require(try channel.readInbound(as: WebSocketFrame.self))
        #expect(frame.fin && frame.opcode == .text && frame.maskKey == nil)
        #expect(String(buffer: frame.data) == text)
        #expect(try channel.readInbound(as: WebSocketFrame.self) == nil, "one frame, nothing left over")
        _ = try channel.finish()
    }
}
