public import Foundation
import NIOHTTP1

/// `parley bench login`: password logins/s (each one an Argon2id
/// verification on the gateway) with `concurrency` clients for `duration`;
/// then, when the mailer's outbox folder is given, `codes` one-time codes:
/// requested, read from the mails as a user would, and verified concurrently.
public struct LoginScenario: Sendable {
    public var urls: [URL]
    public var users = 16
    public var concurrency = 4
    public var duration: Duration = .seconds(10)
    public var outbox: URL?
    public var codes = 200

    public init(urls: [URL]) {
        self.urls = urls
    }

    public func run() async throws -> BenchReport {
        guard !self.urls.isEmpty, self.users > 0, self.concurrency > 0 else { throw BenchError("need a URL, users > 0 and concurrency > 0") }
        let progress = Progress()
        let run = String(UUID().uuidString.prefix(8)).lowercased()
        let users = try await parallel(self.users, width: 4, urls: self.urls, progress: progress, label: "registering users") { api, index in
            try await api.register(email: "bench-login-\(run)-\(index)@bench.example", name: "bench \(index)")
        }
        progress.done()

        var report = BenchReport(scenario: "login")
        report.parameters = [("users", .count(self.users)), ("concurrency", .count(self.concurrency)), ("duration_s", .number(self.duration.seconds, ""))]
        let logins = try await closedLoop(clients: self.concurrency, urls: self.urls, duration: self.duration, progress: progress, label: "logging in") { api, index in
            let user = users[index % users.count]
            let response = try await api.call(.POST, "/v1/auth/login", json: ["email": user.email, "password": BenchAPI.password])
            return response.status == 200
        }
        report.results += [("logins", .count(Int(logins.latency.count))), ("logins_per_s", .rate(logins.rate)), ("failed_logins", .count(logins.failed))]
        report.latencies.append(("login", logins.latency.summary))
        if logins.failed > 0 { report.failures.append("\(logins.failed) logins failed") }

        guard let outbox = self.outbox else { return report }
        report.parameters.append(("codes", .count(self.codes)))
        let emails = (0..<self.codes).map { "bench-otp-\(run)-\($0)@bench.example" }
        let requestStart = ContinuousClock.now
        _ = try await parallel(self.codes, width: self.concurrency, urls: self.urls, progress: progress, label: "requesting codes") { api, index in
            // per-IP limits: each request comes from its own (forwarded) address
            let requester = BenchAPI(connection: api.connection, clientAddress: "10.200.\(index / 256 % 256).\(index % 256)")
            try requester.expect(202, try await requester.call(.POST, "/v1/auth/otp/request", json: ["email": emails[index]]), "otp request")
        }
        let requestTime = ContinuousClock.now - requestStart
        let codes = try await Self.readCodes(for: Set(emails), from: outbox, timeout: .seconds(60), progress: progress)
        let verifyStart = ContinuousClock.now
        let verified = Locked(Latency())
        let failed = Locked(0)
        _ = try await parallel(self.codes, width: self.concurrency, urls: self.urls, progress: progress, label: "verifying codes") { api, index in
            let sent = ContinuousClock.now
            let response = try await api.call(.POST, "/v1/auth/otp/verify", json: ["email": emails[index], "code": codes[emails[index]]!])
            let elapsed = ContinuousClock.now - sent
            verified.withLock { $0.record(elapsed) }
            if response.status != 200 { failed.withLock { $0 += 1 } }
        }
        let verifyTime = ContinuousClock.now - verifyStart
        progress.done()
        let failures = failed.withLock { $0 }
        report.results += [
            ("otp_requests_per_s", .rate(Double(self.codes) / requestTime.seconds)),
            ("otp_verifies_per_s", .rate(Double(self.codes) / verifyTime.seconds)),
            ("failed_verifies", .count(failures)),
        ]
        report.latencies.append(("otp_verify", verified.withLock { $0.summary }))
        if failures > 0 { report.failures.append("\(failures) code verifications failed") }
        return report
    }

    /// Reads the sign-in codes mailed to `emails` from the mailer's outbox folder.
    static func readCodes(for emails: Set<String>, from folder: URL, timeout: Duration, progress: Progress) async throws -> [String: String] {
        var codes: [String: String] = [:]
        var seen = Set<String>()
        let deadline = ContinuousClock.now + timeout
        while codes.count < emails.count {
            guard ContinuousClock.now < deadline else {
                throw BenchError("only \(codes.count) of \(emails.count) code mails arrived in \(folder.path) within \(timeout): is a mailer writing there?")
            }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasSuffix(".eml") && !seen.contains(name) {
                seen.insert(name)
                guard let mail = try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8) else { continue }
                if let (email, code) = Self.code(in: mail), emails.contains(email) { codes[email] = code }
            }
            progress.show("code mails \(codes.count)/\(emails.count)")
            if codes.count < emails.count { try await Task.sleep(for: .milliseconds(100)) }
        }
        return codes
    }

    /// (recipient, code) of a sign-in code mail.
    static func code(in mail: String) -> (String, String)? {
        var recipient: String?
        // "\r\n" is one Character in Swift: split on any newline
        let lines = mail.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
        for line in lines {
            if line.isEmpty { break }
            if line.lowercased().hasPrefix("to:") {
                let value = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
                recipient = value.split(separator: "<").last.map { String($0.split(separator: ">").first ?? "") } ?? value
            }
        }
        guard let recipient else { return nil }
        // the text part is base64 (MailMessage): decode each base64 body and look for the code
        var texts = [mail]
        var index = 0
        while index < lines.count {
            if lines[index].lowercased() == "content-transfer-encoding: base64" {
                while index < lines.count, !lines[index].isEmpty { index += 1 }
                index += 1
                var encoded = ""
                while index < lines.count, !lines[index].isEmpty, !lines[index].hasPrefix("--") {
                    encoded += lines[index]
                    index += 1
                }
                if let data = Data(base64Encoded: encoded) { texts.append(String(decoding: data, as: UTF8.self)) }
            }
            index += 1
        }
        guard let text = texts.first(where: { $0.contains("sign-in code is ") }), let range = text.range(of: "sign-in code is ") else { return nil }
        let code = text[range.upperBound...].prefix(6)
        guard code.count == 6, code.allSatisfy(\.isNumber) else { return nil }
        return (recipient.lowercased(), String(code))
    }
}
