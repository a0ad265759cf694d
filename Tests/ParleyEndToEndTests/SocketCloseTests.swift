import Foundation
import ParleyTestSupport
import Synchronization
import Testing

/// A close the server decides really closes: a raw client that ignores the
/// close frame and keeps sending gets nothing stored and loses its TCP
/// connection after the handshake time (5 s).
@Suite struct SocketCloseTests {
    /// Says hello on a raw socket and reads up to `ready`.
    static func rawHello(_ user: E2EUser, on gateway: GatewayProcess, receiveBuffer: Int? = nil) throws -> RawWebSocket {
        let socket = try RawWebSocket(port: gateway.port, receiveBuffer: receiveBuffer)
        try socket.send(["type": "hello", "token": user.token])
        while let frame = try socket.next() {
            if frame.json?["type"] as? String == "ready" { return socket }
        }
        throw RawWebSocketError("closed before ready")
    }

    /// Reads until the close frame; returns its code.
    static func closeCode(_ socket: RawWebSocket) throws -> UInt16? {
        while let frame = try socket.next() {
            if frame.opcode == 0x8 { return frame.closeCode }
        }
        return nil
    }

    /// Sends `count` sends into `chat` while never answering the close, then
    /// waits for the TCP connection to end; returns the seconds from the close
    /// frame to the end (nil: still open after 10 s).
    static func keepSendingAfterClose(_ socket: RawWebSocket, chat: String, count: Int) throws -> Double? {
        let closedAt = Date()
        for i in 0..<count {
            try? socket.send(["type": "send", "ref": "late-\(i)", "chat_id": chat, "client_id": UUID().uuidString, "body": "after the close \(i)"])
            Thread.sleep(forTimeInterval: 0.05)
        }
        let frames = socket.readUntilClosed(timeout: .seconds(10))
        #expect(frames?.contains { $0.json?["type"] as? String == "ack" } != true, "no send after the close is acknowledged")
        return frames == nil ? nil : Date().timeIntervalSince(closedAt)
    }

    static func storedBodies(_ reader: E2EUser, on gateway: GatewayProcess, chat: String) async throws -> [String] {
        let page = try await HTTP.json("GET", "\(gateway.baseURL)/v1/chats/\(chat)/messages", token: reader.token)
        return ((page.json["messages"] as? [[String: Any]]) ?? []).compactMap { $0["body"] as? String }
    }

