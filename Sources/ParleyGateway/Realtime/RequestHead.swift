import NIOCore

/// A request head read from its raw bytes, leniently: the request line's
/// parts and the header fields (names lowercased, values without the spaces
/// around them), and whether every line was well-formed. One reading serves
/// both decisions about a connection's first head (`WebSocketHandshake`):
/// whether it is a plain handshake the gateway answers itself (well-formed
/// heads only), and whether it is an upgrade to refuse (any head).
struct RequestHead: Sendable {
    let method: String
    let target: String
    let version: String
    let fields: [(name: String, value: String)]
    /// CRLF line ends, a request line of three parts separated by single
    /// spaces with a visible-ASCII target, header names that are tokens, no
    /// folded lines, no control bytes in values.
    let wellFormed: Bool
    let byteCount: Int

    /// The head's bytes up to, not including, the blank line that ends it.
    init(_ head: some Collection<UInt8>) {
        let bytes = Array(head)
        var wellFormed = true
        var lines = bytes.split(separator: 10, omittingEmptySubsequences: false)
        for index in lines.indices.dropLast() {
            if lines[index].last == 13 { lines[index] = lines[index].dropLast() } else { wellFormed = false }
        }
        let requestLine = lines.first ?? []
        let parts = requestLine.split(separator: 32, omittingEmptySubsequences: false)
        if parts.count != 3 || !parts[1].allSatisfy({ (0x21...0x7E).contains($0) }) { wellFormed = false }
        self.method = parts.first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        self.target = parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : ""
        self.version = parts.count > 2 ? String(decoding: parts[2], as: UTF8.self) : ""
        var fields: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else {
                wellFormed = false  // a folded line, or no field at all
                continue
            }
            let name = line[..<colon]
            let value = line[(colon + 1)...]
            if !name.allSatisfy(Self.isTokenByte) || !value.allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) { wellFormed = false }
            fields.append((Self.trimmed(name).lowercased(), Self.trimmed(value)))
        }
        self.fields = fields
        self.wellFormed = wellFormed
        self.byteCount = bytes.count
    }

    /// The values of the fields called `name` (lowercase), in order.
    func values(_ name: String) -> [String] {
        self.fields.compactMap { $0.name == name ? $0.value : nil }
    }

    /// Whether a field called `name` lists `token` (comma-separated, any case).
    func lists(_ name: String, _ token: String) -> Bool {
        self.values(name).contains { value in
            value.utf8.split(separator: UInt8(ascii: ",")).contains { Self.trimmed($0).lowercased() == token }
        }
    }

    /// The target's path, without its query.
    var path: Substring { self.target.prefix { $0 != "?" } }

    /// Where the head in `buffer` ends: the offset, from the reader index, of
    /// the CRLF CRLF after it, searched for from offset `start`.
    static func end(in buffer: ByteBuffer, from start: Int = 0) -> Int? {
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

    /// Whether a line of `head` starts with `name` (lowercase, colon included), in any case:
    /// a look at the raw bytes that spares reading heads that cannot matter.
    static func hasField(_ name: String, in head: some Collection<UInt8>) -> Bool {
        let name = Array("\n\(name)".utf8)
        var matched = 0
        for byte in head {
            let lower = (65...90).contains(byte) ? byte | 0x20 : byte
            if lower == name[matched] {
                matched += 1
                if matched == name.count { return true }
            } else {
                matched = lower == name[0] ? 1 : 0
            }
        }
        return false
    }

    /// The bytes without the spaces and tabs around them, as text.
    private static func trimmed(_ bytes: some BidirectionalCollection<UInt8>) -> String {
        let isSpace = { (byte: UInt8) in byte == 32 || byte == 9 }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
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
