import CHiredis
public import NIOCore

/// Encodes commands with hiredis' `redisFormatCommandArgv` (binary-safe RESP).
///
/// Keeps its scratch buffers between calls: one encoder per connection
/// (owned by its channel handler) allocates only when a command is larger
/// than any before it.
public struct RESPEncoder {
    private var scratch: [UInt8] = []
    private var lengths: [Int] = []
    private var argv: [UnsafePointer<CChar>?] = []

    public init() {}

    public mutating func encode(_ command: RedisCommand, into buffer: inout ByteBuffer) {
        // All argument bytes are laid out in one scratch array so that argv can
        // point into it for the duration of the C call.
        self.scratch.removeAll(keepingCapacity: true)
        self.lengths.removeAll(keepingCapacity: true)
        for argument in command.arguments {
            switch argument {
            case .string(let s):
                let before = self.scratch.count
                self.scratch.append(contentsOf: s.utf8)
                self.lengths.append(self.scratch.count - before)
            case .bytes(let b):
                self.scratch.append(contentsOf: b.readableBytesView)
                self.lengths.append(b.readableBytes)
            }
        }
        self.scratch.append(0)  // never empty: argv always has a valid base address
        var argv: [UnsafePointer<CChar>?] = []
        swap(&argv, &self.argv)
        argv.removeAll(keepingCapacity: true)
        let lengths = self.lengths
        self.scratch.withUnsafeBufferPointer { bytes in
            let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            var offset = 0
            for length in lengths {
                argv.append(base + offset)
                offset += length
            }
            var target: UnsafeMutablePointer<CChar>? = nil
            let written = argv.withUnsafeMutableBufferPointer { argvPointer in
                lengths.withUnsafeBufferPointer { lengthPointer in
                    redisFormatCommandArgv(&target, Int32(lengths.count), argvPointer.baseAddress, lengthPointer.baseAddress)
                }
            }
            guard written > 0, let target else {
                // Only an allocation failure in hiredis gets here.
                fatalError("redisFormatCommandArgv failed to allocate")
            }
            defer { redisFreeCommand(target) }
            buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(written)))
        }
        swap(&argv, &self.argv)
    }

    /// Encodes one command into a new buffer.
    public static func encode(_ command: RedisCommand) -> ByteBuffer {
        var encoder = RESPEncoder()
        var buffer = ByteBuffer()
        encoder.encode(command, into: &buffer)
        return buffer
    }
}

/// Parses replies by feeding bytes to a hiredis `redisReader`.
///
/// `feed` hands bytes to the reader (which keeps what it has not parsed yet);
/// `next` returns one complete reply, or `nil` until more bytes arrive. One
/// read from the socket may complete many replies (pipelining), so call
/// `next` until it returns `nil`. Nested arrays, nulls and binary bulk strings
/// are handled by hiredis; a malformed stream throws `protocolError`, after
/// which the connection must be closed.
public final class RESPDecoder {
    private let reader: UnsafeMutablePointer<redisReader>
    private let allocator = ByteBufferAllocator()

    public init() {
        guard let reader = redisReaderCreate() else { fatalError("redisReaderCreate failed to allocate") }
        self.reader = reader
    }

    deinit {
        redisReaderFree(self.reader)
    }

    public func feed(_ buffer: ByteBuffer) throws {
        guard buffer.readableBytes > 0 else { return }
        let status = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(self.reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        if status != REDIS_OK { throw self.readerError() }
    }

    public func next() throws -> RedisValue? {
        var reply: UnsafeMutableRawPointer? = nil
        guard redisReaderGetReply(self.reader, &reply) == REDIS_OK else { throw self.readerError() }
        guard let reply else { return nil }
        defer { freeReplyObject(reply) }
        return self.convert(reply.assumingMemoryBound(to: redisReply.self))
    }

    private func readerError() -> RedisError {
        let message = withUnsafeBytes(of: self.reader.pointee.errstr) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return RedisError(.protocolError, message.isEmpty ? "invalid RESP" : message)
    }

    private func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STATUS:
            return .simpleString(self.text(r))
        case REDIS_REPLY_ERROR:
            return .error(self.text(r))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(r.integer))
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_STRING:
            var buffer = self.allocator.buffer(capacity: r.len)
            if r.len > 0 { buffer.writeBytes(UnsafeRawBufferPointer(start: r.str, count: r.len)) }
            return .bulkString(buffer)
        case REDIS_REPLY_ARRAY:
            var elements: [RedisValue] = []
            elements.reserveCapacity(r.elements)
            for index in 0..<r.elements {
                if let element = r.element[index] { elements.append(self.convert(element)) }
            }
            return .array(elements)
        default:
            return .error("unsupported reply type \(r.type)")
        }
    }

    private func text(_ r: redisReply) -> String {
        guard r.len > 0, let str = r.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: str, count: r.len), as: UTF8.self)
    }
}
