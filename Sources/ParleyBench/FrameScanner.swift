/// Reads the few fields the benchmark needs out of a server frame without a
/// JSON decoder (the receivers see tens of thousands of frames a second on
/// the same cores as the servers). Sound for Parley's frames: it finds the
/// first occurrence of `"key":`, and the benchmark's own message bodies never
/// contain a quote.
public struct ScannedFrame: Sendable, Equatable {
    public var type: String?
    public var chatID: String?
    public var clientID: String?
    public var seq: Int64?
    public var code: String?

    public init(_ text: String) {
        var text = text
        self = text.withUTF8 { bytes in
            var frame = ScannedFrame()
            frame.type = Self.string(bytes, "type")
            frame.chatID = Self.string(bytes, "chat_id")
            frame.clientID = Self.string(bytes, "client_id")
            frame.seq = Self.integer(bytes, "seq")
            frame.code = Self.string(bytes, "code")
            return frame
        }
    }

    private init() {}

    /// The index just after `"key":` (and any spaces), or nil.
    static func valueStart(_ bytes: UnsafeBufferPointer<UInt8>, _ key: String) -> Int? {
        let pattern = Array("\"\(key)\":".utf8)
        guard bytes.count >= pattern.count else { return nil }
        var index = 0
        outer: while index <= bytes.count - pattern.count {
            for offset in 0..<pattern.count where bytes[index + offset] != pattern[offset] {
                index += 1
                continue outer
            }
            var start = index + pattern.count
            while start < bytes.count, bytes[start] == UInt8(ascii: " ") { start += 1 }
            return start
        }
        return nil
    }

    static func string(_ bytes: UnsafeBufferPointer<UInt8>, _ key: String) -> String? {
        guard let start = valueStart(bytes, key), start < bytes.count, bytes[start] == UInt8(ascii: "\"") else { return nil }
        var end = start + 1
        while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += 1 }
        guard end < bytes.count else { return nil }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[(start + 1)..<end]), as: UTF8.self)
    }

    static func integer(_ bytes: UnsafeBufferPointer<UInt8>, _ key: String) -> Int64? {
        guard var index = valueStart(bytes, key) else { return nil }
        var value: Int64 = 0
        var digits = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            value = value * 10 + Int64(bytes[index] - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        return digits > 0 ? value : nil
    }
}
