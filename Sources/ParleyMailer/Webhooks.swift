import AsyncHTTPClient
public import Crypto
public import Foundation
import NIOCore
import NIOHTTP1
public import ParleyCore

/// Webhooks (PROTOCOL.md 1.1): where they go and the key they are signed with.
public struct WebhookSettings: Sendable {
    public var urls: [URL] = []
    /// The HMAC key: the bytes of `whsec_<base64>` (Standard Webhooks).
    public var key: SymmetricKey?
    /// How long a failing delivery is retried before it is dead-lettered.
    public var retryWindow: Duration = .seconds(24 * 3600)

    public init() {}

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> WebhookSettings {
        var settings = WebhookSettings()
        settings.retryWindow = .milliseconds(try reader.integer("PARLEY_WEBHOOK_RETRY_WINDOW_MS", default: 86_400_000, range: 1000...604_800_000))
        guard let raw = reader.optional("PARLEY_WEBHOOK_URLS") else {
            if reader.optional("PARLEY_WEBHOOK_SECRET") != nil {
                throw ConfigurationError("PARLEY_WEBHOOK_URLS", "missing while PARLEY_WEBHOOK_SECRET is set (comma-separated http:// or https:// URLs)")
            }
            return settings
        }
        for item in raw.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            guard let components = URLComponents(string: item), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
                components.host?.isEmpty == false, components.user == nil, let url = components.url
            else {
                // never echoed: a webhook URL may carry the receiver's token
                throw ConfigurationError("PARLEY_WEBHOOK_URLS", "item \(settings.urls.count + 1) is not an http:// or https:// URL (without user info)")
            }
            settings.urls.append(url)
        }
        guard Set(settings.urls).count == settings.urls.count else { throw ConfigurationError("PARLEY_WEBHOOK_URLS", "lists a URL twice") }
        let secret = try reader.required("PARLEY_WEBHOOK_SECRET", hint: "whsec_ followed by base64 of 24 to 64 random bytes: openssl rand -base64 32 | sed 's/^/whsec_/'")
        guard let key = WebhookSignature.key(secret) else {
            throw ConfigurationError("PARLEY_WEBHOOK_SECRET", "must be whsec_ followed by base64 of 24 to 64 random bytes (openssl rand -base64 32 | sed 's/^/whsec_/')")
        }
        settings.key = key
        return settings
    }
}

/// Standard Webhooks signing (PROTOCOL.md 1.1): `v1,` + base64 of
/// HMAC-SHA256 over `id.timestamp.body`, with the key that follows `whsec_`.
public enum WebhookSignature {
    /// The key of a `whsec_<base64>` secret; nil unless it decodes to 24–64 bytes.
    public static func key(_ secret: String) -> SymmetricKey? {
        guard secret.hasPrefix("whsec_"), let bytes = Data(base64Encoded: String(secret.dropFirst("whsec_".count))), (24...64).contains(bytes.count)
        else { return nil }
        return SymmetricKey(data: bytes)
    }

    public static func sign(id: String, timestamp: Int64, body: Data, key: SymmetricKey) -> String {
        let signed = Data("\(id).\(timestamp).".utf8) + body
        return "v1," + Data(HMAC<SHA256>.authenticationCode(for: signed, using: key)).base64EncodedString()
    }
}

/// POSTs webhooks over AsyncHTTPClient: 2xx is delivered; anything else,
/// a timeout or no connection is a failure to retry. Redirects are not followed.
public final class WebhookSender: Sendable {
    let client: HTTPClient
    let key: SymmetricKey
    let timeout: Duration

    public init(key: SymmetricKey, timeout: Duration = .seconds(10)) {
        self.key = key
        self.timeout = timeout
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async {
        try? await self.client.shutdown()
    }

    /// nil when delivered, else what went wrong (for the log and the dead letter).
    public func send(_ body: Data, id: String, to url: URL, now: Date = Date()) async -> String? {
        let timestamp = Int64(now.timeIntervalSince1970)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "Parley-Webhooks/1")
        request.headers.add(name: "webhook-id", value: id)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(name: "webhook-signature", value: WebhookSignature.sign(id: id, timestamp: timestamp, body: body, key: self.key))
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await self.client.execute(request, timeout: .milliseconds(self.timeout.milliseconds))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return (200..<300).contains(response.status.code) ? nil : "HTTP \(response.status.code)"
        } catch {
            return "\(error)"
        }
    }
}
