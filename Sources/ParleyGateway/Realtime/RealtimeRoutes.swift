import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1
import Logging
import ParleyCore
import ParleyChat

/// `/v1/ws` and `/v1/chats/{id}/presence`.
struct RealtimeRoutes: Sendable {
    /// Where a WebSocket is opened.
    static let webSocketPath = "/v1/ws"

    let realtime: RealtimeService
    let accounts: AccountServices
    let allowedOrigins: Set<String>
    let logger: Logger

    /// A browser's Origin (http, https or "null") must be in the allowlist;
    /// no Origin, or a non-browser one (a native library's ws://…), passes:
    /// pages cannot set Origin, so only browsers can ride on a user's cookies
    /// or network position, and those are the ones checked.
    func originAllowed(_ request: Request) -> Bool {
        Self.originAllowed(request.headers[values: .origin], allowed: self.allowedOrigins, host: request.head.authority)
    }

    /// Whether a WebSocket may be opened with these Origin headers: clients
    /// that are not browsers send none (or no web origin); a browser page
    /// must come from a listed origin, or from this gateway itself (the
    /// origin's host and port are the Host the browser addressed: the web
    /// client served at `/`).
    static func originAllowed(_ values: [String], allowed: Set<String>, host: String?) -> Bool {
        let host = host?.trimmingCharacters(in: .whitespaces).lowercased()
        return values.allSatisfy { raw in
            let origin = raw.trimmingCharacters(in: .whitespaces).lowercased()
            let isBrowserOrigin = origin == "null" || origin.hasPrefix("http://") || origin.hasPrefix("https://")
            guard isBrowserOrigin else { return true }
            if allowed.contains(origin) { return true }
            guard let host, !host.isEmpty, let separator = origin.range(of: "://") else { return false }
            return origin[separator.upperBound...] == host
        }
    }

    /// The session of an upgrade request to `/v1/ws` (nil: not upgraded;
    /// foreign browser origins are then refused by `FirstRequestHandler`).
    func webSocketSession(target: String, origins: [String], host: String?) -> WebSocketSession? {
        let path = target.prefix { $0 != "?" }
        guard path == Self.webSocketPath, Self.originAllowed(origins, allowed: self.allowedOrigins, host: host) else { return nil }
        return WebSocketSession(realtime: self.realtime, tokens: self.accounts.tokens, revocations: self.accounts.revocations, logger: self.logger)
    }

    /// What a request to /v1/ws gets when it is not upgraded.
    func addHTTPRoutes(to router: Router<ParleyRequestContext>, authenticated: RouterGroup<ParleyRequestContext>) {
        router.get(RouterPath(Self.webSocketPath)) { request, _ -> Response in
            guard self.originAllowed(request) else {
                throw APIError.forbiddenOrigin
            }
            throw APIError.badRequest("websocket_required", "GET /v1/ws must be a WebSocket upgrade")
        }
        authenticated.get("chats/:id/presence") { _, context -> Response in
            let me = try context.requireIdentity().userID
            guard let chatID = context.parameters.get("id").flatMap(UUID.init(uuidString:)),
                try await self.realtime.chats.store.role(of: me, in: chatID) != nil
            else { throw ChatError.chatNotFound }
            let members = try await self.realtime.chats.store.memberIDs(of: chatID)
            let online = try await self.realtime.presence.online(members)
            return try Response.json(["online": online.map(\.lowercased)])
        }
    }
}


extension HTTPField.Name {
    static let origin = Self("Origin")!
}
