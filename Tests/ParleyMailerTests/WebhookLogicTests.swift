import Crypto
import Foundation
import ParleyCore
import Testing

@testable import ParleyMailer

/// Webhook signing, settings and bodies (pure).
@Suite struct WebhookLogicTests {
    @Test func signsLikeTheStandardWebhooksExample() throws {
        // the example of the Standard Webhooks specification
        let key = try #require(WebhookSignature.key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let signature = WebhookSignature.sign(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Data(#"{"test": 2432232314}"#.utf8), key: key)
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(WebhookSignature.key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == nil, "the whsec_ prefix")
        #expect(WebhookSignature.key("whsec_c2hvcnQ=") == nil, "5 bytes")
        #expect(WebhookSignature.key("whsec_not base64!") == nil)
    }

    @Test func settingsNameWhatIsWrong() throws {
        let secret = "whsec_" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        #expect(try WebhookSettings.load(SettingsReader([:])).urls.isEmpty)
        let settings = try WebhookSettings.load(SettingsReader(["PARLEY_WEBHOOK_URLS": "https://a.example/h, http://10.0.0.5:8080/in", "PARLEY_WEBHOOK_SECRET": secret]))
        #expect(settings.urls.map(\.absoluteString) == ["https://a.example/h", "http://10.0.0.5:8080/in"])
        #expect(settings.retryWindow == .seconds(86_400))
        for (environment, setting) in [
            (["PARLEY_WEBHOOK_URLS": "https://a.example/h"], "PARLEY_WEBHOOK_SECRET"),
            (["PARLEY_WEBHOOK_URLS": "https://a.example/h", "PARLEY_WEBHOOK_SECRET": "hunter2"], "PARLEY_WEBHOOK_SECRET"),
            (["PARLEY_WEBHOOK_URLS": "ftp://a.example/h", "PARLEY_WEBHOOK_SECRET": secret], "PARLEY_WEBHOOK_URLS"),
            (["PARLEY_WEBHOOK_URLS": "https://u:p@a.example/h", "PARLEY_WEBHOOK_SECRET": secret], "PARLEY_WEBHOOK_URLS"),
            (["PARLEY_WEBHOOK_URLS": "https://a.example/h,https://a.example/h", "PARLEY_WEBHOOK_SECRET": secret], "PARLEY_WEBHOOK_URLS"),
            (["PARLEY_WEBHOOK_SECRET": secret], "PARLEY_WEBHOOK_URLS"),
            (["PARLEY_WEBHOOK_RETRY_WINDOW_MS": "5"], "PARLEY_WEBHOOK_RETRY_WINDOW_MS"),
        ] {
            #expect(performing: { try WebhookSettings.load(SettingsReader(environment)) }, throws: { ($0 as? ConfigurationError)?.setting == setting })
        }
    }

    @Test func bodiesAndJobs() throws {
        let body = try WebhookWorker.body(
            type: "member.added", timestamp: Date(timeIntervalSince1970: 1_800_000_000.5),
            data: WebhookWorker.Membership(chatID: "c", userID: "u")
        )
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        #expect(object?["type"] as? String == "member.added")
        #expect(object?["timestamp"] as? String == "2027-01-15T08:00:00.500Z")
        #expect(object?["data"] as? [String: String] == ["chat_id": "c", "user_id": "u"])
        #expect(WebhookWorker.time(of: "1800000000500-3") == Date(timeIntervalSince1970: 1_800_000_000.5))
        let job = WebhookJob(url: URL(string: "https://a.example/h")!, event: .init(id: "evt_1-0", body: body), attempt: 2, firstAt: 7)
        #expect(WebhookJob(encoded: try job.encoded()) == job)
        #expect(WebhookJob(encoded: "{}") == nil)
    }
}
