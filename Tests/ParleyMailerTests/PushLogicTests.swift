import Crypto
import Foundation
import ParleyCore
import Testing

@testable import ParleyMailer

/// What the push worker makes of push service answers, and when it retries (pure).
@Suite struct PushLogicTests {
    @Test func answersOfPushServices() {
        #expect(WebPushSender.outcome(status: 201, retryAfter: nil) == .accepted)
        #expect(WebPushSender.outcome(status: 404, retryAfter: nil) == .gone)
        #expect(WebPushSender.outcome(status: 410, retryAfter: "30") == .gone)
        #expect(WebPushSender.outcome(status: 429, retryAfter: "30") == .retry(after: .seconds(30)))
        #expect(WebPushSender.outcome(status: 503, retryAfter: nil) == .retry(after: nil))
        #expect(WebPushSender.outcome(status: 502, retryAfter: "soon") == .retry(after: nil))
        #expect(WebPushSender.outcome(status: 403, retryAfter: nil) == .rejected(status: 403))
        #expect(WebPushSender.outcome(status: 413, retryAfter: nil) == .rejected(status: 413))
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let date = "Fri, 15 Jan 2027 08:00:10 GMT"
        #expect(WebPushSender.retryAfter(date, now: Date(timeIntervalSince1970: 1_800_000_000)) != nil)
        #expect(WebPushSender.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now: now) == .zero, "a date in the past: now")
        #expect(WebPushSender.retryAfter("-5", now: now) == nil)
    }

    @Test func theVAPIDHeaderIsSignedOncePerPushServiceAndRenewed() async throws {
        let sender = WebPushSender(vapid: WebPush.VAPIDKey(privateKey: P256.Signing.PrivateKey(), subject: "mailto:ops@example.com"))
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let first = try sender.authorization(for: URL(string: "https://fcm.googleapis.com/fcm/send/a")!, now: now)
        #expect(try sender.authorization(for: URL(string: "https://fcm.googleapis.com/fcm/send/b")!, now: now.addingTimeInterval(3600)) == first)
        #expect(try sender.authorization(for: URL(string: "https://updates.push.services.mozilla.com/wpush/v2/c")!, now: now) != first)
        #expect(try sender.authorization(for: URL(string: "https://fcm.googleapis.com/fcm/send/a")!, now: now.addingTimeInterval(6 * 3600 + 1)) != first,
                "renewed before its 12 h run out")
        await sender.shutdown()
    }

    func job(attempt: Int, firstAt: Int64) -> PushJob {
        PushJob(
            kind: .message, subscription: UUID(), userID: UUID(), chatID: UUID(), seq: 7, payload: "{}", urgency: "normal", attempt: attempt,
            firstAt: firstAt
        )
    }

    @Test func retriesBackOffHonourRetryAfterAndEndWithTheWindow() throws {
        let now: Int64 = 1_000_000
        let schedule = RetrySchedule(first: .seconds(1), cap: .seconds(300), window: .seconds(3600))
        for attempt in 0..<5 {
            let due = try #require(schedule.next(attempt: attempt, firstAt: now, now: now))
            let backoff = Int64(1000) << attempt
            #expect(due - now >= backoff && due - now <= backoff + backoff / 4, "attempt \(attempt)")
        }
        let long = RetrySchedule(first: .seconds(1), cap: .seconds(300), window: .seconds(7200))
        let capped = try #require(long.next(attempt: 30, firstAt: now, now: now))
        #expect(capped - now >= 300_000 && capped - now <= 375_000, "at most 5 min and its jitter")
        #expect(try #require(schedule.next(attempt: 0, firstAt: now, notBefore: .seconds(120), now: now)) - now == 120_000, "never before Retry-After")
        #expect(schedule.next(attempt: 0, firstAt: now, notBefore: .seconds(7200), now: now) == nil)
        #expect(schedule.next(attempt: 3, firstAt: now - 3_599_000, now: now) == nil, "the window is over")
    }

    @Test func jobsSurviveTheirJSONAndPayloadsFollowTheProtocol() throws {
        let job = self.job(attempt: 2, firstAt: 5)
        #expect(PushJob(encoded: try job.encoded()) == job)
        #expect(PushJob(encoded: "not json") == nil)
        let target = PushStore.Target(
            subscription: .init(id: UUID(), userID: UUID(), endpoint: "https://push.example/x", p256dh: Data(), auth: Data()),
            chatID: UUID(uuidString: "0192f3a4-0000-7000-8000-00000000abcd")!, seq: 42, mentioned: true, direct: false,
            senderID: UUID(uuidString: "0192f3a4-0000-7000-8000-0000000000aa")!, senderName: "Zoë \"Z\"", senderCreatedAt: Date(timeIntervalSince1970: 1_800_000_000),
            preview: String(repeating: "é", count: 250)
        )
        let payload = try JSONSerialization.jsonObject(with: Data(try PushWorker.messagePayload(target).utf8)) as? [String: Any]
        #expect(payload?["type"] as? String == "message")
        #expect(payload?["chat_id"] as? String == "0192f3a4-0000-7000-8000-00000000abcd")
        #expect(payload?["seq"] as? Int == 42)
        #expect((payload?["preview"] as? String)?.count == 200)
        let sender = payload?["sender"] as? [String: Any]
        #expect(sender?["id"] as? String == "0192f3a4-0000-7000-8000-0000000000aa")
        #expect(sender?["display_name"] as? String == "Zoë \"Z\"")
        #expect(sender?["created_at"] as? String == Timestamp.format(Date(timeIntervalSince1970: 1_800_000_000)))
        #expect(sender?["email"] == nil)
    }
}
