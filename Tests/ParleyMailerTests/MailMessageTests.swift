import Foundation
import ParleyCore
import Testing

@testable import ParleyMailer

@Suite struct MailMessageTests {
    let message = MailMessage(
        from: .init(email: "no-reply@example.com", name: "Parley \"Bot\""),
        to: .init(email: "zoe@example.com", name: "Zoë Ωmega 李小龍 — with a very long display name that needs splitting"),
        subject: "Новые сообщения: 3 — ünread 👋",
        text: "Line one\nЛиния два — 👩‍👩‍👧\n",
        html: "<p>héllo &amp; 👋</p>",
        messageID: "abc-123@parley",
        date: Date(timeIntervalSince1970: 1_795_243_303)
    )

    static func decodeWords(_ header: String) -> String {
        let unfolded = header.replacingOccurrences(of: "\r\n ", with: "")
        var result = ""
        var rest = Substring(unfolded)
        while let start = rest.range(of: "=?utf-8?B?") {
            result += rest[..<start.lowerBound]
            let after = rest[start.upperBound...]
            guard let end = after.range(of: "?=") else { break }
            result += String(decoding: Data(base64Encoded: String(after[..<end.lowerBound])) ?? Data(), as: UTF8.self)
            rest = after[end.upperBound...]
        }
        return result + rest
    }

    @Test func headersAreASCIIAndDecodeBackToTheOriginal() {
        let raw = self.message.rendered()
        let headerBlock = String(raw[..<raw.range(of: "\r\n\r\n")!.lowerBound])
        #expect(headerBlock.unicodeScalars.allSatisfy { $0.isASCII })
        let lines = headerBlock.replacingOccurrences(of: "\r\n ", with: " ").components(separatedBy: "\r\n")
        let subject = lines.first { $0.hasPrefix("Subject: ") }.map { String($0.dropFirst(9)) } ?? ""
        #expect(Self.decodeWords(subject.replacingOccurrences(of: "?= =?", with: "?==?")) == self.message.subject)
        #expect(headerBlock.contains("From: \"Parley \\\"Bot\\\"\" <no-reply@example.com>"))
        #expect(headerBlock.contains("Date: Sat, 21 Nov 2026"))
        #expect(headerBlock.contains("Message-ID: <abc-123@parley>"))
        #expect(headerBlock.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 998 })
    }

    @Test func bodiesAreBase64UTF8PartsOfAnAlternative() {
        let raw = self.message.rendered()
        #expect(raw.contains("Content-Type: multipart/alternative; boundary="))
        #expect(raw.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"))
        #expect(raw.contains("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64"))
        let encodedText = Data(self.message.text.utf8).base64EncodedString()
        #expect(raw.replacingOccurrences(of: "\r\n", with: "").contains(encodedText))
        #expect(raw.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 998 })
        // header injection through a subject with line breaks is impossible
        var injected = self.message
        injected.subject = "Hi\r\nBcc: victim@example.com"
        #expect(!injected.rendered().contains("\r\nBcc:"))
    }

    @Test func addressParsing() {
        #expect(MailerConfiguration.parseAddress("Parley <no-reply@example.com>") == .init(email: "no-reply@example.com", name: "Parley"))
        #expect(MailerConfiguration.parseAddress("no-reply@example.com") == .init(email: "no-reply@example.com"))
        #expect(MailerConfiguration.parseAddress("not an address") == nil)
    }

    @Test func configurationNeedsSomewhereToSend() {
        let base = [
            "PARLEY_DATABASE_URL": "postgres://p@h/db", "PARLEY_REDIS_URL": "redis://h:1/0",
            "PARLEY_MAIL_KEY": OneTimeCodes.mailJobKeyText(secret: Array(String(repeating: "s", count: 32).utf8)),
        ]
        #expect {
            _ = try MailerConfiguration.load(SettingsReader(base))
        } throws: { ($0 as? ConfigurationError)?.setting == "PARLEY_SMTP_URL" }
        #expect {
            _ = try MailerConfiguration.load(SettingsReader(base.merging(["PARLEY_SMTP_URL": "http://x"]) { $1 }))
        } throws: { ($0 as? ConfigurationError)?.setting == "PARLEY_SMTP_URL" }
        #expect((try? MailerConfiguration.load(SettingsReader(base.merging(["PARLEY_MAIL_OUTBOX": "/tmp/x"]) { $1 }))) != nil)
    }

    @Test func theMailerHoldsOnlyItsOwnKeyAndSpeaksSMTPOverTLS() throws {
        let base = [
            "PARLEY_DATABASE_URL": "postgres://p@h/db", "PARLEY_REDIS_URL": "redis://h:1/0",
            "PARLEY_MAIL_KEY": OneTimeCodes.mailJobKeyText(secret: Array(String(repeating: "s", count: 32).utf8)),
        ]
        func setting(_ extra: [String: String]) -> String? {
            do {
                _ = try MailerConfiguration.load(SettingsReader(base.merging(extra) { $1 }))
                return nil
            } catch {
                return error.setting
            }
        }
        // the JWT secret could mint access tokens: a mailer refuses to be given it
        #expect(setting(["PARLEY_SMTP_URL": "smtp://mail.example.com:587", "PARLEY_JWT_SECRET": String(repeating: "s", count: 32)]) == "PARLEY_JWT_SECRET")
        #expect(setting(["PARLEY_SMTP_URL": "smtp://mail.example.com:587", "PARLEY_MAIL_KEY": "too-short"]) == "PARLEY_MAIL_KEY")
        #expect(setting(["PARLEY_SMTP_URL": "smtp://mail.example.com:587", "PARLEY_MAIL_KEY": ""]) == "PARLEY_MAIL_KEY")
        // smtp:// and smtps:// require TLS; plaintext only when the URL says so
        let starttls = try MailerConfiguration.load(SettingsReader(base.merging(["PARLEY_SMTP_URL": "smtp://mail.example.com:587"]) { $1 }))
        #expect(starttls.smtpRequiresTLS)
        let implicit = try MailerConfiguration.load(SettingsReader(base.merging(["PARLEY_SMTP_URL": "smtps://mail.example.com:465"]) { $1 }))
        #expect(implicit.smtpRequiresTLS)
        let catcher = try MailerConfiguration.load(SettingsReader(base.merging(["PARLEY_SMTP_URL": "smtp+insecure://catcher:1025"]) { $1 }))
        #expect(!catcher.smtpRequiresTLS)
        #expect(catcher.smtpURL?.scheme == "smtp")
    }
}
