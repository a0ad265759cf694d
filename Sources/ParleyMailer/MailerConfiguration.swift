public import Foundation
public import HiredisNIO
public import ParleyCore

/// Everything `parley mailer` needs, validated at start.
public struct MailerConfiguration: Sendable {
    public var database: DatabaseSettings
    public var redis: RedisConfiguration
    /// Opens the codes sealed into mail jobs (the gateways' PARLEY_JWT_SECRET).
    public var secret: [UInt8]
    public var smtpURL: URLComponents?
    public var outbox: URL?
    public var from: MailMessage.Address
    public var consumer: String
    /// Pending entries idle this long are claimed again (from dead workers, or for a retry).
    public var retryAfter: Duration = .seconds(30)
    public var maxDeliveries = 5
    /// How long after a message an offline member's digest goes out.
    public var digestDelay: Duration = .seconds(120)

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> MailerConfiguration {
        let database = try DatabaseSettings.load(reader)
        let redis = try RedisSettings.load(reader)
        let raw = try reader.required("PARLEY_JWT_SECRET", hint: "the gateways' secret: mail jobs carry codes sealed with a key derived from it")
        guard raw.utf8.count >= 32 else { throw ConfigurationError("PARLEY_JWT_SECRET", "must be at least 32 bytes (got \(raw.utf8.count))") }
        var smtp: URLComponents?
        if let url = reader.optional("PARLEY_SMTP_URL") {
            guard let components = URLComponents(string: url), ["smtp", "smtps"].contains(components.scheme ?? ""), components.host?.isEmpty == false else {
                throw ConfigurationError("PARLEY_SMTP_URL", "must be smtp://[user:password@]host:port or smtps://…")
            }
            smtp = components
        }
        let outbox = reader.optional("PARLEY_MAIL_OUTBOX").map { URL(fileURLWithPath: $0) }
        guard smtp != nil || outbox != nil else {
            throw ConfigurationError("PARLEY_SMTP_URL", "missing (set it, or PARLEY_MAIL_OUTBOX to write .eml files instead)")
        }
        let fromRaw = reader.optional("PARLEY_MAIL_FROM") ?? "Parley <no-reply@localhost>"
        guard let from = Self.parseAddress(fromRaw) else {
            throw ConfigurationError("PARLEY_MAIL_FROM", "must be an address, optionally with a name: Parley <no-reply@example.com>")
        }
        var configuration = MailerConfiguration(
            database: database, redis: redis, secret: Array(raw.utf8), smtpURL: smtp, outbox: outbox, from: from,
            consumer: reader.optional("PARLEY_MAILER_CONSUMER") ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        )
        configuration.retryAfter = .milliseconds(try reader.integer("PARLEY_MAILER_RETRY_MS", default: 30_000, range: 50...3_600_000))
        configuration.digestDelay = .milliseconds(try reader.integer("PARLEY_DIGEST_DELAY_MS", default: 120_000, range: 0...86_400_000))
        return configuration
    }

    /// "Name <address>" or "address".
    static func parseAddress(_ raw: String) -> MailMessage.Address? {
        let text = raw.trimmingCharacters(in: .whitespaces)
        if let open = text.lastIndex(of: "<"), text.hasSuffix(">") {
            let email = String(text[text.index(after: open)..<text.index(before: text.endIndex)])
            let name = text[..<open].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            guard email.contains("@"), !email.contains(" ") else { return nil }
            return MailMessage.Address(email: email, name: name.isEmpty ? nil : name)
        }
        guard text.contains("@"), !text.contains(" ") else { return nil }
        return MailMessage.Address(email: text)
    }
}
