import Foundation
import HiredisNIO
import ParleyCore
import ParleyTestSupport
import Testing

/// Web Push end to end: two gateways, a real `parley notifier`, and the
/// test push service (scripts/push_service.py), which checks each push's
/// VAPID JWT and decrypts it with the subscription's private key using
/// Python's http-ece: an implementation independent of Parley's.
@Suite(.serialized) struct PushNotificationTests {
    static let vapid = WebPush.VAPIDKey.generate()
    static var environment: [String: String] {
        ["PARLEY_VAPID_PRIVATE_KEY": Self.vapid.privateKey, "PARLEY_VAPID_SUBJECT": "mailto:ops@example.test", "PARLEY_PUSH_ALLOW_HTTP": "1"]
    }

    /// Two gateways and a notifier whose push group exists (it reads new entries only).
    struct System {
        let a: GatewayProcess
        let b: GatewayProcess
        let notifier: MailerProcess
        let metricsPort: Int

        static func start() async throws -> System {
            let (a, b) = try await twoGateways(environment: PushNotificationTests.environment)
            let metricsPort = try TestEnvironment.freePort()
            let notifier = try MailerProcess(environment: PushNotificationTests.environment.merging(["PARLEY_MAILER_METRICS_PORT": "\(metricsPort)"]) { $1 })
            try await MailerTests.withRedis { redis in
                try await eventually(timeout: .seconds(30)) {
                    (try? await redis.xpendingCount("events:messages", group: "push")) != nil
                }
            }
            return System(a: a, b: b, notifier: notifier, metricsPort: metricsPort)
        }

        /// Waits until the push group has handled every entry of the stream:
        /// none left unread (XINFO GROUPS "lag") and none unacknowledged. The
        /// notifier decides when it handles an entry, so a test changes what
        /// decides (presence, settings) only after this.
        func drained() async throws {
            try await MailerTests.withRedis { redis in
                try await eventually {
                    guard let groups = try? await redis.send("XINFO", "GROUPS", "events:messages").array else { return false }
                    for group in groups {
                        let fields = group.array ?? []
                        var info: [String: RedisValue] = [:]
                        for index in stride(from: 0, to: fields.count - 1, by: 2) { info[fields[index].string ?? ""] = fields[index + 1] }
                        if info["name"]?.string == "push" { return info["lag"]?.int == 0 && info["pending"]?.int == 0 }
                    }
                    return false
                }
            }
        }

