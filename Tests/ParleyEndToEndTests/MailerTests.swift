import Foundation
import HiredisNIO
import ParleyCore
import ParleyTestSupport
import PostgresNIO
import Testing

/// `parley mailer` against the real Redis stream, PostgreSQL and an SMTP catcher.
@Suite struct MailerTests {
    /// Runs `body` with a client of the test Redis.
    static func withRedis(_ body: (RedisClient) async throws -> Void) async throws {
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        do {
            try await body(redis)
        } catch {
            await redis.shutdown()
            throw error
        }
        await redis.shutdown()
    }

    static func requestCode(_ gateway: GatewayProcess, _ email: String) async throws {
        let response = try await HTTP.json("POST", "\(gateway.baseURL)/v1/auth/otp/request", ["email": email], clientAddress: E2EUser.address())
        try #require(response.status == 202)
    }

    @Test func aCodeMailSignsTheUserIn() async throws {
        let gateway = try GatewayProcess(databaseURL: try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), arguments: ["--no-migrate"])
        try await gateway.waitUntilReady()
        let metricsPort = try TestEnvironment.freePort()
        let mailer = try MailerProcess(environment: ["PARLEY_MAILER_METRICS_PORT": "\(metricsPort)"])
        let email = "code-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        try await Self.requestCode(gateway, email)
        let mails = try await MailCatcher.wait(for: email)
        #expect(mails.count == 1)
        let mail = try #require(mails.first)
        #expect(mail.headers.contains("Subject: Your Parley sign-in code"))
        #expect(mail.headers.contains("MIME-Version: 1.0"))
        #expect(mail.headers.contains("Message-ID: <"))
        #expect(mail.headers.contains("Date: "))
        #expect(mail.headers.contains("From: \"Parley Tests\" <no-reply@example.test>"))
        let code = try #require(mail.text.range(of: #"\d{6}"#, options: .regularExpression).map { String(mail.text[$0]) })
        #expect(mail.html.contains(code))
        let verified = try await HTTP.json("POST", "\(gateway.baseURL)/v1/auth/otp/verify", ["email": email, "code": code])
        #expect(verified.status == 200)
        #expect(!mailer.child.outputText.contains(code), "codes never reach the logs")
        let metrics = String(decoding: try await HTTP.get("http://127.0.0.1:\(metricsPort)/metrics").body, as: UTF8.self)
        #expect(metrics.contains("parley_mails_sent_total{kind=\"otp\"}"), "\(metrics.prefix(800))")
        #expect(metrics.contains("parley_notifications_total{channel=\"mail\",outcome=\"sent\"}"), "\(metrics.prefix(800))")
    }

    @Test func refusedMailIsRetriedThenDeadLetteredAndReplayable() async throws {
        let gateway = try GatewayProcess(databaseURL: try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), arguments: ["--no-migrate"])
        try await gateway.waitUntilReady()
        let mailer = try MailerProcess(retryMilliseconds: 150)
        let email = "refuse-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        try await Self.requestCode(gateway, email)
        // five failed deliveries, then the dead-letter stream with the last error
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        var deadEntry: RedisStreamEntry?
        let deadline = ContinuousClock.now + .seconds(30)
        while deadEntry == nil && ContinuousClock.now < deadline {
            deadEntry = try await redis.xrange("mail:dead", count: 100_000).first { $0["to"] == email }
            if deadEntry == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let entry = try #require(deadEntry, "the refused mail reaches the dead-letter stream")
        #expect(entry["deliveries"] == "5")
        #expect(entry["error"]?.contains("550") == true)
        #expect(mailer.child.outputText.contains("mail moved to the dead-letter stream"))
        #expect(try MailCatcher.mails(to: email).isEmpty)
        // stop the worker, so that the replayed entry stays where the replay put it
        mailer.child.signal(SIGKILL)
        await mailer.child.waitForExit()
        // --replay-dead puts it back on the stream (where it fails again, as the catcher still refuses)
        let replay = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["mailer", "--replay-dead"], environment: [
            "PARLEY_DATABASE_URL": try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), "PARLEY_REDIS_URL": try TestEnvironment.require("PARLEY_TEST_REDIS_URL"),
            "PARLEY_MAIL_KEY": GatewayProcess.mailKey, "PARLEY_SMTP_URL": try TestEnvironment.require("PARLEY_TEST_SMTP_URL"),
        ])
        #expect(replay.status == 0, "\(replay.output)")
        let dead = try await redis.xrange("mail:dead", count: 100_000)
        #expect(!dead.contains { $0["to"] == email }, "replayed entries leave the dead-letter stream")
        let queued = try await redis.xrange(OneTimeCodes.mailStream, count: 100_000).filter { $0["to"] == email }
        #expect(queued.count == 2, "the original and its replay are on the mail stream")
        await redis.shutdown()
    }

    @Test func aKilledMailersPendingMailIsSentByAnotherExactlyOnce() async throws {
        let gateway = try GatewayProcess(databaseURL: try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), arguments: ["--no-migrate"])
        try await gateway.waitUntilReady()
        // a mailer whose SMTP server is gone: it takes the job and cannot deliver it
        let doomed = try MailerProcess(smtpURL: "smtp+insecure://127.0.0.1:\(try TestEnvironment.freePort())", retryMilliseconds: 60_000)
        let email = "pending-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        try await Self.requestCode(gateway, email)
        let deadline = ContinuousClock.now + .seconds(20)
        while !doomed.child.outputText.contains("mail delivery failed") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(doomed.child.outputText.contains("mail delivery failed"))
        doomed.child.signal(SIGKILL)
        // another worker claims it once it has been idle long enough
        let rescuer = try MailerProcess(retryMilliseconds: 300)
        let mails = try await MailCatcher.wait(for: email)
        // acknowledged: from then on no mailer of the group handles the job again
        try await Self.withRedis { redis in
            try await eventually { try await redis.entryIsAcknowledged(OneTimeCodes.mailStream, group: "mailers", field: "to", value: email) }
        }
        #expect(try MailCatcher.mails(to: email).count == 1, "sent exactly once")
        #expect(mails.count == 1)
        _ = rescuer  // alive until here: it (or any other live mailer of the group) claims the pending job
    }

    @Test func digestsGoOnlyToOfflineUnreadRecipientsOncePerBurst() async throws {
        let gateway = try GatewayProcess(databaseURL: try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), arguments: ["--no-migrate"])
        try await gateway.waitUntilReady()
        let mailer = try MailerProcess(environment: ["PARLEY_DIGEST_DELAY_MS": "1500"])
        let sender = try await E2EUser.register(on: gateway, name: "Zoë 李")
        let offline = try await E2EUser.register(on: gateway, name: "Öff Ωmega")
        let reader = try await E2EUser.register(on: gateway, name: "Reader")
        let online = try await E2EUser.register(on: gateway, name: "On")
        // digests go only to addresses their owners proved
        let unproven = try await E2EUser.register(on: gateway, name: "Unproven")
        for user in [sender, offline, reader, online] { try await user.verifyEmail(on: gateway) }
        let chat = try await sender.group(on: gateway, members: [offline, reader, online, unproven])
        let socket = try await online.connect(gateway)
        // the mailer's digest group reads from where it was created: wait until it exists
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let groupDeadline = ContinuousClock.now + .seconds(10)
        while (try? await redis.xpendingCount("events:messages", group: "digests")) == nil && ContinuousClock.now < groupDeadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let groupExists = (try? await redis.xpendingCount("events:messages", group: "digests")) != nil
        await redis.shutdown()
        try #require(groupExists, "the mailer created its digest group")

        let bodies = ["привет 👋", "second", "третье — ünïcödé", "4", "five"]
        for body in bodies {
            #expect(try await sender.post(gateway, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": body]).status == 201)
        }
        // the reader catches up within the delay
        #expect(try await reader.post(gateway, "/v1/chats/\(chat)/read", ["seq": 5]).status == 204)

        let mails: [MailCatcher.Mail]
        do {
            mails = try await MailCatcher.wait(for: offline.email, digestsOnly: true, timeout: .seconds(20))
        } catch {
            Issue.record("no digest; mailer said:\n\(mailer.child.outputText.suffix(3000))")
            throw error
        }
        // every event of the burst was scheduled and acknowledged, and neither the
        // offline member nor the reader has a digest due any more: nothing can send another
        try await Self.withRedis { redis in
            try await eventually {
                let due = Set(try await redis.zrangeByScore("digests:due", min: "-inf", max: "+inf"))
                return try await redis.groupIsCaughtUp("events:messages", group: "digests") && due.isDisjoint(with: [offline.id, reader.id])
            }
        }
        #expect(try MailCatcher.mails(to: offline.email, digestsOnly: true).count == 1, "one digest for the burst")
        let digest = try #require(mails.first)
        #expect(digest.text.contains("5 unread"))
        #expect(digest.text.contains("Zoë 李: привет 👋"))
        #expect(digest.text.contains("третье — ünïcödé"))
        #expect(digest.html.contains("Zoë 李"))
        #expect(digest.headers.contains("To: =?utf-8?B?"), "a non-ASCII display name is encoded in the header")
        #expect(try MailCatcher.mails(to: reader.email, digestsOnly: true).isEmpty, "read within the delay: no digest")
        #expect(try MailCatcher.mails(to: online.email, digestsOnly: true).isEmpty, "connected: no digest")
        #expect(try MailCatcher.mails(to: unproven.email).isEmpty, "an address nobody proved gets no digest")
        #expect(mailer.child.outputText.contains("digest sent"))

        // new messages later make a new digest with only the new ones
        #expect(try await sender.post(gateway, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "later"]).status == 201)
        let again = try await MailCatcher.wait(for: offline.email, count: 2, digestsOnly: true, timeout: .seconds(20))
        #expect(again.last?.text.contains("later") == true)
        #expect(again.last?.text.contains("привет") == false, "the same range is never mailed twice")
        await socket.close()
    }

    /// Queues a code job the way a gateway does, with the given id and expiry.
    static func queueCodeJob(id: String, to email: String, expiresAt: Date) async throws {
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let key = OneTimeCodes.mailJobKey(secret: Array(GatewayProcess.secret.utf8))  // as the gateways seal codes
        try await redis.xadd(OneTimeCodes.mailStream, fields: [
            ("kind", "otp"), ("id", .string(id)), ("to", .string(email)), ("code_box", .string(try Secrets.seal("123456", key: key))),
            ("expires_at", RedisArgument(Int64(expiresAt.timeIntervalSince1970 * 1000))),
        ])
        await redis.shutdown()
    }

    @Test func aStoppedMailerExitsQuietly() async throws {
        let mailer = try MailerProcess()
        let deadline = ContinuousClock.now + .seconds(15)
        while !mailer.child.outputText.contains("mailer started") && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        try #require(mailer.child.outputText.contains("mailer started"), "\(mailer.child.outputText.suffix(1000))")
        mailer.child.signal(SIGTERM)
        #expect(await mailer.child.waitForExit(timeout: .seconds(15)) == 0)
        #expect(!mailer.child.outputText.contains("error"), "a normal stop is not an error:\n\(mailer.child.outputText.suffix(1000))")
    }

    @Test func smtpWithoutTLSIsRefusedUnlessTheURLOptsOut() async throws {
        // the test catcher speaks plaintext only: smtp:// to it must send nothing
        let plaintext = try TestEnvironment.require("PARLEY_TEST_SMTP_URL")
        let strict = try MailerProcess(smtpURL: plaintext.replacingOccurrences(of: "smtp+insecure://", with: "smtp://"), retryMilliseconds: 60_000)
        let email = "tls-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        try await Self.queueCodeJob(id: UUID().uuidString.lowercased(), to: email, expiresAt: Date().addingTimeInterval(300))
        let deadline = ContinuousClock.now + .seconds(15)
        while !strict.child.outputText.contains("mail delivery failed") && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(strict.child.outputText.contains("mail delivery failed"), "\(strict.child.outputText.suffix(2000))")
        #expect(try MailCatcher.mails(to: email).isEmpty, "nothing went out in plaintext")
        // a mailer whose URL explicitly opts out of TLS delivers it
        let relaxed = try MailerProcess(smtpURL: plaintext, retryMilliseconds: 300)
        let delivered = ContinuousClock.now + .seconds(15)
        while try MailCatcher.mails(to: email).isEmpty && ContinuousClock.now < delivered { try await Task.sleep(for: .milliseconds(50)) }
        #expect(try MailCatcher.mails(to: email).count == 1)
        withExtendedLifetime((strict, relaxed)) {}
    }

    @Test func expiredCodesAndMailsAlreadySentAreNeverSent() async throws {
        let mailer = try MailerProcess()
        // a code whose lifetime ended while it waited in the queue
        let expiredEmail = "expired-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        try await Self.queueCodeJob(id: UUID().uuidString.lowercased(), to: expiredEmail, expiresAt: Date().addingTimeInterval(-1))
        // a job whose mail went out before a crash, just before its XACK
        let sentID = UUID().uuidString.lowercased()
        let sentEmail = "sent-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        let database = try TestEnvironment.databaseSettings()
        _ = try await withPostgresClient(database) { client in
            try await client.query("INSERT INTO mail_sent (idempotency_key, kind) VALUES (\(sentID), 'otp')", logger: TestEnvironment.logger)
        }
        try await Self.queueCodeJob(id: sentID, to: sentEmail, expiresAt: Date().addingTimeInterval(300))
        let deadline = ContinuousClock.now + .seconds(15)
        while !(mailer.child.outputText.contains("dropped") && mailer.child.outputText.contains("mail already sent")) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(mailer.child.outputText.contains("one-time code expired before it could be mailed; dropped"))
        #expect(mailer.child.outputText.contains("mail already sent; acknowledging"))
        try await Self.withRedis { redis in
            for email in [expiredEmail, sentEmail] {
                try await eventually { try await redis.entryIsAcknowledged(OneTimeCodes.mailStream, group: "mailers", field: "to", value: email) }
            }
        }
        #expect(try MailCatcher.mails(to: expiredEmail).isEmpty)
        #expect(try MailCatcher.mails(to: sentEmail).isEmpty)
    }
}
