import Foundation

/// A WebSocket client on a bare TCP socket that does only what it is told:
/// it never answers a close frame or a ping on its own, so tests can play a
/// hostile client (one that ignores the server's close and keeps sending).
public final class RawWebSocket: @unchecked Sendable {
    /// A frame the server sent.
    public struct Frame: Sendable {
        public let opcode: UInt8
        public let payload: [UInt8]
        public var text: String { String(decoding: self.payload, as: UTF8.self) }
        /// The code of a close frame.
        public var closeCode: UInt16? {
            guard self.opcode == 0x8, self.payload.count >= 2 else { return nil }
            return UInt16(self.payload[0]) << 8 | UInt16(self.payload[1])
        }
        public var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(self.payload)) as? [String: Any] }
    }

    private let connection: RawConnection

    /// The server's answer to the upgrade: its status line and headers.
    public let responseHead: String

    /// Connects to 127.0.0.1:`port` and upgrades `path` (the 101 answer is checked);
    /// `receiveBuffer` sets the socket's SO_RCVBUF (a small TCP window);
    /// `behindHead` goes out in the same write as the request head (frames a
    /// client sends without waiting for the 101).
    public init(
        port: Int, path: String = "/v1/ws", headers: [String: String] = [:], receiveBuffer: Int? = nil, behindHead: [UInt8] = []
    ) throws {
        self.connection = try RawConnection(port: port, receiveBuffer: receiveBuffer)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try self.connection.write(Array(request.utf8) + behindHead)
        guard let head = try self.connection.readHead(timeout: .seconds(10)) else { throw RawWebSocketError("closed during the handshake") }
        guard head.hasPrefix("HTTP/1.1 101") else { throw RawWebSocketError("not upgraded: \(head.split(separator: "\r\n").first ?? "")") }
        self.responseHead = head
    }

    /// Sends a masked frame (clients must mask).
    public func send(opcode: UInt8 = 0x1, _ payload: [UInt8], fin: Bool = true) throws {
        try self.connection.write(Self.frame(opcode: opcode, payload, fin: fin))
    }

    /// A masked client frame.
    public static func frame(opcode: UInt8 = 0x1, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let mask: [UInt8] = (0..<4).map { _ in UInt8.random(in: 0...255) }
        switch payload.count {
        case ..<126: frame.append(0x80 | UInt8(payload.count))
        case ..<65536: frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default: frame += [0x80 | 127] + (0..<8).reversed().map { UInt8((UInt64(payload.count) >> (UInt64($0) * 8)) & 0xFF) }
        }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return frame
    }

    public func send(_ object: [String: Any]) throws {
        try self.send(Array(try JSONSerialization.data(withJSONObject: object)))
    }

    /// The next frame, or nil when the server closed the TCP connection.
    /// Throws when nothing arrives within `timeout`.
    public func next(timeout: Duration = .seconds(10)) throws -> Frame? {
        let deadline = RawConnection.deadline(timeout)
        while true {
            if let frame = self.parseFrame() { return frame }
            guard try self.connection.fill(until: deadline) else { return nil }
        }
    }

    /// Frames until the TCP connection closes (nil: it was still open at `timeout`).
    public func readUntilClosed(timeout: Duration) -> [Frame]? {
        var frames: [Frame] = []
        do {
            while let frame = try self.next(timeout: timeout) { frames.append(frame) }
            return frames
        } catch {
            return nil
        }
    }

    private func parseFrame() -> Frame? {
        guard self.connection.buffer.count >= 2 else { return nil }
        let opcode = self.connection.buffer[0] & 0x0F
        var length = Int(self.connection.buffer[1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard self.connection.buffer.count >= 4 else { return nil }
            length = Int(self.connection.buffer[2]) << 8 | Int(self.connection.buffer[3])
            offset = 4
        } else if length == 127 {
            guard self.connection.buffer.count >= 10 else { return nil }
            length = self.connection.buffer[2..<10].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard self.connection.buffer.count >= offset + length else { return nil }
        let payload = Array(self.connection.buffer[offset..<(offset + length)])
        self.connection.buffer.removeFirst(offset + length)
        return Frame(opcode: opcode, payload: payload)
    }

}

public struct RawWebSocketError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A TCP connection to a local port that does exactly what it is told:
/// bytes in, bytes out, and whether the server closed it.
public final class RawConnection: @unchecked Sendable {
    private let fd: Int32
    /// Received and not consumed yet.
    public var buffer: [UInt8] = []

    public init(port: Int, receiveBuffer: Int? = nil) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard self.fd >= 0 else { throw POSIXError(.EMFILE) }
        if var size = receiveBuffer.map(Int32.init) {
            // before connect, so that the window offered in the handshake is small too
            setsockopt(self.fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let rc = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(self.fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit {
        close(self.fd)
    }

    static func deadline(_ timeout: Duration) -> Date {
        Date().addingTimeInterval(TimeInterval(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
    }

    /// Reads what is there (waiting until `deadline`); false on EOF or reset.
    public func fill(until deadline: Date) throws -> Bool {
        var pollFD = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
        let ready = poll(&pollFD, 1, remaining)
        guard ready > 0 else { throw RawWebSocketError("nothing from the server in time") }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(self.fd, &chunk, chunk.count, 0)
        guard n > 0 else { return false }
        self.buffer += chunk[0..<n]
        return true
    }

    /// An HTTP response head (consumed), or nil when the server closed first.
    public func readHead(timeout: Duration) throws -> String? {
        let deadline = Self.deadline(timeout)
        while !self.buffer.containsHeadEnd {
            guard try self.fill(until: deadline) else { return nil }
        }
        let end = self.buffer.headEnd!
        let head = String(decoding: self.buffer[..<end], as: UTF8.self)
        self.buffer.removeFirst(end + 4)
        return head
    }

    /// Whether the server closes the connection within `timeout` (reading and dropping what comes).
    public func closes(within timeout: Duration) -> Bool {
        let deadline = Self.deadline(timeout)
        do {
            while try self.fill(until: deadline) { self.buffer.removeAll() }
            return true
        } catch {
            return false
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Foundation.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw RawWebSocketError("write failed (errno \(errno))") }
            sent += n
        }
    }

    public func write(_ text: String) throws { try self.write(Array(text.utf8)) }

    /// Sends a FIN: the client sends nothing more (it may still read).
    public func shutdownWrite() {
        _ = shutdown(self.fd, Int32(SHUT_WR))
    }
}

extension [UInt8] {
    fileprivate var headEnd: Int? {
        guard self.count >= 4 else { return nil }
        for index in 0...(self.count - 4) where self[index] == 13 && self[index + 1] == 10 && self[index + 2] == 13 && self[index + 3] == 10 {
            return index
        }
        return nil
    }

    fileprivate var containsHeadEnd: Bool { self.headEnd != nil }
}
