import Foundation
import ParleyTestSupport
import Testing

/// Bad input, membership changes, logout and shutdown on /v1/ws (real gateway processes).
@Suite struct RealtimeProtocolTests {
    @Test func badFramesGetTheCodesOfTheProtocol() async throws {
        let (g1, _) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Bad")
        let other = try await E2EUser.register(on: g1, name: "Other")
        let foreignChat = try await other.group(on: g1, members: [])
        let socket = try await a.connect(g1)

        let cases: [(String, String)] = [
            ("{not json", "invalid_json"),
            ("[1,2]", "invalid_json"),
            ("{\"type\": \"dance\"}", "unknown_type"),
            ("{\"ref\": \"m\"}", "invalid_frame"),
            ("{\"type\": \"send\", \"ref\": \"s1\", \"client_id\": \"\(UUID().uuidString)\", \"body\": \"x\"}", "invalid_frame"),
            ("{\"type\": \"send\", \"ref\": \"s2\", \"chat_id\": \"\(foreignChat)\", \"client_id\": \"\(UUID().uuidString)\", \"body\": \"x\"}", "chat_not_found"),
            ("{\"type\": \"read\", \"chat_id\": \"\(foreignChat)\", \"seq\": true}", "invalid_frame"),
            ("{\"type\": \"typing\", \"chat_id\": \"\(foreignChat)\", \"active\": \"yes\"}", "invalid_frame"),
        ]
        for (text, code) in cases {
            try await socket.sendText(text)
            let error = try await socket.next("error")
            #expect(error["code"] as? String == code, "\(text): \(error)")
        }
        try await socket.sendBinary([1, 2, 3])
        #expect(try await socket.next("error")["code"] as? String == "invalid_frame")
        // the connection is still open and working
        try await socket.send(["type": "ping", "ref": "alive"])
        #expect(try await socket.next("pong")["ref"] as? String == "alive")
        // a frame over 64 KiB closes with 1009
        try await socket.sendText("{\"type\": \"ping\", \"pad\": \"" + String(repeating: "x", count: 65 * 1024) + "\"}")
        #expect(await socket.waitForClose() == 1009)
    }

    @Test func tokensAndOriginsAreChecked() async throws {
        let (g1, _) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Tok")
        for token in ["garbage", a.refresh, ""] {
            let socket = try await TestWebSocket.connect("ws://127.0.0.1:\(g1.port)/v1/ws")
            try await socket.send(["type": "hello", "token": token])
            #expect(await socket.waitForClose() == 4001, "token \(token.prefix(8))")
        }
        // the first frame must be hello
        let early = try await TestWebSocket.connect("ws://127.0.0.1:\(g1.port)/v1/ws")
        try await early.send(["type": "ping"])
        #expect(await early.waitForClose() == 4001)
        // a token on the upgrade request works; hello still comes (for resume)
        let withHeader = try await TestWebSocket.connect("ws://127.0.0.1:\(g1.port)/v1/ws", headers: ["Authorization": "Bearer \(a.token)"])
        try await withHeader.send(["type": "hello"])
        #expect(try await withHeader.next("ready")["user_id"] as? String == a.id)
        await withHeader.close()
        // a browser page from a foreign origin cannot open a socket: 403 on the upgrade
        let upgrade = ["Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="]
        let refused = try await HTTP.request("GET", "\(g1.baseURL)/v1/ws", headers: upgrade.merging(["Origin": "https://evil.example"]) { $1 })
        #expect(refused.status == 403)
        #expect(refused.headers["content-type"] == "application/problem+json")
        #expect(String(decoding: refused.body, as: UTF8.self).contains("forbidden_origin"))
        #expect(refused.headers["upgrade"] == nil)
        let allowedUpgrade = try? await HTTP.request("GET", "\(g1.baseURL)/v1/ws", headers: upgrade)
        #expect(allowedUpgrade?.status != 400, "without a browser Origin the same request upgrades")
        let foreign = try await HTTP.request("GET", "\(g1.baseURL)/v1/ws", headers: ["Origin": "https://evil.example"])
        #expect(foreign.status == 403)
        #expect(foreign.headers["content-type"] == "application/problem+json")
        #expect(String(decoding: foreign.body, as: UTF8.self).contains("forbidden_origin"))
        // the gateway's own origin (the web client it serves) needs no configuration; another port of the same host does
        let own = try await TestWebSocket.connect("ws://127.0.0.1:\(g1.port)/v1/ws", headers: ["Origin": "http://127.0.0.1:\(g1.port)"])
        try await own.send(["type": "hello", "token": a.token])
        #expect(try await own.next("ready")["user_id"] as? String == a.id)
        await own.close()
        let otherPort = try await HTTP.request("GET", "\(g1.baseURL)/v1/ws", headers: upgrade.merging(["Origin": "http://127.0.0.1:\(g1.port + 1)"]) { $1 })
        #expect(otherPort.status == 403)
    }