        func metric(_ outcome: String) async throws -> Double {
            let text = String(decoding: try await HTTP.get("http://127.0.0.1:\(self.metricsPort)/metrics").body, as: UTF8.self)
            let prefix = "parley_notifications_total{channel=\"push\",outcome=\"\(outcome)\"} "
            return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) } ?? 0
        }
    }

    /// A subscription of the test push service (a browser's PushSubscription).
    struct Subscription {
        let serviceID: String
        let endpoint: String
        let keys: [String: String]
        var parleyID = ""

        static func make(_ behaviour: String = "accept") async throws -> Subscription {
            let base = try TestEnvironment.require("PARLEY_TEST_PUSH_URL")
            let made = try await HTTP.json("POST", "\(base)/subscriptions?behaviour=\(behaviour)")
            try #require(made.status == 201)
            return Subscription(
                serviceID: try #require(made.json["id"] as? String), endpoint: try #require(made.json["endpoint"] as? String),
                keys: try #require(made.json["keys"] as? [String: String])
            )
        }

        /// Registers it with Parley as `user`.
        mutating func register(_ user: E2EUser, on gateway: any Endpoint) async throws {
            let response = try await user.post(gateway, "/v1/push/subscriptions", ["endpoint": self.endpoint, "keys": self.keys])
            try #require(response.status == 201, "\(response)")
            self.parleyID = try #require(response.json["id"] as? String)
        }

        /// What the push service received for it so far.
        func received() async throws -> [[String: Any]] {
            let base = try TestEnvironment.require("PARLEY_TEST_PUSH_URL")
            return (try await HTTP.json("GET", "\(base)/received?subscription=\(self.serviceID)").json["pushes"] as? [[String: Any]]) ?? []
        }

        /// Waits until `count` pushes arrived.
        func wait(for count: Int, timeout: Duration = .seconds(20)) async throws -> [[String: Any]] {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let pushes = try await self.received()
                if pushes.count >= count { return pushes }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw TimedOut()
        }
    }

    static func send(_ sender: E2EUser, _ chat: String, _ body: String, on gateway: any Endpoint, mentions: [String] = []) async throws -> Int {
        let response = try await sender.post(gateway, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": body, "mentions": mentions])
        try #require(response.status == 201, "\(response)")
        return try #require((response.json["seq"] as? Int) ?? (response.json["message"] as? [String: Any])?["seq"] as? Int)
    }

    static func topic(_ chat: String) -> String { chat.replacingOccurrences(of: "-", with: "") }

    @Test func aNewMessageReachesAnOfflineMemberEncryptedAndSigned() async throws {
        let system = try await System.start()
        let alice = try await E2EUser.register(on: system.a, name: "Alice")
        let bob = try await E2EUser.register(on: system.b, name: "Bob")
        let key = try await HTTP.json("GET", "\(system.b.baseURL)/v1/push/vapid-public-key", token: bob.token)
        #expect(key.json["key"] as? String == Self.vapid.publicKey)
        var device = try await Subscription.make()
        try await device.register(bob, on: system.b)
        let chat = try await alice.group(on: system.a, members: [bob])
        let seq = try await Self.send(alice, chat, "Lunch at <noon>? 🍜", on: system.a)

        let push = try #require(try await device.wait(for: 1).first)
        #expect(push["status"] as? Int == 201, "\(push)")
        #expect(push["vapid_key"] as? String == Self.vapid.publicKey)
        #expect(push["topic"] as? String == Self.topic(chat))
        #expect(push["urgency"] as? String == "normal")
        #expect(push["ttl"] as? String == "86400")
        let payload = try #require(push["payload"] as? [String: Any], "\(push)")
        #expect(payload["type"] as? String == "message")
        #expect(payload["chat_id"] as? String == chat)
        #expect(payload["seq"] as? Int == seq)
        #expect(payload["preview"] as? String == "Lunch at <noon>? 🍜")
        let sender = try #require(payload["sender"] as? [String: Any])
        #expect(sender["id"] as? String == alice.id)
        #expect(sender["display_name"] as? String == "Alice")
        #expect(sender["email"] == nil, "no address in a push")
        #expect(!system.notifier.child.outputText.contains("Lunch"), "message text never reaches the logs")

        // a logout ends the session's subscriptions: the next message pushes nothing,
        // which a second device of Bob's (still signed in) shows by getting it alone
        let login = try await HTTP.json(
            "POST", "\(system.a.baseURL)/v1/auth/login", ["email": bob.email, "password": "correct horse battery"], clientAddress: E2EUser.address()
        )
        try #require(login.status == 200, "\(login)")
        let second = E2EUser(
            email: bob.email, id: bob.id, token: try #require(login.json["access_token"] as? String), refresh: try #require(login.json["refresh_token"] as? String)
        )
        var other = try await Subscription.make()
        try await other.register(second, on: system.a)
        #expect(try await HTTP.json("POST", "\(system.b.baseURL)/v1/auth/logout", ["refresh_token": bob.refresh], token: bob.token).status == 204)
        let next = try await Self.send(alice, chat, "still there?", on: system.a)
        let pushes = try await other.wait(for: 1)
        #expect((pushes.first?["payload"] as? [String: Any])?["seq"] as? Int == next)
        try await system.drained()
        #expect(try await device.received().count == 1, "the signed-out device got nothing more")
    }

    @Test func onlineMembersSettingsAndMentionsDecideWhoIsPushed() async throws {
        let system = try await System.start()
        let alice = try await E2EUser.register(on: system.a, name: "Alice")
        let bob = try await E2EUser.register(on: system.b, name: "Bob")
        var device = try await Subscription.make()
        try await device.register(bob, on: system.b)
        let chat = try await alice.group(on: system.a, members: [bob])
        func settings(_ body: [String: Any]) async throws {
            try await system.drained()
            let response = try await HTTP.json("PATCH", "\(system.b.baseURL)/v1/chats/\(chat)/settings", body, token: bob.token)
            try #require(response.status == 200, "\(response)")
        }
        var expected: [Int] = []

        // online on gateway B: no push; offline again: pushed
        let bobID = try #require(UUID(uuidString: bob.id))
        let socket = try await bob.connect(system.b)
        try await MailerTests.withRedis { redis in
            try await eventually { (try? await PresenceKeys.online([bobID], redis: redis)) == [bobID] }
        }
        let online = try await Self.send(alice, chat, "you are online", on: system.a)
        _ = try await socket.next("message") { $0.messageSeq == online }
        try await system.drained()
        await socket.close()
        try await MailerTests.withRedis { redis in
            try await eventually { (try? await PresenceKeys.online([bobID], redis: redis))?.isEmpty == true }
        }
        expected.append(try await Self.send(alice, chat, "you are offline", on: system.a))

        // notify: mentions
        try await settings(["notify": "mentions"])
        _ = try await Self.send(alice, chat, "not for you", on: system.a)
        expected.append(try await Self.send(alice, chat, "@Bob this is", on: system.a, mentions: [bob.id]))
        // muted, notify: all: mentions only
        try await settings(["notify": "all", "muted_until": Timestamp.format(Date().addingTimeInterval(3600))])
        _ = try await Self.send(alice, chat, "muted", on: system.a)
        expected.append(try await Self.send(alice, chat, "@Bob muted but mentioned", on: system.a, mentions: [bob.id]))
        // none: not even mentions
        try await settings(["notify": "none", "muted_until": NSNull()])
        _ = try await Self.send(alice, chat, "@Bob nothing at all", on: system.a, mentions: [bob.id])
        try await settings(["notify": "all"])
        expected.append(try await Self.send(alice, chat, "everything again", on: system.a))

        // The notifier sends due pushes concurrently, 32 at a time, and a
        // push service does not keep their order either: compare them by seq.
        func seq(_ push: [String: Any]) -> Int { (push["payload"] as? [String: Any])?["seq"] as? Int ?? -1 }
        let pushes = try await device.wait(for: expected.count).sorted { seq($0) < seq($1) }
        let seqs = pushes.map(seq)
        #expect(seqs == expected, "pushed: \(seqs)")
        #expect(pushes.map { $0["urgency"] as? String } == ["normal", "high", "high", "normal"], "a mention is urgent")
    }

    @Test func goneSubscriptionsAreDeletedAndThrottledPushesRetried() async throws {
        let system = try await System.start()
        let alice = try await E2EUser.register(on: system.a, name: "Alice")
        let bob = try await E2EUser.register(on: system.b, name: "Bob")
        var gone = try await Subscription.make("gone")
        try await gone.register(bob, on: system.b)
        var throttled = try await Subscription.make("throttle-once")
        try await throttled.register(bob, on: system.a)
        let chat = try await alice.group(on: system.a, members: [bob])
        let seq = try await Self.send(alice, chat, "knock knock", on: system.a)

        // 429 with Retry-After: 1, then accepted, at least a second later
        let attempts = try await throttled.wait(for: 2)
        #expect(attempts.map { $0["status"] as? Int } == [429, 201])
        #expect(attempts.map { ($0["payload"] as? [String: Any])?["seq"] as? Int } == [seq, seq])
        // 410: Parley deletes the subscription
        #expect(try await gone.wait(for: 1).first?["status"] as? Int == 410)
        let goneID = gone.parleyID
        try await eventually {
            (try? await HTTP.json("DELETE", "\(system.b.baseURL)/v1/push/subscriptions/\(goneID)", token: bob.token).status) == 404
        }
        try await eventually {
            let gone = try await system.metric("gone"), retried = try await system.metric("retried"), sent = try await system.metric("sent")
            return gone >= 1 && retried >= 1 && sent >= 1
        }
        _ = try await Self.send(alice, chat, "again", on: system.a)
        #expect(try await throttled.wait(for: 3).count == 3)
        #expect(try await gone.received().count == 1, "no push to a deleted subscription")
    }

    @Test func readingOnAnyDeviceRetractsQueuedAndShownPushes() async throws {
        let system = try await System.start()
        let alice = try await E2EUser.register(on: system.a, name: "Alice")
        let bob = try await E2EUser.register(on: system.b, name: "Bob")
        var device = try await Subscription.make("fail-once")
        try await device.register(bob, on: system.b)
        let chat = try await alice.group(on: system.a, members: [bob])
        func read(_ seq: Int) async throws {
            #expect(try await bob.post(system.a, "/v1/chats/\(chat)/read", ["seq": seq]).status == 204)
        }

        // the first attempt fails (503) and waits a second; Bob reads it elsewhere meanwhile
        let first = try await Self.send(alice, chat, "one", on: system.a)
        #expect(try await device.wait(for: 1).first?["status"] as? Int == 503)
        try await read(first)
        try await eventually { try await system.metric("retracted") >= 1 }

        // a push that was shown is superseded, under the same Topic, once read
        let second = try await Self.send(alice, chat, "two", on: system.a)
        let shown = try await device.wait(for: 2)
        #expect((shown[1]["payload"] as? [String: Any])?["seq"] as? Int == second)
        try await read(second)
        let pushes = try await device.wait(for: 3)
        #expect(pushes.count == 3, "the retry of the first never went out")
        let retraction = pushes[2]
        #expect(retraction["topic"] as? String == Self.topic(chat))
        #expect(retraction["urgency"] as? String == "low")
        let payload = try #require(retraction["payload"] as? [String: Any])
        #expect(payload["type"] as? String == "read")
        #expect(payload["chat_id"] as? String == chat)
        #expect(payload["seq"] as? Int == second)
    }
}
