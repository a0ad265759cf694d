import Crypto
import Foundation
import HTTPTypes

/// A connection's first request head when it is a plain WebSocket opening
/// handshake (RFC 6455 §4.2.1): the gateway answers it with the 101 and
/// installs the WebSocket handlers itself, without NIO's HTTP decoder and
/// upgrade machinery (a fifth of a connect's CPU). Only heads that are
/// unambiguous take this way; anything else — another method or version, a
/// body, a folded or malformed line, a repeated key, a long head — gives
/// nil and goes through the general HTTP pipeline, which answers it as
/// before (an upgrade there, or a 4xx), unless `Refusal` answers it first.
/// Which targets open a socket is the route's to say (`RealtimeRoutes`).
struct WebSocketHandshake: Equatable, Sendable {
    /// The request target, perhaps with a query.
    let target: String
    let key: String
    let host: String?
    let origins: [String]
    /// The first `Authorization` header's value.
    let authorization: String?

    /// Longer heads, or heads of more lines, take the general way (which applies its own limits).
    static let maxBytes = 8192
    static let maxHeaderLines = 64

    init?(_ head: RequestHead) {
        guard head.wellFormed, head.byteCount <= Self.maxBytes, head.fields.count <= Self.maxHeaderLines,
            head.method == "GET", head.version == "HTTP/1.1", head.target.hasPrefix("/"),
            head.values("upgrade").map({ $0.lowercased() }) == ["websocket"], head.lists("connection", "upgrade"),
            head.values("sec-websocket-version") == ["13"],
            // no body ("Content-Length: 0", which some clients send, is none)
            head.values("transfer-encoding").isEmpty, head.values("content-length").allSatisfy({ $0 == "0" }),
            head.values("content-length").count <= 1
        else { return nil }
        let keys = head.values("sec-websocket-key")
        let hosts = head.values("host")
        guard keys.count == 1, let key = keys.first, !key.isEmpty, key.utf8.allSatisfy(Self.isBase64Byte), hosts.count <= 1 else { return nil }
        self.target = head.target
        self.key = key
        self.host = hosts.first
        self.origins = head.values("origin")
        self.authorization = head.values("authorization").first
    }

    /// An upgrade of a connection's first head that cannot be taken,
    /// answered with problem+json and a close: NIO's upgrade would drop such
    /// a connection without a word, or send it back to itself.
    enum Refusal: Equatable {
        /// A foreign browser origin (any target): 403 `forbidden_origin`.
        case forbiddenOrigin
        /// The socket's route without `Connection: Upgrade`, one
        /// `Sec-WebSocket-Key` or at most one `Sec-WebSocket-Version`: 400.
        case invalidHandshake
        /// The socket's route for another protocol version than 13: 426 with
        /// `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
        case unsupportedVersion

        /// Of `head` (not `whole`: longer than the HTTP decoder takes, so
        /// refused for its origin only, as its handshake lines may come
        /// after), to a socket opened at `path` from origins `originAllowed`
        /// allows; nil when the general way answers.
        init?(of head: RequestHead, whole: Bool, path: String, originAllowed: (_ origins: [String], _ host: String?) -> Bool) {
            guard head.lists("upgrade", "websocket") else { return nil }
            guard originAllowed(head.values("origin"), head.values("host").first) else {
                self = .forbiddenOrigin
                return
            }
            guard whole, head.method == "GET", head.path == path else { return nil }
            let keys = head.values("sec-websocket-key")
            let versions = head.values("sec-websocket-version")
            if !head.lists("connection", "upgrade") || keys.count != 1 || keys.first?.isEmpty != false || versions.count > 1 {
                self = .invalidHandshake
            } else if versions != ["13"] {
                self = .unsupportedVersion
            } else {
                return nil
            }
        }

        var error: APIError {
            switch self {
            case .forbiddenOrigin: .forbiddenOrigin
            case .invalidHandshake:
                .badRequest(
                    "invalid_websocket_handshake",
                    "a WebSocket upgrade needs Connection: Upgrade, one Sec-WebSocket-Key and at most one Sec-WebSocket-Version"
                )
            case .unsupportedVersion:
                APIError(.upgradeRequired, "unsupported_websocket_version", "this server speaks WebSocket version 13 (Sec-WebSocket-Version: 13)")
            }
        }

        /// The whole answer, as raw HTTP/1.1, closing the connection.
        var response: String {
            let error = self.error
            let body = String(decoding: error.body(), as: UTF8.self)
            let extra = self == .unsupportedVersion ? "Sec-WebSocket-Version: 13\r\n" : ""
            return "HTTP/1.1 \(error.status.code) \(error.status.reasonPhrase)\r\nContent-Type: application/problem+json\r\n\(extra)"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        }
    }

    /// A token sent as `Authorization: Bearer …`.
    var bearerToken: String? { Self.bearerToken(self.authorization) }

    /// The token of an `Authorization: Bearer …` value.
    static func bearerToken(_ authorization: String?) -> String? {
        guard let authorization, authorization.lowercased().hasPrefix("bearer ") else { return nil }
        return String(authorization.dropFirst(7))
    }

    /// `Sec-WebSocket-Accept`: the base64 SHA-1 of the key and the protocol's GUID.
    static func accept(key: String) -> String {
        Data(Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
    }

    /// The whole 101 answer, with the headers NIO's upgrader sends.
    var response: String {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: \(Self.accept(key: self.key))\r\nConnection: upgrade\r\n\r\n"
    }

    /// What a base64 key is made of (NIO's upgrade refuses a key with a comma, read as a list).
    private static func isBase64Byte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="):
            true
        default: false
        }
    }
}
