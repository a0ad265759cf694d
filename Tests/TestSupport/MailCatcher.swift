import Foundation

/// A real `parley notifier` process (formerly `parley mailer`, which still names it).
public final class MailerProcess: @unchecked Sendable {
    public let child: ChildProcess

    public init(smtpURL: String? = nil, retryMilliseconds: Int = 300, environment: [String: String] = [:]) throws {
        var env: [String: String] = [
            "PARLEY_DATABASE_URL": try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"),
            "PARLEY_REDIS_URL": try TestEnvironment.require("PARLEY_TEST_REDIS_URL"),
            "PARLEY_MAIL_KEY": GatewayProcess.mailKey,
            "PARLEY_SMTP_URL": try smtpURL ?? TestEnvironment.require("PARLEY_TEST_SMTP_URL"),
            "PARLEY_MAIL_FROM": "Parley Tests <no-reply@example.test>",
            "PARLEY_MAILER_RETRY_MS": "\(retryMilliseconds)",
            "PARLEY_LOG_LEVEL": "info",
        ]
        env.merge(environment) { $1 }
        self.child = ChildProcess(try TestEnvironment.parleyBinary(), ["notifier"], environment: env, name: "notifier")
        try self.child.start()
    }

    deinit {
        self.child.signal(SIGKILL)
    }
}

/// The mails the test SMTP catcher (scripts/smtp_catcher.py) accepted.
public enum MailCatcher {
    public struct Mail: Sendable {
        public let headers: String
        public let text: String
        public let html: String
    }

    /// The subject of code mails, to tell them from digests.
    public static let codeSubject = "Subject: Your Parley sign-in code"

    /// Every mail addressed to `address` so far (only digests with `digestsOnly`).
    public static func mails(to address: String, digestsOnly: Bool = false) throws -> [Mail] {
        try self.all(to: address).filter { !digestsOnly || !$0.headers.contains(Self.codeSubject) }
    }

    private static func all(to address: String) throws -> [Mail] {
        let directory = try TestEnvironment.require("PARLEY_TEST_SMTP_DIR")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".eml") }.sorted().compactMap { name -> Mail? in
            guard let raw = try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8) else { return nil }
            guard let split = raw.range(of: "\r\n\r\n") ?? raw.range(of: "\n\n") else { return nil }
            let headers = String(raw[..<split.lowerBound])
            let to = headers.replacingOccurrences(of: "\r\n ", with: " ").components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("to:") } ?? ""
            guard to.lowercased().contains("<\(address.lowercased())>") else { return nil }
            return Mail(headers: headers, text: self.part(raw, type: "text/plain"), html: self.part(raw, type: "text/html"))
        }
    }

    /// Waits until at least `count` mails to `address` arrived.
    public static func wait(for address: String, count: Int = 1, digestsOnly: Bool = false, timeout: Duration = .seconds(20)) async throws -> [Mail] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let mails = try self.mails(to: address, digestsOnly: digestsOnly)
            if mails.count >= count { return mails }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw MissingMail(address: address)
    }

    /// The decoded body of a base64 MIME part.
    static func part(_ raw: String, type: String) -> String {
        guard let start = raw.range(of: "Content-Type: \(type); charset=utf-8") else { return "" }
        let rest = raw[start.upperBound...]
        guard let bodyStart = rest.range(of: "\r\n\r\n") else { return "" }
        let body = rest[bodyStart.upperBound...]
        let end = body.range(of: "\r\n--")?.lowerBound ?? body.endIndex
        let base64 = body[..<end].replacingOccurrences(of: "\r\n", with: "")
        return Data(base64Encoded: base64).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    public struct MissingMail: Error, CustomStringConvertible {
        public let address: String
        public var description: String { "no mail to \(self.address)" }
    }
}