    @Test func afterALogoutNothingTheSocketSendsIsStoredAndTheConnectionEnds() async throws {
        let (g1, g2) = try await twoGateways()
        let leaver = try await E2EUser.register(on: g1, name: "Leaver")
        let reader = try await E2EUser.register(on: g1, name: "Reader")
        let chat = try await leaver.group(on: g1, members: [reader])
        let socket = try Self.rawHello(leaver, on: g2)
        #expect(try await HTTP.json("POST", "\(g1.baseURL)/v1/auth/logout", ["refresh_token": leaver.refresh]).status == 204)
        #expect(try Self.closeCode(socket) == 4001)
        let seconds = try Self.keepSendingAfterClose(socket, chat: chat, count: 20)
        #expect(seconds != nil, "the TCP connection is dropped when the client ignores the close")
        if let seconds { #expect(seconds < 8, "dropped \(seconds) s after the close frame") }
        #expect(try await Self.storedBodies(reader, on: g1, chat: chat).isEmpty)
    }

    @Test func aClientThatStopsReadingIsDroppedOnceItsQueueOverflows() async throws {
        // The close (4008) waits behind frames the client never reads: the
        // TCP connection still ends 5 s after the close was decided.
        // g1 holds the stalled socket; the watcher on g2 gets the whole flood
        // too, with room for all of it (a presence frame is dropped from a half-full queue)
        let (g1, g2) = try await twoGateways(
            environment: ["PARLEY_SENDS_PER_SECOND": "10000", "PARLEY_WS_QUEUE_LIMIT": "10"],
            secondEnvironment: ["PARLEY_WS_QUEUE_LIMIT": "100000", "PARLEY_WS_QUEUE_BYTES": "\(1 << 30)"]
        )
        let sender = try await E2EUser.register(on: g1, name: "Flood")
        let stalled = try await E2EUser.register(on: g1, name: "Stalled")
        let chat = try await sender.group(on: g1, members: [stalled])
        let watcher = try await sender.connect(g2)
        let socket = try Self.rawHello(stalled, on: g1, receiveBuffer: 4096)
        let clock = ContinuousClock()
        let helloAt = clock.now
        let online = try await watcher.next("presence")
        #expect(online["user_id"] as? String == stalled.id && online["online"] as? Bool == true)
        // 12 KB frames into a 4 KB window: the kernel's send buffer (up to
        // 4 MB), then NIO's 64 KiB and the queue's 10 frames fill, and the
        // socket is closed with 4008, a close frame it never reads; sends go
        // on until the socket is released (without the handshake timer it
        // never would be)
        let body = String(repeating: "€", count: 4000)
        final class Flag: Sendable { let raised = Atomic<Bool>(false) }
        let released = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<500 where !released.raised.load(ordering: .relaxed) {
                        let status = try await sender.post(g1, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": body]).status
                        #expect(status == 201)
                    }
                }
            }
            group.addTask {
                defer { released.raised.store(true, ordering: .relaxed) }
                let offline = try await watcher.next("presence", timeout: .seconds(90))
                #expect(offline["user_id"] as? String == stalled.id && offline["online"] as? Bool == false, "the stalled socket was released")
            }
            try await group.waitForAll()
        }
        // a client silent for 75 s is dropped anyway (heartbeat): this is sooner
        #expect(clock.now - helloAt < .seconds(40), "dropped by the close's handshake time, not by the silence limit")
        // what the kernel had taken still arrives, then the end
        #expect(socket.readUntilClosed(timeout: .seconds(10)) != nil, "the TCP connection ended")
    }

    @Test func afterA1008ForBadFramesNothingIsActedOn() async throws {
        let (g1, _) = try await twoGateways()
        let flooder = try await E2EUser.register(on: g1, name: "Flood")
        let reader = try await E2EUser.register(on: g1, name: "Reader")
        let chat = try await flooder.group(on: g1, members: [reader])
        let socket = try Self.rawHello(flooder, on: g1)
        for _ in 0..<25 { try socket.send(Array("nonsense".utf8)) }
        #expect(try Self.closeCode(socket) == 1008)
        let seconds = try Self.keepSendingAfterClose(socket, chat: chat, count: 10)
        #expect(seconds != nil, "the TCP connection is dropped when the client ignores the close")
        #expect(try await Self.storedBodies(reader, on: g1, chat: chat).isEmpty)
    }

    @Test func aClientThatAnswersTheCloseIsReleasedAtOnce() async throws {
        let (g1, _) = try await twoGateways()
        let user = try await E2EUser.register(on: g1, name: "Polite")
        let socket = try Self.rawHello(user, on: g1)
        #expect(try await HTTP.json("POST", "\(g1.baseURL)/v1/auth/logout", ["refresh_token": user.refresh]).status == 204)
        #expect(try Self.closeCode(socket) == 4001)
        let answered = Date()
        try socket.send(opcode: 0x8, [0x03, 0xE8])
        #expect(socket.readUntilClosed(timeout: .seconds(10)) != nil)
        #expect(Date().timeIntervalSince(answered) < 2, "a completed handshake ends the connection without waiting")
    }

    /// The frame layer the gateway's own handler implements: fragmented
    /// messages are joined (and bounded as a whole), pings are answered in
    /// between fragments, and a client that closes first gets the close echoed.
    @Test func fragmentsAreJoinedPingsAnsweredAndAClientsCloseEchoed() async throws {
        let (g1, _) = try await twoGateways()
        let user = try await E2EUser.register(on: g1, name: "Frames")
        let socket = try Self.rawHello(user, on: g1)
        let ping = Array(#"{"type": "ping", "ref": "in-three-parts"}"#.utf8)
        try socket.send(opcode: 0x1, Array(ping[0..<10]), fin: false)
        try socket.send(opcode: 0x9, Array("are you there".utf8))  // a control frame between fragments
        try socket.send(opcode: 0x0, Array(ping[10..<20]), fin: false)
        try socket.send(opcode: 0x0, Array(ping[20...]), fin: true)
        var seen: [String] = []
        while seen.count < 2, let frame = try socket.next() {
            if frame.opcode == 0x0A { seen.append("pong \(frame.text)") }
            if let json = frame.json, json["type"] as? String == "pong" { seen.append("pong ref \(json["ref"] as? String ?? "")") }
        }
        #expect(seen == ["pong are you there", "pong ref in-three-parts"], "the control frame is answered first, the joined message after")
        // the client closes first: the server echoes the code and ends the connection
        try socket.send(opcode: 0x8, [0x0F, 0xA0])  // 4000
        let frames = socket.readUntilClosed(timeout: .seconds(5))
        #expect(frames?.first { $0.opcode == 0x8 }?.closeCode == 4000)

        // fragments are bounded as a whole: 64 KiB in two parts closes with 1009
        let big = try Self.rawHello(user, on: g1)
        try big.send(opcode: 0x1, Array(repeating: UInt8(ascii: "x"), count: 40_000), fin: false)
        try big.send(opcode: 0x0, Array(repeating: UInt8(ascii: "x"), count: 40_000), fin: true)
        #expect(try Self.closeCode(big) == 1009)
        // a continuation with nothing to continue is a protocol error
        let stray = try Self.rawHello(user, on: g1)
        try stray.send(opcode: 0x0, Array("x".utf8), fin: true)
        #expect(try Self.closeCode(stray) == 1002)
    }

    /// The server pings every `heartbeat_s` (one timer per event loop for all
    /// its sockets, `HeartbeatWheel`): a client that answers the pings stays
    /// open, one that answers nothing is closed with 1001 after three.
    @Test func silentClientsAreClosedAfterThreeHeartbeatsAndAnsweringOnesStay() async throws {
        let (g1, _) = try await twoGateways(environment: ["PARLEY_WS_HEARTBEAT_S": "1"])
        let user = try await E2EUser.register(on: g1, name: "Beats")
        let answering = try Self.rawHello(user, on: g1)
        let silent = try Self.rawHello(user, on: g1)
        let silentReady = Date()
        // every ping answered, for longer than three periods (beside the silent one)
        let answers = Task.detached { () throws -> Int in
            let start = Date()
            var pings = 0
            while Date().timeIntervalSince(start) < 5, let frame = try answering.next(timeout: .seconds(3)) {
                if frame.opcode == 0x8 { throw RawWebSocketError("a client that answers was closed (\(frame.closeCode.map(String.init) ?? "no code"))") }
                if frame.opcode == 0x9 {
                    pings += 1
                    try answering.send(opcode: 0xA, frame.payload)
                }
            }
            return pings
        }
        var silentPings = 0
        var code: UInt16?
        var closedAfter: TimeInterval?
        while let frame = try silent.next(timeout: .seconds(8)) {
            if frame.opcode == 0x9 { silentPings += 1 }
            if frame.opcode == 0x8 {
                (code, closedAfter) = (frame.closeCode, Date().timeIntervalSince(silentReady))
                break
            }
        }
        #expect(code == 1001)
        #expect(silentPings >= 2, "pinged before it was closed")
        #expect((closedAfter ?? 0) >= 2.9, "not before three periods of silence")
        #expect(try await answers.value >= 3, "a ping about every second")
        // with no socket left, the wheel's timer stops; a new socket starts it again
        try answering.send(opcode: 0x8, [0x03, 0xE8])
        _ = answering.readUntilClosed(timeout: .seconds(5))
        let next = try Self.rawHello(user, on: g1)
        var pinged = false
        while !pinged, let frame = try next.next(timeout: .seconds(3)) { pinged = frame.opcode == 0x9 }
        #expect(pinged)
    }

    /// A socket that goes away during its hello's checks, or right after,
    /// frees the presence slot it took: the per-user limit is not used up
    /// by sockets that are gone.
    @Test func registeredSocketsFreeTheirSlotsWhenTheyClose() async throws {
        let (g1, g2) = try await twoGateways(environment: ["PARLEY_WS_CONNECTIONS_PER_USER": "2"])
        let user = try await E2EUser.register(on: g1, name: "Cycler")
        for _ in 0..<3 {
            // a round needs both slots: the two sockets of the round before gave theirs back
            try await eventually {
                var admitted = 0
                var sockets: [TestWebSocket] = []
                for gateway in [g1, g2] {
                    let socket = try await TestWebSocket.connect("ws://127.0.0.1:\(gateway.port)/v1/ws")
                    sockets.append(socket)
                    try await socket.send(["type": "hello", "token": user.token])
                    if (try? await socket.next("ready", timeout: .seconds(2))) != nil { admitted += 1 }
                }
                for socket in sockets { await socket.close() }
                return admitted == 2
            }
        }
    }

    @Test func socketsDroppedDuringTheirHelloFreeTheirSlots() async throws {
        let (g1, g2) = try await twoGateways(environment: ["PARLEY_WS_CONNECTIONS_PER_USER": "2"])
        let user = try await E2EUser.register(on: g1, name: "Dropper")
        for i in 0..<6 {
            // the TCP connection ends as soon as the hello is written (deinit closes it)
            let socket = try RawWebSocket(port: (i % 2 == 0 ? g1 : g2).port)
            try socket.send(["type": "hello", "token": user.token])
        }
        // both slots come back: two sockets are admitted, on either gateway
        try await eventually {
            let first = try await TestWebSocket.connect("ws://127.0.0.1:\(g1.port)/v1/ws")
            try await first.send(["type": "hello", "token": user.token])
            guard (try? await first.next("ready", timeout: .seconds(2))) != nil else { return false }
            let second = try await TestWebSocket.connect("ws://127.0.0.1:\(g2.port)/v1/ws")
            try await second.send(["type": "hello", "token": user.token])
            let admitted = (try? await second.next("ready", timeout: .seconds(2))) != nil
            await first.close()
            await second.close()
            return admitted
        }
    }
}
