import Foundation
import ParleyTestSupport
import Testing

/// PostgreSQL or Redis down: every request answers at once (503 with
/// Retry-After, never a 500 or a hang), sends survive a Redis outage, and
/// everything recovers by itself with nothing acknowledged lost.
@Suite struct DependencyOutageTests {
    /// Seconds a request took, and its status.
    static func timed(_ body: () async throws -> (status: Int, json: [String: Any])) async throws -> (status: Int, json: [String: Any], seconds: Double) {
        let start = Date()
        let (status, json) = try await body()
        return (status, json, Date().timeIntervalSince(start))
    }

    @Test func aPostgreSQLCrashAnswers503AtOnceAndRecoversWithNothingLost() async throws {
        let postgres = try PostgresServerProcess()
        try await postgres.create()
        let environment = ["PARLEY_SENDS_PER_SECOND": "10000"]
        let a = try GatewayProcess(databaseURL: postgres.url, environment: environment, arguments: ["--no-migrate"])
        let b = try GatewayProcess(databaseURL: postgres.url, environment: environment, arguments: ["--no-migrate"])
        try await a.waitUntilReady()
        try await b.waitUntilReady()
        let owner = try await E2EUser.register(on: a, name: "Owner")
        let reader = try await E2EUser.register(on: b, name: "Reader")
        let chat = try await owner.group(on: a, members: [reader])
        let readerSocket = try await reader.connect(b)
        let ownerSocket = try await owner.connect(a)

        // sends under way when PostgreSQL crashes: each retried with its client_id until acknowledged
        let total = 200
        let finished = Flag()
        let load = Task {
            defer { finished.set() }
            return try await DeliveryUnderFaultsTests.load([owner, reader], chat: chat, count: total, gateways: { [a, b] })
        }
        // the crash falls in the middle of the sends: once some are stored
        try await eventually { try await owner.lastSeq(on: a, chat) >= 20 }
        try await postgres.crash()

        // every kind of request answers 503 with Retry-After within the deadline (2 s)
        let requests: [(String, () async throws -> (status: Int, json: [String: Any]))] = [
            ("GET /v1/chats", { try await HTTP.json("GET", "\(a.baseURL)/v1/chats", token: owner.token) }),
            ("GET /v1/me", { try await HTTP.json("GET", "\(b.baseURL)/v1/me", token: reader.token) }),
            ("GET history", { try await HTTP.json("GET", "\(a.baseURL)/v1/chats/\(chat)/messages", token: owner.token) }),
            ("POST login", { try await HTTP.json("POST", "\(a.baseURL)/v1/auth/login", ["email": owner.email, "password": "correct horse battery"], clientAddress: E2EUser.address()) }),
            ("POST refresh", { try await HTTP.json("POST", "\(b.baseURL)/v1/auth/refresh", ["refresh_token": reader.refresh]) }),
        ]
        for (name, request) in requests {
            let answer = try await Self.timed(request)
            #expect(answer.status == 503, "\(name): \(answer.status) \(answer.json)")
            #expect(answer.json["code"] as? String == "unavailable", "\(name)")
            #expect(answer.seconds < 3, "\(name) took \(answer.seconds) s")
        }
        // a WebSocket frame that needs PostgreSQL gets an error frame, and the socket stays open
        try await ownerSocket.send(["type": "read", "ref": "r", "chat_id": chat, "seq": 1])
        let error = try await ownerSocket.next("error", timeout: .seconds(5))
        #expect(error["code"] as? String == "unavailable")
        #expect(!finished.isSet, "the crash must fall in the middle of the sends")

        // the gateways noticed the outage (readiness says so) before PostgreSQL comes back
        try await eventually { try await HTTP.get("\(a.operationsURL)/readyz").status == 503 }
        try await postgres.start()
        // it recovers by itself: every acknowledged message reaches every connected member once, in order
        let (acked, _) = try await load.value
        #expect(acked == Set(1...total))
        let deadline = ContinuousClock.now + .seconds(30)
        while DeliveryUnderFaultsTests.seqs(readerSocket, chat: chat).count < total && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(DeliveryUnderFaultsTests.seqs(readerSocket, chat: chat) == Array(1...total))
        #expect(!readerSocket.isClosed)
        let recovered = try await HTTP.json("GET", "\(a.baseURL)/v1/me", token: owner.token)
        #expect(recovered.status == 200)
        // the outage is on /metrics
        let metrics = String(decoding: try await HTTP.get("\(a.operationsURL)/metrics").body, as: UTF8.self)
        #expect(metrics.contains("parley_dependency_up{dependency=\"postgres\"} 1"), "\(metrics.prefix(500))")
        // counters exist from the start: what counts is that the outage moved them
        func counter(_ name: String) -> Double {
            metrics.split(separator: "\n").filter { $0.hasPrefix(name) }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
        }
        #expect(counter("parley_fast_failed_total") + counter("parley_dependency_timeouts_total") > 0, "\(metrics.prefix(2000))")
        await postgres.stop()
    }

    @Test func withRedisDownSendsAreStoredAndLiveOnTheSameInstance() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        let (a, b) = try await twoGateways(redisURL: redis.url)
        let sender = try await E2EUser.register(on: a, name: "Sender")
        let local = try await E2EUser.register(on: a, name: "Local")
        let remote = try await E2EUser.register(on: b, name: "Remote")
        let chat = try await sender.group(on: a, members: [local, remote])
        let localSocket = try await local.connect(a)
        let remoteSocket = try await remote.connect(b)
        await redis.kill()

        // sends are stored and acknowledged; logins work (limits per instance); codes need Redis
        for i in 1...5 {
            let sent = try await sender.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "while Redis is down \(i)"])
            #expect(sent.status == 201, "\(sent)")
        }
        #expect(try await HTTP.json("POST", "\(a.baseURL)/v1/auth/login", ["email": sender.email, "password": "correct horse battery"], clientAddress: E2EUser.address()).status == 200)
        let code = try await HTTP.json("POST", "\(a.baseURL)/v1/auth/otp/request", ["email": sender.email], clientAddress: E2EUser.address())
        #expect(code.status == 503)
        // a member on the same instance sees them live
        let deadline = ContinuousClock.now + .seconds(10)
        while DeliveryUnderFaultsTests.seqs(localSocket, chat: chat).count < 5 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(DeliveryUnderFaultsTests.seqs(localSocket, chat: chat) == [1, 2, 3, 4, 5])

        // Redis returns: the member on the other instance catches up, once, in order
        try await redis.start()
        let later = ContinuousClock.now + .seconds(20)
        while DeliveryUnderFaultsTests.seqs(remoteSocket, chat: chat).count < 5 && ContinuousClock.now < later { try await Task.sleep(for: .milliseconds(50)) }
        #expect(DeliveryUnderFaultsTests.seqs(remoteSocket, chat: chat) == [1, 2, 3, 4, 5])
        #expect(try await sender.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "back"]).status == 201)
        let after = ContinuousClock.now + .seconds(10)
        // both members, each on its own instance, get it live again
        while (DeliveryUnderFaultsTests.seqs(remoteSocket, chat: chat).count < 6 || DeliveryUnderFaultsTests.seqs(localSocket, chat: chat).count < 6)
            && ContinuousClock.now < after
        { try await Task.sleep(for: .milliseconds(50)) }
        #expect(DeliveryUnderFaultsTests.seqs(remoteSocket, chat: chat) == [1, 2, 3, 4, 5, 6])
        #expect(DeliveryUnderFaultsTests.seqs(localSocket, chat: chat) == [1, 2, 3, 4, 5, 6])
        await redis.stop()
    }
}
