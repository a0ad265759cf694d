import NIOCore
import Testing

@testable import HiredisNIO

@Suite struct RESPDecoderTests {
    static let binary: [UInt8] = [0x00, 0xFF, 0x0D, 0x0A, 0x24, 0x2D, 0x0D, 0x0A, 0x7F]

    /// Wire bytes and the values they decode to, covering every reply type.
    static let cases: [(String, [UInt8], RedisValue)] = [
        ("status", Array("+OK\r\n".utf8), .simpleString("OK")),
        ("error", Array("-WRONGTYPE Operation against a key\r\n".utf8), .error("WRONGTYPE Operation against a key")),
        ("integer", Array(":-42\r\n".utf8), .integer(-42)),
        ("bulk", Array("$5\r\nhello\r\n".utf8), .bulkString(ByteBuffer(string: "hello"))),
        ("empty bulk", Array("$0\r\n\r\n".utf8), .bulkString(ByteBuffer())),
        ("null bulk", Array("$-1\r\n".utf8), .null),
        ("null array", Array("*-1\r\n".utf8), .null),
        ("empty array", Array("*0\r\n".utf8), .array([])),
        ("binary bulk with CRLF inside", Array("$9\r\n".utf8) + binary + Array("\r\n".utf8), .bulkString(ByteBuffer(bytes: binary))),
        (
            "nested array with nulls and errors",
            Array("*4\r\n*2\r\n:1\r\n$-1\r\n+OK\r\n-ERR inner\r\n*1\r\n*1\r\n$3\r\nabc\r\n".utf8),
            .array([
                .array([.integer(1), .null]), .simpleString("OK"), .error("ERR inner"),
                .array([.array([.bulkString(ByteBuffer(string: "abc"))])]),
            ])
        ),
    ]

    @Test(arguments: [1, 2, 3, 5, 7, 11, 64])
    func allRepliesConcatenatedInChunks(chunkSize: Int) throws {
        let decoder = RESPDecoder()
        let stream = Self.cases.flatMap(\.1)
        var decoded: [RedisValue] = []
        var offset = 0
        while offset < stream.count {
            try decoder.feed(ByteBuffer(bytes: stream[offset..<min(offset + chunkSize, stream.count)]))
            offset += chunkSize
            while let value = try decoder.next() { decoded.append(value) }
        }
        #expect(decoded == Self.cases.map(\.2))
    }

    @Test func incompleteInputYieldsNothingUntilComplete() throws {
        let decoder = RESPDecoder()
        try decoder.feed(ByteBuffer(string: "*2\r\n$3\r\nfoo\r\n$3\r\nba"))
        #expect(try decoder.next() == nil)
        try decoder.feed(ByteBuffer(string: "r\r\n"))
        #expect(try decoder.next() == .array([.bulkString(ByteBuffer(string: "foo")), .bulkString(ByteBuffer(string: "bar"))]))
        #expect(try decoder.next() == nil)
    }

    @Test func garbageIsAProtocolError() {
        let decoder = RESPDecoder()
        #expect {
            try decoder.feed(ByteBuffer(string: "?what\r\n"))
            _ = try decoder.next()
        } throws: { error in
            (error as? RedisError)?.code == .protocolError
        }
    }
}

@Suite struct RESPEncoderTests {
    @Test func encodesCommandsAsRESPArraysOfBulkStrings() {
        let buffer = RESPEncoder.encode(RedisCommand("SET", ["key", "value", "EX", 10]))
        #expect(String(buffer: buffer) == "*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n$2\r\nEX\r\n$2\r\n10\r\n")
    }

    @Test func binaryAndEmptyArgumentsAreLengthPrefixed() {
        let buffer = RESPEncoder.encode(RedisCommand("SET", ["k", .bytes(ByteBuffer(bytes: RESPDecoderTests.binary)), ""]))
        let expected = Array("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\n".utf8) + RESPDecoderTests.binary + Array("\r\n$0\r\n\r\n".utf8)
        #expect(Array(buffer.readableBytesView) == expected)
    }

    @Test func anEncoderReusedForSmallerCommandsLeavesNoResidue() {
        var encoder = RESPEncoder()
        var buffer = ByteBuffer()
        encoder.encode(RedisCommand("SET", ["a-long-key-name", .bytes(ByteBuffer(repeating: 7, count: 300))]), into: &buffer)
        buffer.clear()
        encoder.encode(RedisCommand("GET", ["k"]), into: &buffer)
        #expect(String(buffer: buffer) == "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
    }

    @Test func unicodeArgumentsCountBytesNotCharacters() {
        let buffer = RESPEncoder.encode(RedisCommand("ECHO", ["héllo👋"]))
        #expect(String(buffer: buffer) == "*2\r\n$4\r\nECHO\r\n$10\r\nhéllo👋\r\n")
    }
}
