public import HiredisNIO
public import Foundation
public import Logging

/// `PARLEY_LOG_LEVEL`: trace, debug, info (default), notice, warning, error, critical.
public enum LogSettings {
    public static let variable = "PARLEY_LOG_LEVEL"

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> Logger.Level {
        try reader.choice(Self.variable, default: Logger.Level.info)
    }
}

/// `PARLEY_REDIS_URL`: `redis://[user:password@]host:port/db`.
public enum RedisSettings {
    public static let variable = "PARLEY_REDIS_URL"

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> RedisConfiguration {
        let url = try reader.required(Self.variable, hint: "set it or pass --redis-url, e.g. redis://127.0.0.1:6379/0")
        do {
            return try RedisConfiguration(url: url)
        } catch {
            throw ConfigurationError(Self.variable, error.message)
        }
    }
}

/// `PARLEY_ENV`: `production` (default) or `development`. Development mode
/// generates a JWT secret when none is set and may log one-time codes.
public enum DeploymentEnvironment: String, Sendable, CaseIterable {
    case production
    case development

    public static let variable = "PARLEY_ENV"

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> DeploymentEnvironment {
        try reader.choice(Self.variable, default: DeploymentEnvironment.production)
    }
}

/// `PARLEY_JWT_SECRET`: signs access tokens; the keys of one-time codes and
/// mail jobs are derived from it. At least 32 bytes.
public enum JWTSecretSettings {
    public static let variable = "PARLEY_JWT_SECRET"
    public static let minimumBytes = 32

    /// The secret, or nil when it is not set.
    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> [UInt8]? {
        guard let raw = reader.optional(Self.variable) else { return nil }
        let secret = Array(raw.utf8)
        guard secret.count >= Self.minimumBytes else {
            throw ConfigurationError(Self.variable, "must be at least \(Self.minimumBytes) bytes (got \(secret.count))")
        }
        return secret
    }
}

/// Web Push (PROTOCOL.md 1.1), read alike by gateways (the public key they
/// hand out, the endpoints they accept) and the notifier (which signs and
/// sends). Push is off unless `PARLEY_VAPID_PRIVATE_KEY` is set.
public struct PushSettings: Sendable {
    public var vapid: WebPush.VAPIDKey?
    /// `PARLEY_PUSH_ALLOW_HTTP=1`: subscriptions may name http:// endpoints
    /// (a push service on the same host, in development and tests). Off,
    /// only https:// endpoints are accepted.
    public var allowHTTP = false

    public init(vapid: WebPush.VAPIDKey? = nil, allowHTTP: Bool = false) {
        self.vapid = vapid
        self.allowHTTP = allowHTTP
    }

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> PushSettings {
        let allowHTTP = try reader.boolean("PARLEY_PUSH_ALLOW_HTTP", default: false)
        guard let raw = reader.optional("PARLEY_VAPID_PRIVATE_KEY") else {
            if reader.optional("PARLEY_VAPID_SUBJECT") != nil {
                throw ConfigurationError("PARLEY_VAPID_PRIVATE_KEY", "missing while PARLEY_VAPID_SUBJECT is set (parley vapid-key prints a new key pair)")
            }
            return PushSettings(allowHTTP: allowHTTP)
        }
        // the key's own problem first (it is never echoed)
        guard WebPush.VAPIDKey(base64URL: raw, subject: "mailto:check@localhost") != nil else {
            throw ConfigurationError("PARLEY_VAPID_PRIVATE_KEY", "must be the base64url 32-byte P-256 private key that parley vapid-key prints")
        }
        let subject = try reader.required("PARLEY_VAPID_SUBJECT", hint: "a contact for push services: mailto:admin@example.com or https://example.com")
        guard subject.hasPrefix("mailto:") || subject.hasPrefix("https://"), subject.count > 8, !subject.contains(" "),
            let key = WebPush.VAPIDKey(base64URL: raw, subject: subject)
        else {
            throw ConfigurationError("PARLEY_VAPID_SUBJECT", "must be a mailto: or https: contact (RFC 8292), e.g. mailto:admin@example.com")
        }
        return PushSettings(vapid: key, allowHTTP: allowHTTP)
    }

    /// Whether a subscription's endpoint is one Parley pushes to: an absolute
    /// https:// URL (http:// with `allowHTTP`) with a host, no user info, at
    /// most 2,048 characters. Push services are public services with names on
    /// port 443: unless `allowHTTP`, a host that is an IP address,
    /// `localhost` or a single label (`redis`, `postgres`: names of an
    /// internal network) is refused, and so is any other port (a user must
    /// not point the notifier at a server of its own network).
    public func acceptsEndpoint(_ endpoint: String) -> URL? {
        guard endpoint.utf8.count <= 2048, let components = URLComponents(string: endpoint),
            let scheme = components.scheme?.lowercased(), scheme == "https" || (scheme == "http" && self.allowHTTP),
            let host = components.host?.lowercased(), !host.isEmpty, components.user == nil, components.password == nil,
            self.allowHTTP || (!Self.isAddressOrLocal(host) && host.trimmingCharacters(in: CharacterSet(charactersIn: ".")).contains(".")
                && (components.port == nil || components.port == 443)),
            let url = components.url
        else { return nil }
        return url
    }

    /// An IPv4 or IPv6 literal (any notation a resolver takes), or localhost.
    static func isAddressOrLocal(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]."))
        if bare == "localhost" || bare.hasSuffix(".localhost") || bare.contains(":") { return true }
        // 127.1, 0x7f.1, 2130706433: all digits, dots and hex prefixes are addresses to a resolver
        return !bare.isEmpty && bare.split(separator: ".").allSatisfy { part in
            part.allSatisfy(\.isNumber) || (part.lowercased().hasPrefix("0x") && part.dropFirst(2).allSatisfy(\.isHexDigit))
        }
    }
}
