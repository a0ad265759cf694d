import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import Synchronization

/// An authenticated WebSocket to a gateway, as a client opens it: `hello`
/// with the access token, then `ready`. Every later text frame goes to
/// `onFrame`, on the connection's own task.
final class BenchSocket: Sendable {
    struct State {
        var outbound: WebSocketOutboundWriter?
        var ready: CheckedContinuation<Void, any Error>?
        var closed = false
        var closeCode: UInt16?
    }

    private let state = Mutex(State())
    private let task = Mutex<Task<Void, Never>?>(nil)

    /// Opens `ws(s)://…/v1/ws` of the gateway at `base` (http://host:port) and waits for `ready`.
    static func open(base: URL, token: String, onFrame: @escaping @Sendable (String) -> Void) async throws -> BenchSocket {
        let socket = BenchSocket()
        let url = base.absoluteString.replacingOccurrences(of: "http://", with: "ws://") + "/v1/ws"
        let logger = Self.logger
        let hello = String(decoding: try JSONSerialization.data(withJSONObject: ["type": "hello", "token": token]), as: UTF8.self)
        try await withCheckedThrowingContinuation { (ready: CheckedContinuation<Void, any Error>) in
            socket.state.withLock { $0.ready = ready }
            let task = Task {
                var failure: (any Error)?
                do {
                    let close = try await WebSocketClient.connect(url: url, configuration: WebSocketClientConfiguration(maxFrameSize: 1 << 20), logger: logger) {
                        inbound, outbound, _ in
                        socket.state.withLock { $0.outbound = outbound }
                        try await outbound.write(.text(hello))
                        for try await message in inbound.messages(maxSize: 1 << 20) {
                            guard case .text(let text) = message else { continue }
                            if let ready = socket.state.withLock({ state -> CheckedContinuation<Void, any Error>? in
                                defer { state.ready = nil }
                                return state.ready
                            }) {
                                if ScannedFrame(text).type == "ready" {
                                    ready.resume()
                                } else {
                                    ready.resume(throwing: BenchError("expected ready, got \(text.prefix(200))"))
                                }
                                continue
                            }
                            onFrame(text)
                        }
                    }
                    socket.state.withLock { $0.closeCode = close.map { UInt16(webSocketErrorCode: $0.closeCode) } }
                } catch {
                    failure = error
                }
                let ready = socket.state.withLock { state -> CheckedContinuation<Void, any Error>? in
                    state.closed = true
                    state.outbound = nil
                    defer { state.ready = nil }
                    return state.ready
                }
                ready?.resume(throwing: failure ?? BenchError("closed before ready (code \(socket.closeCode.map(String.init) ?? "none"))"))
            }
            socket.task.withLock { $0 = task }
        }
        return socket
    }

    static let logger: Logger = {
        var logger = Logger(label: "parley.bench.ws")
        logger.logLevel = .critical
        return logger
    }()

    var isClosed: Bool { self.state.withLock { $0.closed } }
    var closeCode: UInt16? { self.state.withLock { $0.closeCode } }

    func send(_ text: String) async throws {
        guard let outbound = self.state.withLock({ $0.outbound }) else { throw BenchError("socket closed (code \(self.closeCode.map(String.init) ?? "none"))") }
        try await outbound.write(.text(text))
    }

    func close() async {
        if let outbound = self.state.withLock({ $0.outbound }) { try? await outbound.close(.normalClosure, reason: nil) }
        let deadline = ContinuousClock.now + .seconds(5)
        while !self.isClosed, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        self.task.withLock { $0 }?.cancel()
    }
}
