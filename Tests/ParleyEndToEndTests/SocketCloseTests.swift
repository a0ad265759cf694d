import Foundation
import ParleyTestSupport
import Testing

/// A close the server decides really closes: a raw client that ignores the
/// close frame and keeps sending gets nothing stored and loses its TCP
/// connection after the handshake time (5 s).
@Suite struct SocketCloseTests {
    /// Says hello on a raw socket and reads up to `ready`.
    static func rawHello(_ user: E2EUser, on gateway: GatewayProcess) throws -> RawWebSocket {
        let socket = try RawWebSocket(port: gateway.port)
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

    /// A socket that goes away during its hello's checks, or right after,
    /// frees the presence slot it took: the per-user limit is not used up
    /// by sockets that are gone.
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
