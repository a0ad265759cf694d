public import Crypto
public import Foundation
public import HiredisNIO
public import ParleyCore

/// Everything `parley notifier` (alias `parley mailer`) needs, validated at start.
public struct MailerConfiguration: Sendable {
    public var database: DatabaseSettings
    public var redis: RedisConfiguration
    /// Opens the codes sealed into mail jobs: a key the gateways derive from
    /// their JWT secret (`parley mail-key` prints it). The mailer never holds
    /// the JWT secret itself, so a compromised mailer cannot mint access tokens.
    public var mailKey: SymmetricKey
    /// smtp:// or smtps://; `smtp+insecure://` in PARLEY_SMTP_URL becomes smtp:// with `smtpRequiresTLS` off.
    public var smtpURL: URLComponents?
    public var smtpRequiresTLS = true
    public var outbox: URL?
    public var from: MailMessage.Address
    public var consumer: String
    /// Pending entries idle this long are claimed again (from dead workers, or for a retry).
    public var retryAfter: Duration = .seconds(30)
    public var maxDeliveries = 5
    /// How long after a message an offline member's digest goes out.
    public var digestDelay: Duration = .seconds(120)
    /// Web Push: on when PARLEY_VAPID_PRIVATE_KEY is set.
    public var push = PushSettings()
    /// Webhooks: on when PARLEY_WEBHOOK_URLS is set.
    public var webhooks = WebhookSettings()

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> MailerConfiguration {
        let database = try DatabaseSettings.load(reader)
        let redis = try RedisSettings.load(reader)
        guard reader.optional("PARLEY_JWT_SECRET") == nil else {
            throw ConfigurationError(
                "PARLEY_JWT_SECRET", "the mailer must not be given the JWT secret: give it PARLEY_MAIL_KEY instead (parley mail-key prints it)"
            )
        }
        let rawKey = try reader.required("PARLEY_MAIL_KEY", hint: "the key that opens the codes in mail jobs: run parley mail-key where PARLEY_JWT_SECRET is set")
        guard let keyBytes = Secrets.base64URLDecode(rawKey), keyBytes.count == 32 else {
            throw ConfigurationError("PARLEY_MAIL_KEY", "must be the 32-byte key that parley mail-key prints (base64url)")
        }
        var smtp: URLComponents?
        var requireTLS = true
        if let url = reader.optional("PARLEY_SMTP_URL") {
            guard var components = URLComponents(string: url), ["smtp", "smtps", "smtp+insecure"].contains(components.scheme ?? ""),
                components.host?.isEmpty == false
            else {
                throw ConfigurationError(
                    "PARLEY_SMTP_URL", "must be smtp://[user:password@]host:port (STARTTLS required), smtps://… or smtp+insecure://… (plaintext, a local catcher)"
                )
            }
            if components.scheme == "smtp+insecure" {
                components.scheme = "smtp"
                requireTLS = false
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
            database: database, redis: redis, mailKey: SymmetricKey(data: keyBytes), smtpURL: smtp, outbox: outbox, from: from,
            consumer: reader.optional("PARLEY_MAILER_CONSUMER") ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        )
        configuration.smtpRequiresTLS = requireTLS
        configuration.retryAfter = .milliseconds(try reader.integer("PARLEY_MAILER_RETRY_MS", default: 30_000, range: 50...3_600_000))
        configuration.digestDelay = .milliseconds(try reader.integer("PARLEY_DIGEST_DELAY_MS", default: 120_000, range: 0...86_400_000))
        configuration.push = try PushSettings.load(reader)
        configuration.webhooks = try WebhookSettings.load(reader)
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
