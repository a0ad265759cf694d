import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket

/// A WebSocket client for end-to-end tests: collects every text frame, sends
/// JSON, can stop reading (to play a slow client) and reports the close code.
public final class TestWebSocket: @unchecked Sendable {
    private let lock = NSLock()
    private var frames: [String] = []
    private var cursor = 0
    private var outbound: WebSocketOutboundWriter?
    private var closed = false
    private var paused = false
    public private(set) var closeCode: UInt16?
    private var connectError: (any Error)?
    private var task: Task<Void, Never>?

    /// Connects to `url` (ws://…); `headers` go on the upgrade request.
    public static func connect(_ url: String, headers: [String: String] = [:]) async throws -> TestWebSocket {
        let socket = TestWebSocket()
        var configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 20)
        for (name, value) in headers { configuration.additionalHeaders[HTTPField.Name(name)!] = value }
        var logger = Logger(label: "test.ws")
        logger.logLevel = .critical
        socket.task = Task {
            do {
                let frame = try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, outbound, _ in
                    socket.withLock { socket.outbound = outbound }
                    for try await message in inbound.messages(maxSize: 1 << 24) {
                        while socket.withLock({ socket.paused }) { try await Task.sleep(for: .milliseconds(20)) }
                        if case .text(let text) = message { socket.withLock { socket.frames.append(text) } }
                    }
                }
                socket.withLock {
                    socket.closeCode = frame.map { UInt16(webSocketErrorCode: $0.closeCode) }
                    socket.closed = true
                }
            } catch {
                socket.withLock {
                    socket.connectError = error
                    socket.closed = true
                }
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let (ready, done, error) = socket.withLock { (socket.outbound != nil, socket.closed, socket.connectError) }
            if ready { return socket }
            if let error { throw error }
            if done { throw TestWebSocketError(message: "closed during the handshake (code \(socket.closeCode.map(String.init) ?? "none"))") }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestWebSocketError(message: "no connection after 10 s")
    }

    private func withLock<T>(_ body: () -> T) -> T {
        self.lock.lock()
        defer { self.lock.unlock() }
        return body()
    }

    public func send(_ object: [String: Any]) async throws {
        try await self.sendText(String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
    }

    public func sendText(_ text: String) async throws {
        guard let outbound = self.withLock({ self.outbound }) else { throw TestWebSocketError(message: "not connected") }
        try await outbound.write(.text(text))
    }

    public func sendBinary(_ bytes: [UInt8]) async throws {
        guard let outbound = self.withLock({ self.outbound }) else { throw TestWebSocketError(message: "not connected") }
        try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
    }

    /// The next frame (after those already taken) matching `type` and
    /// `condition`, as JSON; the frames skipped on the way are taken too.
    public func next(
        _ type: String? = nil, timeout: Duration = .seconds(10), where condition: ([String: Any]) -> Bool = { _ in true }
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let found: [String: Any]? = self.withLock {
                while self.cursor < self.frames.count {
                    let text = self.frames[self.cursor]
                    self.cursor += 1
                    if let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], type == nil || object["type"] as? String == type, condition(object) {
                        return object
                    }
                }
                return nil
            }
            if let found { return found }
            if ContinuousClock.now > deadline { throw TestWebSocketError(message: "no \(type ?? "frame") within \(timeout); closed: \(self.isClosed), code \(self.closeCode.map(String.init) ?? "none")") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Every frame received so far, parsed.
    public var allFrames: [[String: Any]] {
        self.withLock { self.frames }.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    public var isClosed: Bool { self.withLock { self.closed } }

    /// Stops (or resumes) reading from the socket, so the server's writes back up.
    public func pauseReading(_ paused: Bool) {
        self.withLock { self.paused = paused }
    }

    /// Waits for the server to close; returns the close code.
    public func waitForClose(timeout: Duration = .seconds(15)) async -> UInt16? {
        let deadline = ContinuousClock.now + timeout
        while !self.isClosed && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return self.closeCode
    }

    public func close() async {
        if let outbound = self.withLock({ self.outbound }) { try? await outbound.close(.normalClosure, reason: nil) }
        _ = await self.waitForClose(timeout: .seconds(5))
        self.task?.cancel()
    }
}

public struct TestWebSocketError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { self.message }
}
