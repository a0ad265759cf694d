import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
public import ParleyCore

/// What a push service said to one push (RFC 8030 §5).
public enum PushOutcome: Sendable, Equatable {
    /// 201 (or any 2xx): accepted.
    case accepted
    /// 404 or 410: the subscription is gone; delete it.
    case gone
    /// 429, 5xx, or no answer: try again, not before `after` when the service said (Retry-After).
    case retry(after: Duration?)
    /// Any other status (400, 401, 403 a VAPID key mismatch, 413): not worth repeating.
    case rejected(status: Int)
}

/// One push, as the worker hands it to a sender.
public struct PushDelivery: Sendable {
    public var endpoint: URL
    public var keys: WebPush.SubscriptionKeys
    /// The JSON the service worker receives, before encryption.
    public var payload: Data
    /// Collapses the pushes of one chat (RFC 8030 §5.4).
    public var topic: String
    public var urgency: String
    public var ttl: Int
}

/// Sends pushes: POSTs the encrypted payload with VAPID authorization to the
/// subscription's endpoint (RFC 8030 §5) over AsyncHTTPClient. Redirects
/// are not followed (an endpoint is where the push goes, nowhere else).
public final class WebPushSender: Sendable {
    let client: HTTPClient
    let vapid: WebPush.VAPIDKey
    let timeout: Duration

    public init(vapid: WebPush.VAPIDKey, timeout: Duration = .seconds(10)) {
        self.vapid = vapid
        self.timeout = timeout
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(10))
        configuration.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async {
        try? await self.client.shutdown()
    }

    /// The VAPID header per push service origin, signed once and reused for
    /// 6 of its 12 hours (an ES256 signature per push would cost more than
    /// the encryption).
    private let authorizations = Mutex<[String: (header: String, until: Date)]>([:])

    func authorization(for endpoint: URL, now: Date = Date()) throws -> String {
        let origin = WebPush.VAPIDKey.origin(of: endpoint) ?? endpoint.absoluteString
        if let cached = self.authorizations.withLock({ $0[origin] }), cached.until > now { return cached.header }
        let header = try self.vapid.authorization(for: endpoint, now: now, lifetime: 12 * 3600)
        self.authorizations.withLock { cache in
            if cache.count > 1000 { cache.removeAll() }
            cache[origin] = (header, now.addingTimeInterval(6 * 3600))
        }
        return header
    }

    public func send(_ delivery: PushDelivery) async -> PushOutcome {
        do {
            let body = try WebPush.encrypt(delivery.payload, for: delivery.keys)
            var request = HTTPClientRequest(url: delivery.endpoint.absoluteString)
            request.method = .POST
            request.headers.add(name: "Authorization", value: try self.authorization(for: delivery.endpoint))
            request.headers.add(name: "Content-Encoding", value: "aes128gcm")
            request.headers.add(name: "Content-Type", value: "application/octet-stream")
            request.headers.add(name: "TTL", value: String(delivery.ttl))
            request.headers.add(name: "Topic", value: delivery.topic)
            request.headers.add(name: "Urgency", value: delivery.urgency)
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await self.client.execute(request, timeout: .milliseconds(self.timeout.milliseconds))
            // read (and drop) what the service says, so that the connection is reused
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return Self.outcome(status: Int(response.status.code), retryAfter: response.headers.first(name: "Retry-After"))
        } catch {
            return .retry(after: nil)
        }
    }

    /// RFC 8030 §5 and the usual practice of push services.
    static func outcome(status: Int, retryAfter: String?, now: Date = Date()) -> PushOutcome {
        switch status {
        case 200..<300: return .accepted
        case 404, 410: return .gone
        case 429, 500..<600: return .retry(after: retryAfter.flatMap { Self.retryAfter($0, now: now) })
        default: return .rejected(status: status)
        }
    }

    /// Retry-After (RFC 9110 §10.2.3): seconds, or an HTTP date.
    static func retryAfter(_ value: String, now: Date) -> Duration? {
        let text = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(text), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: text) else { return nil }
        return .milliseconds(max(0, Int64(date.timeIntervalSince(now) * 1000)))
    }
}
