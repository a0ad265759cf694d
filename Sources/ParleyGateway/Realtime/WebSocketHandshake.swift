import Crypto
import Foundation
import NIOCore

/// A connection's first request head when it is a plain WebSocket opening
/// handshake (RFC 6455 §4.2.1), read straight from its bytes: the gateway
/// answers it with the 101 and installs the WebSocket handlers itself,
/// without NIO's HTTP decoder and upgrade machinery (a fifth of a connect's
/// CPU). Only heads that are unambiguous take this way; anything else —
/// another method, path or version, a body, a folded or malformed line, a
/// repeated key, a long head — gives nil and goes through the general HTTP
/// pipeline, which answers it as before (an upgrade there, or a 4xx).
struct WebSocketHandshake: Equatable, Sendable {
    /// The request target: `/v1/ws`, perhaps with a query.
    let target: String
    let key: String
    let host: String?
    let origins: [String]
    /// The first `Authorization` header's value.
    let authorization: String?

    /// Longer heads, or heads of more lines, take the general way (which applies its own limits).
    static let maxBytes = 8192
    static let maxHeaderLines = 64
    static let path = Array("/v1/ws".utf8)

    /// The head's bytes up to, not including, the blank line that ends it.
    init?(head: some Collection<UInt8>) {
        guard head.count <= Self.maxBytes else { return nil }
        let bytes = Array(head)
        var lines = Self.lines(bytes)[...]
        guard let requestLine = lines.popFirst(), let target = Self.target(of: bytes[requestLine]) else { return nil }
        guard lines.count <= Self.maxHeaderLines else { return nil }
        var upgrade = false, connectionUpgrade = false
        var keys: [String] = [], versions: [String] = [], hosts: [String] = [], origins: [String] = []
        var authorization: String?
        var emptyBody = false
        for line in lines {
            guard let (name, value) = Self.field(bytes[line]) else { return nil }
            switch name {
            case "upgrade":
                guard !upgrade, value.lowercased() == "websocket" else { return nil }
                upgrade = true
            case "connection":
                if value.utf8.split(separator: UInt8(ascii: ",")).contains(where: { Self.trimmed($0).lowercased() == "upgrade" }) {
                    connectionUpgrade = true
                }
            case "sec-websocket-key": keys.append(value)
            case "sec-websocket-version": versions.append(value)
            case "host": hosts.append(value)
            case "origin": origins.append(value)
            case "authorization": authorization = authorization ?? value
            case "content-length":  // "0" is no body (some clients send it); one or another value: the general way
                guard value == "0", !emptyBody else { return nil }
                emptyBody = true
            case "transfer-encoding": return nil
            default: break
            }
        }
        guard upgrade, connectionUpgrade, keys.count == 1, let key = keys.first, !key.isEmpty, key.utf8.allSatisfy(Self.isBase64Byte),
            versions == ["13"], hosts.count <= 1
        else { return nil }
        self.target = target
        self.key = key
        self.host = hosts.first
        self.origins = origins
        self.authorization = authorization
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

    /// The ranges of the CRLF-separated lines; a bare CR or LF makes the head not plain.
    private static func lines(_ bytes: [UInt8]) -> [Range<Int>] {
        var lines: [Range<Int>] = []
        var start = 0
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case 13:
                guard index + 1 < bytes.count, bytes[index + 1] == 10 else { return [] }
                lines.append(start..<index)
                index += 2
                start = index
            case 10:
                return []
            default:
                index += 1
            }
        }
        lines.append(start..<bytes.count)
        return lines
    }

    /// `GET /v1/ws[?query] HTTP/1.1` → the target.
    private static func target(of line: ArraySlice<UInt8>) -> String? {
        let parts = line.split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].elementsEqual("GET".utf8), parts[2].elementsEqual("HTTP/1.1".utf8) else { return nil }
        let target = parts[1]
        guard target.starts(with: Self.path), target.allSatisfy({ (0x21...0x7E).contains($0) }) else { return nil }
        let rest = target.dropFirst(Self.path.count)
        guard rest.isEmpty || rest.first == UInt8(ascii: "?") else { return nil }
        return String(decoding: target, as: UTF8.self)
    }

    /// `name: value` → the lowercased name and the value without surrounding
    /// spaces; nil for an empty or folded line, a name that is not a token,
    /// or a control byte in the value.
    private static func field(_ line: ArraySlice<UInt8>) -> (String, String)? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return nil }
        let name = line[..<colon]
        guard name.allSatisfy(Self.isTokenByte) else { return nil }
        let value = line[(colon + 1)...]
        guard value.allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) else { return nil }
        return (String(decoding: name, as: UTF8.self).lowercased(), Self.trimmed(value))
    }

    /// The bytes without the spaces and tabs around them, as text.
    private static func trimmed(_ bytes: some BidirectionalCollection<UInt8>) -> String {
        let isSpace = { (byte: UInt8) in byte == 32 || byte == 9 }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    /// Where the head in `buffer` ends: the offset, from the reader index, of
    /// the CRLF CRLF after it, searched for from offset `start`.
    static func headEnd(in buffer: ByteBuffer, from start: Int = 0) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= 4 else { return nil }
            var index = max(0, start)
            while index <= bytes.count - 4 {
                if bytes[index + 3] != 10 {
                    index += bytes[index + 3] == 13 ? 1 : 4  // no LF at +3: no match ends before +4, unless +3 is a CR
                    continue
                }
                if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13 { return index }
                index += 1
            }
            return nil
        }
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

    /// RFC 9110 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"),
            UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "^"), UInt8(ascii: "`"), UInt8(ascii: "|"),
            UInt8(ascii: "~"):
            true
        default: false
        }
    }
}
