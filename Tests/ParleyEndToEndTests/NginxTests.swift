import Foundation
import ParleyTestSupport
import Testing

/// Two gateways behind Debian's nginx, configured with the deployment's own
/// template (deploy/nginx/parley.conf.template): clients only ever talk to nginx.
@Suite struct NginxTests {
    @Test func twoGatewaysBehindNginxDeliverLimitAndFailOver() async throws {
        let (g1, g2) = try await twoGateways(environment: ["PARLEY_SENDS_PER_SECOND": "10000"])
        let nginx = try NginxProcess(upstreams: [g1.port, g2.port])
        try await nginx.waitUntilReady()

        // REST through nginx
        let owner = try await E2EUser.register(on: nginx, name: "Owner")
        let member = try await E2EUser.register(on: nginx, name: "Member")
        let chat = try await owner.group(on: nginx, members: [member])

        // the web client through nginx: its page, and a socket opened from the page's origin
        // (nginx passes the browser's Host with its port, which the gateway compares the Origin with)
        let page = try await HTTP.request("GET", "\(nginx.baseURL)/")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        let fromPage = try await TestWebSocket.connect("ws://127.0.0.1:\(nginx.port)/v1/ws", headers: ["Origin": nginx.baseURL])
        try await fromPage.send(["type": "hello", "token": member.token])
        #expect(try await fromPage.next("ready")["user_id"] as? String == member.id)
        await fromPage.close()

        // WebSockets through nginx: least_conn puts the member's two sockets on the two gateways
        let first = try await member.connect(nginx)
        let second = try await member.connect(nginx)
        for i in 1...3 {
            #expect(try await owner.post(nginx, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "hello \(i)"]).status == 201)
        }
        for socket in [first, second] {
            let deadline = ContinuousClock.now + .seconds(10)
            while DeliveryUnderFaultsTests.seqs(socket, chat: chat).count < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(DeliveryUnderFaultsTests.seqs(socket, chat: chat) == [1, 2, 3], "both sockets, on both gateways, get every message")
        }

        // per-address limits count the client's address (X-Forwarded-For, appended by nginx), not nginx's
        let crowded = E2EUser.address()
        for n in 0..<10 {
            let registered = try await HTTP.json(
                "POST", "\(nginx.baseURL)/v1/auth/register",
                ["email": "crowd-\(n)-\(UUID().uuidString.prefix(6).lowercased())@example.test", "password": "correct horse battery", "display_name": "Crowd"],
                clientAddress: crowded
            )
            #expect(registered.status == 201)
        }
        let eleventh = try await HTTP.json(
            "POST", "\(nginx.baseURL)/v1/auth/register", ["email": "crowd-x-\(UUID().uuidString.prefix(6).lowercased())@example.test", "password": "correct horse battery", "display_name": "Crowd"],
            clientAddress: crowded
        )
        #expect(eleventh.status == 429, "the eleventh registration from one client address")
        _ = try await E2EUser.register(on: nginx, name: "Elsewhere")  // another address is not limited

        // a gateway stops (SIGTERM) while messages are sent: its sockets get 1012, reconnect
        // through nginx to the other gateway with resume, and miss nothing
        let total = 120
        let load = Task { try await DeliveryUnderFaultsTests.load([owner], chat: chat, count: total, gateways: { [nginx] }) }
        try await eventually { try await owner.lastSeq(on: nginx, chat) >= 10 }
        g2.child.signal(SIGTERM)
        let closed = await withTaskGroup(of: (Int, UInt16?).self) { group in
            for (index, socket) in [first, second].enumerated() {
                group.addTask { (index, await socket.waitForClose(timeout: .seconds(3))) }
            }
            return await group.reduce(into: [Int: UInt16?]()) { $0[$1.0] = $1.1 }
        }
        let draining = try #require(closed.first { $0.value == 1012 }?.key, "one socket was on the stopped gateway: \(closed)")
        let survivor = [first, second][1 - draining]
        let old = [first, second][draining]
        let seen = DeliveryUnderFaultsTests.seqs(old, chat: chat)
        let resumed = try await member.connect(nginx, resume: [chat: seen.last ?? 0])
        let (acked, _) = try await load.value
        let lastSeq = total + 3
        #expect(acked == Set(4...lastSeq))
        let deadline = ContinuousClock.now + .seconds(20)
        while (seen + DeliveryUnderFaultsTests.seqs(resumed, chat: chat)).count < lastSeq && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(seen + DeliveryUnderFaultsTests.seqs(resumed, chat: chat) == Array(1...lastSeq), "before and after the reconnect: every message once, in order")
        while DeliveryUnderFaultsTests.seqs(survivor, chat: chat).count < lastSeq && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(DeliveryUnderFaultsTests.seqs(survivor, chat: chat) == Array(1...lastSeq))
        #expect(await g2.child.waitForExit(timeout: .seconds(20)) == 0)
    }
}
