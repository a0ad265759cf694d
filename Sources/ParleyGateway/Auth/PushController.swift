import Foundation
import HTTPTypes
public import Hummingbird
import ParleyCore

/// `/v1/push…` (PROTOCOL.md 1.1 "Push"): the VAPID public key browsers
/// subscribe with, and the caller's subscriptions. A subscription belongs
/// to the session that made it and ends with it. The pushes themselves
/// are sent by the notifier (`parley notifier`). With no
/// PARLEY_VAPID_PRIVATE_KEY every route answers 404 `push_disabled`.
public struct PushController: Sendable {
    let services: AccountServices

    public init(services: AccountServices) {
        self.services = services
    }

    struct SubscribeRequest: Decodable {
        struct Keys: Decodable {
            let p256dh: String
            let auth: String
        }

        let endpoint: String
        let keys: Keys
    }

    public func addRoutes(to group: RouterGroup<ParleyRequestContext>) {
        group.get("push/vapid-public-key") { _, _ in
            try Response.json(["key": try self.vapid().publicKey])
        }
        group.post("push/subscriptions") { request, context in
            _ = try self.vapid()
            let identity = try context.requireIdentity()
            let body = try await request.decodeJSON(SubscribeRequest.self, context: context)
            guard self.services.pushSettings.acceptsEndpoint(body.endpoint) != nil else {
                throw APIError.badRequest(
                    "invalid_endpoint", self.services.pushSettings.allowHTTP
                        ? "endpoint must be an http:// or https:// URL of at most 2048 characters"
                        : "endpoint must be an https:// URL of at most 2048 characters"
                )
            }
            guard let keys = WebPush.SubscriptionKeys(p256dh: body.keys.p256dh, auth: body.keys.auth) else {
                throw APIError.badRequest("invalid_keys", "keys.p256dh must be a base64url P-256 public key (65 bytes) and keys.auth base64url of 16 bytes")
            }
            try await self.services.limitProfileChanges(identity.userID)
            switch try await self.services.push.subscribe(userID: identity.userID, sessionID: identity.sessionID, endpoint: body.endpoint, keys: keys) {
            case .subscribed(let id):
                return try Response.json(["id": id.lowercased], status: .created)
            case .tooMany:
                throw APIError(.conflict, "too_many_subscriptions", "at most \(PushStore.perUser) push subscriptions per user: delete one first")
            case .sessionGone:
                throw APIError(.unauthorized, "invalid_token", "the session has ended")
            }
        }
        group.delete("push/subscriptions/:id") { _, context in
            _ = try self.vapid()
            let identity = try context.requireIdentity()
            try await self.services.limitProfileChanges(identity.userID)
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)),
                try await self.services.push.unsubscribe(id, userID: identity.userID)
            else { throw APIError.notFound("subscription_not_found", "no such push subscription") }
            return Response.noContent()
        }
    }

    func vapid() throws -> WebPush.VAPIDKey {
        guard let key = self.services.pushSettings.vapid else {
            throw APIError.notFound("push_disabled", "this server does not send push notifications (no PARLEY_VAPID_PRIVATE_KEY)")
        }
        return key
    }
}
