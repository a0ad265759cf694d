import NIOCore

/// A server text frame as it goes on the wire (RFC 6455 5.2: FIN, opcode,
/// length; a server's frames are not masked), built once per event and
/// shared by every socket it goes to: each socket's write references the
/// same bytes, with no per-socket frame header, copy or encoder pass.
enum WireFrame {
    /// Bytes of the header for a payload of `length` bytes.
    static func headerBytes(_ length: Int) -> Int {
        length < 126 ? 2 : length <= Int(UInt16.max) ? 4 : 10
    }

    /// A frame of `payload`, read as text: bytes that are not UTF-8 (which
    /// a browser would fail the socket for, with 1007) are replaced.
    static func text(_ payload: ByteBuffer) -> ByteBuffer {
        Self.text(String(buffer: payload))
    }

    static func text(_ payload: String) -> ByteBuffer {
        let length = payload.utf8.count
        var frame = ByteBuffer()
        frame.reserveCapacity(Self.headerBytes(length) + length)
        Self.writeHeader(length: length, into: &frame)
        frame.writeString(payload)
        return frame
    }

    private static func writeHeader(length: Int, into frame: inout ByteBuffer) {
        frame.writeInteger(UInt8(0x81))  // FIN, text
        switch length {
        case ..<126:
            frame.writeInteger(UInt8(length))
        case ...Int(UInt16.max):
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(length))
        default:
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(length))
        }
    }
}