    /// A plain handshake is answered by the gateway's first handler; any other
    /// first head goes through NIO's HTTP upgrade: both open the same socket,
    /// and what neither upgrades gets a 4xx.
    @Test func upgradesTakeTheDirectOrTheGeneralWay() async throws {
        let (g1, _) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Way")
        let hello = Array(try JSONSerialization.data(withJSONObject: ["type": "hello", "token": a.token]))
        // the direct way, with the hello sent right behind the head (before the 101 came)
        let direct = try RawWebSocket(port: g1.port, behindHead: RawWebSocket.frame(hello))
        #expect(direct.responseHead.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
        #expect(try direct.next()?.json?["type"] as? String == "ready")
        // the general way (a head longer than a plain one may be): the same socket
        let general = try RawWebSocket(port: g1.port, headers: ["X-Pad": String(repeating: "p", count: 9000)])
        #expect(general.responseHead.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
        try general.send(hello)
        #expect(try general.next()?.json?["type"] as? String == "ready")
        // what cannot be upgraded gets a 4xx: another path or method (the general way's bare 400), a
        // handshake without its key or Connection: Upgrade, another protocol version (426, RFC 6455 §4.4)
        let handshake = "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        let pad = "X-Pad: \(String(repeating: "p", count: 9000))\r\n"
        for (request, status, code) in [
            ("GET /v1/chats HTTP/1.1\r\n\(handshake)Sec-WebSocket-Version: 13\r\n\r\n", "400", nil),
            ("POST /v1/ws HTTP/1.1\r\n\(handshake)Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", "400", nil),
            ("GET /v1/ws HTTP/1.1\r\n\(handshake)Sec-WebSocket-Version: 8\r\n\r\n", "426", "unsupported_websocket_version"),
            ("GET /v1/ws HTTP/1.1\r\n\(handshake)Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n\r\n", "400", "invalid_websocket_handshake"),
            ("GET /v1/ws HTTP/1.1\r\n\(handshake)\(pad)\r\n", "426", "unsupported_websocket_version"),
            ("GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", "400", "invalid_websocket_handshake"),
            ("GET /v1/ws?x=1 HTTP/1.1\r\n\(handshake.replacingOccurrences(of: "Connection: Upgrade", with: "Connection: keep-alive"))Sec-WebSocket-Version: 13\r\n\r\n", "400", "invalid_websocket_handshake"),
        ] {
            let connection = try RawConnection(port: g1.port)
            try connection.write(request)
            let head = try connection.readHead(timeout: .seconds(10))
            #expect(head?.hasPrefix("HTTP/1.1 \(status)") == true, "\(request.prefix(30)): \(head?.prefix(40) ?? "closed")")
            if let code {
                while try connection.fill(until: Date().addingTimeInterval(5)) {}  // the body, then the close
                #expect(String(decoding: connection.buffer, as: UTF8.self).contains("\"code\":\"\(code)\""), "\(request.prefix(30))")
            }
            if status == "426" { #expect(head?.lowercased().contains("sec-websocket-version: 13") == true) }
        }
        // a handshake whose key comes after 17 KiB of cookies (the general way): upgraded
        let cookies = try RawConnection(port: g1.port)
        try cookies.write(
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                + "Cookie: c=\(String(repeating: "c", count: 17 * 1024))\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        let cookiesHead = try cookies.readHead(timeout: .seconds(10))
        #expect(cookiesHead?.hasPrefix("HTTP/1.1 101") == true, "\(cookiesHead?.prefix(40) ?? "closed")")
        // a client that stops sending halfway through its head is closed at once, not at the head timeout (10 s)
        let halfway = try RawConnection(port: g1.port)
        try halfway.write("GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        halfway.shutdownWrite()
        #expect(halfway.closes(within: .seconds(3)))
        // an upgrade on a kept-alive connection: sent to a new connection
        let kept = try RawConnection(port: g1.port)
        try kept.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let served = try #require(try kept.readHead(timeout: .seconds(10)))
        #expect(served.hasPrefix("HTTP/1.1 200"))
        let length = served.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }.flatMap { Int($0.dropFirst(15).trimmingCharacters(in: .whitespaces)) }
        let bodyLength = try #require(length)
        while kept.buffer.count < bodyLength { _ = try kept.fill(until: Date().addingTimeInterval(10)) }
        kept.buffer.removeFirst(bodyLength)
        try kept.write("GET /v1/ws HTTP/1.1\r\n\(handshake)Sec-WebSocket-Version: 13\r\n\r\n")
        let late = try #require(try kept.readHead(timeout: .seconds(10)))
        #expect(late.hasPrefix("HTTP/1.1 307") && late.lowercased().contains("location: /v1/ws"), "\(late.prefix(60))")
        #expect(kept.closes(within: .seconds(5)))
    }

    @Test func membershipChangesReachEveryInstance() async throws {
        let (g1, g2) = try await twoGateways()
        let owner = try await E2EUser.register(on: g1, name: "Own")
        let joiner = try await E2EUser.register(on: g2, name: "Join")
        let chat = try await owner.group(on: g1, members: [])
        let ownerSocket = try await owner.connect(g1)
        let joinerSocket = try await joiner.connect(g2)

        // a message sent the instant after the join still reaches the new member live
        #expect(try await owner.post(g1, "/v1/chats/\(chat)/members", ["user_id": joiner.id]).status == 201)
        #expect(try await owner.post(g1, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "welcome"]).status == 201)
        let added = try await joinerSocket.next("chat")
        #expect((added["chat"] as? [String: Any])?["id"] as? String == chat)
        #expect(try await joinerSocket.next("message").messageSeq == 1)
        #expect((try await ownerSocket.next("chat")["chat"] as? [String: Any])?["members_count"] as? Int == 2)
        // the joiner can send on the socket they already had
        try await joinerSocket.send(["type": "send", "ref": "j", "chat_id": chat, "client_id": UUID().uuidString, "body": "thanks"])
        #expect(try await joinerSocket.next("ack").messageSeq == 2)

        // a member socket on the removed member's instance: it shows when that instance has routed an event
        let witness = try await owner.connect(g2)
        let removed = try await HTTP.request("DELETE", "\(g1.baseURL)/v1/chats/\(chat)/members/\(joiner.id)", headers: ["Authorization": "Bearer \(owner.token)"])
        #expect(removed.status == 204)
        #expect(try await joinerSocket.next("chat_removed")["chat_id"] as? String == chat)
        try await ownerSocket.send(["type": "send", "chat_id": chat, "client_id": UUID().uuidString, "body": "after removal"])
        _ = try await ownerSocket.next("ack")
        // g2 routed seq 3 to its sockets; a pong queued after that comes after anything queued for the removed member
        _ = try await witness.next("message") { $0.messageChat == chat && $0.messageSeq == 3 }
        try await joinerSocket.send(["type": "ping", "ref": "after-3"])
        _ = try await joinerSocket.next("pong") { $0["ref"] as? String == "after-3" }
        await witness.close()
        let late = joinerSocket.allFrames.filter { $0["type"] as? String == "message" && $0.messageChat == chat }.compactMap(\.messageSeq)
        #expect(!late.contains(3), "a removed member gets nothing more from the chat")
        try await joinerSocket.send(["type": "send", "chat_id": chat, "client_id": UUID().uuidString, "body": "sneaky"])
        #expect(try await joinerSocket.next("error")["code"] as? String == "chat_not_found")

        // a chat created while connected is followed by its creator's socket at once
        let fresh = try await joiner.group(on: g2, members: [owner])
        _ = try await joinerSocket.next("chat")
        try await joinerSocket.send(["type": "send", "ref": "new", "chat_id": fresh, "client_id": UUID().uuidString, "body": "mine"])
        #expect(try await joinerSocket.next("ack")["ref"] as? String == "new")
        let deadline = ContinuousClock.now + .seconds(10)
        while DeliveryUnderFaultsTests.seqs(ownerSocket, chat: fresh).isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(DeliveryUnderFaultsTests.seqs(ownerSocket, chat: fresh) == [1])
    }

    @Test func logoutClosesTheSessionsSocketsOnEveryInstance() async throws {
        let (g1, g2) = try await twoGateways()
        let user = try await E2EUser.register(on: g1, name: "Bye")
        let socket = try await user.connect(g2)
        #expect(try await HTTP.json("POST", "\(g1.baseURL)/v1/auth/logout", ["refresh_token": user.refresh]).status == 204)
        #expect(await socket.waitForClose() == 4001)
    }

    @Test func shutdownClosesWith1012() async throws {
        let (g1, g2) = try await twoGateways()
        let user = try await E2EUser.register(on: g1, name: "Restart")
        let socket = try await user.connect(g2)
        g2.child.signal(SIGTERM)
        let code = await socket.waitForClose(timeout: .seconds(30))
        #expect(code == 1012, "closed with \(code.map(String.init) ?? "nothing"); gateway (running: \(g2.child.isRunning)) said:\n\(g2.child.outputText.suffix(1500))")
        #expect(await g2.child.waitForExit(timeout: .seconds(20)) == 0)
    }
}

@Suite struct RealtimeLimitsTests {
    @Test func resumingMoreThan500MissedMessagesAsksForAResync() async throws {
        let (g1, g2) = try await twoGateways(environment: ["PARLEY_SENDS_PER_SECOND": "10000"])
        let a = try await E2EUser.register(on: g1, name: "Many")
        let b = try await E2EUser.register(on: g2, name: "Away")
        let busy = try await a.group(on: g1, members: [b])
        let quiet = try await a.group(on: g1, members: [b])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<130 { _ = try await a.post(g1, "/v1/chats/\(busy)/messages", ["client_id": UUID().uuidString, "body": "x"]) } }
            }
            try await group.waitForAll()
        }
        for i in 1...3 { _ = try await a.post(g1, "/v1/chats/\(quiet)/messages", ["client_id": UUID().uuidString, "body": "q\(i)"]) }
        // more than one catch-up page (100), less than a resync
        let medium = try await a.group(on: g1, members: [b])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<2 {
                group.addTask { for _ in 0..<125 { _ = try await a.post(g1, "/v1/chats/\(medium)/messages", ["client_id": UUID().uuidString, "body": "m"]) } }
            }
            try await group.waitForAll()
        }
        let socket = try await b.connect(g2, resume: [busy: 10, quiet: 1, medium: 0])
        // chats are caught up in no particular order: look at everything that came
        _ = try await socket.next("resync")
        let quietDeadline = ContinuousClock.now + .seconds(10)
        while DeliveryUnderFaultsTests.seqs(socket, chat: quiet).count < 2 && ContinuousClock.now < quietDeadline { try await Task.sleep(for: .milliseconds(20)) }
        let frames = socket.allFrames
        #expect(frames.filter { $0["type"] as? String == "resync" }.compactMap { $0["chat_id"] as? String } == [busy])
        #expect(DeliveryUnderFaultsTests.seqs(socket, chat: quiet) == [2, 3], "the small gap is replayed as messages, in order")
        let deadline0 = ContinuousClock.now + .seconds(10)
        while DeliveryUnderFaultsTests.seqs(socket, chat: medium).count < 250 && ContinuousClock.now < deadline0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(DeliveryUnderFaultsTests.seqs(socket, chat: medium) == Array(1...250), "three pages, every message once, in order")
        #expect(DeliveryUnderFaultsTests.seqs(socket, chat: busy).isEmpty)
        // live messages of the resynced chat flow again
        _ = try await a.post(g1, "/v1/chats/\(busy)/messages", ["client_id": UUID().uuidString, "body": "live"])
        let deadline = ContinuousClock.now + .seconds(10)
        while DeliveryUnderFaultsTests.seqs(socket, chat: busy).isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(DeliveryUnderFaultsTests.seqs(socket, chat: busy) == [521])
    }

    @Test func connectionsPerUserAndFloodsOfBadFramesAreLimited() async throws {
        let (g1, g2) = try await twoGateways(environment: ["PARLEY_WS_CONNECTIONS_PER_USER": "2"])
        let user = try await E2EUser.register(on: g1, name: "Many")
        let first = try await user.connect(g1)
        let second = try await user.connect(g2)
        let third = try await TestWebSocket.connect("ws://127.0.0.1:\(g1.port)/v1/ws")
        try await third.send(["type": "hello", "token": user.token])
        #expect(await third.waitForClose() == 1008)
        // bad frames are answered one by one, until there are too many
        for _ in 0..<5 {
            try await first.sendText("nonsense")
            #expect(try await first.next("error")["code"] as? String == "invalid_json")
        }
        for _ in 0..<20 { try await first.sendText("nonsense") }
        #expect(await first.waitForClose() == 1008)
        try await second.send(["type": "ping", "ref": "ok"])
        #expect(try await second.next("pong")["ref"] as? String == "ok")
    }

    @Test func framesAndTypingArePacedPerSocket() async throws {
        let (g1, _) = try await twoGateways()
        let user = try await E2EUser.register(on: g1, name: "Pace")
        let chat = try await user.group(on: g1, members: [])
        let socket = try await user.connect(g1)
        // typing: 2 frames a second per socket, start or stop alike
        for active in [true, false, true, false] { try await socket.send(["type": "typing", "chat_id": chat, "active": active]) }
        #expect(try await socket.next("error")["code"] as? String == "rate_limited")
        // any frames: 50 a second per socket (a bucket of 50 refilled at 50/s), then 1008
        let started = ContinuousClock.now
        for i in 0..<80 { try? await socket.send(["type": "ping", "ref": "\(i)"]) }
        #expect(await socket.waitForClose() == 1008)
        let elapsed = ContinuousClock.now - started
        let refilled = Int(Double(elapsed.components.seconds) * 50 + Double(elapsed.components.attoseconds) / 1e18 * 50)
        let pongs = socket.allFrames.filter { $0["type"] as? String == "pong" }.count
        #expect(pongs >= 40 && pongs <= 52 + refilled, "\(pongs) pings answered before the close, \(elapsed) after the first")
    }
}
