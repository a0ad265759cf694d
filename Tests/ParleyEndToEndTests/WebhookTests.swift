import Foundation
import HiredisNIO
import ParleyCore
import ParleyTestSupport
import Testing

/// Webhooks end to end: gateways, real `parley notifier` processes, and the
/// test receiver (scripts/webhook_receiver.py), which verifies every
/// delivery with the Standard Webhooks reference library.
@Suite(.serialized) struct WebhookTests {
    /// A hook of the test receiver; its name says how it answers (see the script).
    struct Hook {
        let name: String
        var url: String { get throws { "\(try TestEnvironment.require("PARLEY_TEST_WEBHOOK_URL"))/hook/\(self.name)" } }

        init(_ behaviour: String) { self.name = "\(behaviour)-\(UUID().uuidString.prefix(8).lowercased())" }

        func deliveries() async throws -> [[String: Any]] {
            let base = try TestEnvironment.require("PARLEY_TEST_WEBHOOK_URL")
            return (try await HTTP.json("GET", "\(base)/received?name=\(self.name)").json["deliveries"] as? [[String: Any]]) ?? []
        }

        /// Waits until a delivery answered `status` satisfies `condition` for each of `wanted`.
        func wait(timeout: Duration = .seconds(30), until done: ([[String: Any]]) -> Bool) async throws -> [[String: Any]] {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let deliveries = try await self.deliveries()
                if done(deliveries) { return deliveries }
                try await Task.sleep(for: .milliseconds(50))
            }
            Issue.record("the hook \(self.name) did not get what the test waited for; it got:\n\(try await self.deliveries())")
            throw TimedOut()
        }
    }

    static func notifier(_ hook: Hook, environment: [String: String] = [:]) async throws -> MailerProcess {
        let notifier = try MailerProcess(environment: [
            "PARLEY_WEBHOOK_URLS": try hook.url, "PARLEY_WEBHOOK_SECRET": try TestEnvironment.require("PARLEY_TEST_WEBHOOK_SECRET"),
        ].merging(environment) { $1 })
        try await MailerTests.withRedis { redis in
            try await eventually(timeout: .seconds(30)) { (try? await redis.xpendingCount("events:messages", group: "webhooks")) != nil }
        }
        return notifier
    }

    /// The accepted deliveries of `type` whose data satisfies `match`.
    static func accepted(_ deliveries: [[String: Any]], _ type: String, _ match: ([String: Any]) -> Bool = { _ in true }) -> [[String: Any]] {
        deliveries.filter {
            $0["status"] as? Int == 204 && $0["verified"] as? Bool == true && $0["type"] as? String == type && match(($0["data"] as? [String: Any]) ?? [:])
        }
    }

    static func send(_ sender: E2EUser, _ chat: String, _ body: String, on gateway: any Endpoint) async throws -> Int {
        let response = try await sender.post(gateway, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": body])
        try #require(response.status == 201, "\(response)")
        return try #require(response.json["seq"] as? Int)
    }

    @Test func everyKindOfEventArrivesSigned() async throws {
        let hook = Hook("ok")
        let (a, b) = try await twoGateways()
        let notifier = try await Self.notifier(hook)
        let alice = try await E2EUser.register(on: a, name: "Alice")
        let bob = try await E2EUser.register(on: b, name: "Bob")
        let chat = try await alice.group(on: a, members: [bob])
        let seq = try await Self.send(alice, chat, "hello <webhooks> 👋", on: a)
        let edited = try await HTTP.json("PATCH", "\(b.baseURL)/v1/chats/\(chat)/messages/\(seq)", ["body": "hello, edited"], token: alice.token)
        #expect(edited.status == 200, "\(edited)")
        #expect(try await HTTP.json("DELETE", "\(a.baseURL)/v1/chats/\(chat)/members/\(bob.id)", token: alice.token).status == 204)

        let inChat: ([String: Any]) -> Bool = { $0["chat_id"] as? String == chat }
        let deliveries = try await hook.wait { deliveries in
            Self.accepted(deliveries, "user.registered") { [alice.id, bob.id].contains($0["id"] as? String ?? "") }.count >= 2
                && Self.accepted(deliveries, "member.added", inChat).count >= 2 && !Self.accepted(deliveries, "message.created", inChat).isEmpty
                && !Self.accepted(deliveries, "message.updated", inChat).isEmpty && !Self.accepted(deliveries, "member.removed", inChat).isEmpty
        }
        #expect(deliveries.allSatisfy { $0["verified"] as? Bool == true }, "every delivery verifies: \(deliveries.filter { $0["verified"] as? Bool != true })")
        let registered = try #require(Self.accepted(deliveries, "user.registered") { $0["id"] as? String == alice.id }.first?["data"] as? [String: Any])
        #expect(registered["display_name"] as? String == "Alice")
        #expect(registered["email"] == nil, "no address in a webhook")
        let created = try #require(Self.accepted(deliveries, "message.created", inChat).first)
        let message = try #require(created["data"] as? [String: Any])
        #expect(message["seq"] as? Int == seq)
        #expect(message["sender_id"] as? String == alice.id)
        #expect(message["body"] as? String == "hello <webhooks> 👋" || message["body"] as? String == "hello, edited", "the message as stored when it was read")
        #expect((created["id"] as? String)?.hasPrefix("evt_") == true)
        #expect((created["event_timestamp"] as? String).flatMap(Timestamp.parse) != nil)
        let updated = try #require(Self.accepted(deliveries, "message.updated", inChat).first?["data"] as? [String: Any])
        #expect(updated["body"] as? String == "hello, edited")
        #expect(updated["edited_at"] is String)
        #expect(Set(Self.accepted(deliveries, "member.added", inChat).compactMap { ($0["data"] as? [String: Any])?["user_id"] as? String }) == [alice.id, bob.id])
        #expect((Self.accepted(deliveries, "member.removed", inChat).first?["data"] as? [String: Any])?["user_id"] as? String == bob.id)
        #expect(!notifier.child.outputText.contains("hello <webhooks>"), "message text never reaches the logs")
    }

    @Test func aKilledWorkerLeavesNoEventUndelivered() async throws {
        // the first delivery is held: the worker is killed while it waits
        let hook = Hook("hang")
        let (a, b) = try await twoGateways()
        let first = try await Self.notifier(hook, environment: ["PARLEY_MAILER_RETRY_MS": "300"])
        let alice = try await E2EUser.register(on: a, name: "Alice")
        let bob = try await E2EUser.register(on: b, name: "Bob")
        let chat = try await alice.group(on: a, members: [bob])
        var seqs: [Int] = []
        for index in 1...5 { seqs.append(try await Self.send(index % 2 == 0 ? bob : alice, chat, "message \(index)", on: index % 2 == 0 ? b : a)) }
        let held = try #require(try await hook.wait { !$0.isEmpty }.first?["id"] as? String)
        first.child.signal(SIGKILL)
        await first.child.waitForExit()

        // another worker takes over the dead one's job when its lease (15 s at least) ends
        let second = try await Self.notifier(hook, environment: ["PARLEY_MAILER_RETRY_MS": "300"])
        let deliveries = try await hook.wait(timeout: .seconds(45)) { deliveries in
            Set(Self.accepted(deliveries, "message.created") { $0["chat_id"] as? String == chat }.compactMap { ($0["data"] as? [String: Any])?["seq"] as? Int })
                == Set(seqs) && deliveries.contains { $0["id"] as? String == held && $0["status"] as? Int == 204 }
        }
        #expect(deliveries.filter { $0["id"] as? String == held }.count == 2, "the held event, taken over from the dead worker and delivered again")
        // a repeated delivery is the same event: the same id, type and data
        var byID: [String: [String: Any]] = [:]
        for delivery in deliveries where delivery["verified"] as? Bool == true {
            guard let id = delivery["id"] as? String else { continue }
            if let earlier = byID[id] {
                #expect(earlier["type"] as? String == delivery["type"] as? String)
                // compared as canonical JSON (NSNumber booleans do not compare equal to themselves bridged)
                func canonical(_ data: Any?) throws -> Data {
                    try JSONSerialization.data(withJSONObject: (data as? [String: Any]) ?? [:], options: [.sortedKeys])
                }
                #expect(try canonical(earlier["data"]) == canonical(delivery["data"]), "a repeated delivery carries the same data")
            }
            byID[id] = delivery
        }
        #expect(second.child.isRunning)
    }

    @Test func failuresAreRetriedThenDeadLetteredAndReplayed() async throws {
        let (a, _) = try await twoGateways()
        // retried: the first delivery fails, the same event comes again about 5 s later, re-signed
        let retried = Hook("fail-1")
        let notifier = try await Self.notifier(retried)
        _ = try await E2EUser.register(on: a, name: "Retry")
        let deliveries = try await retried.wait { deliveries in
            guard let failed = deliveries.first?["id"] as? String else { return false }
            return deliveries.contains { $0["id"] as? String == failed && $0["status"] as? Int == 204 }
        }
        let first = try #require(deliveries.first)
        #expect(first["status"] as? Int == 500)
        let again = try #require(deliveries.first { $0["id"] as? String == first["id"] as? String && $0["status"] as? Int == 204 })
        #expect(again["verified"] as? Bool == true)
        let delay = (Int(again["timestamp"] as? String ?? "") ?? 0) - (Int(first["timestamp"] as? String ?? "") ?? 0)
        #expect((4...8).contains(delay), "retried after the first backoff of 5 s, signed anew (\(delay) s)")
        notifier.child.signal(SIGTERM)
        await notifier.child.waitForExit()

        // dead-lettered: a window shorter than the first backoff; then replayed
        let dead = Hook("fail-1")
        let short = try await Self.notifier(dead, environment: ["PARLEY_WEBHOOK_RETRY_WINDOW_MS": "2000"])
        _ = try await E2EUser.register(on: a, name: "Dead")
        let refused = try #require(try await dead.wait { !$0.isEmpty }.first)
        let deadID = try #require(refused["id"] as? String)
        #expect(refused["status"] as? Int == 500)
        try await MailerTests.withRedis { redis in
            try await eventually {
                (try? await redis.xrange("webhooks:dead", count: 100_000))?.contains { $0["id"] == deadID && $0["url"]?.hasSuffix(dead.name) == true } == true
            }
            let entry = try #require(try await redis.xrange("webhooks:dead", count: 100_000).first { $0["id"] == deadID })
            #expect(entry["error"] == "HTTP 500")
            #expect(entry["attempts"] == "1")
            let replay = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["notifier", "--replay-dead"], environment: [
                "PARLEY_DATABASE_URL": try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), "PARLEY_REDIS_URL": try TestEnvironment.require("PARLEY_TEST_REDIS_URL"),
                "PARLEY_MAIL_KEY": GatewayProcess.mailKey, "PARLEY_SMTP_URL": try TestEnvironment.require("PARLEY_TEST_SMTP_URL"),
            ])
            #expect(replay.status == 0, "\(replay.output)")
            #expect(replay.output.contains("dead-lettered webhooks queued again"))
            #expect(try await redis.xrange("webhooks:dead", count: 100_000).contains { $0["id"] == deadID } == false)
        }
        // the running notifier sends it again, and the receiver takes it now
        _ = try await dead.wait { $0.contains { $0["id"] as? String == deadID && $0["status"] as? Int == 204 } }
        let metrics = short.child.outputText
        #expect(metrics.contains("webhook delivery given up: moved to the dead-letter stream"))
    }
}
