import Synchronization

/// The server's decision to close one WebSocket. The first code asked for
/// wins; from that moment no client frame is acted on (`isClosing`), the
/// close frame goes out, and `WebSocketSession` stops reading after
/// `handshakeTimeout`, which drops the TCP connection of a client that
/// never answers the close frame.
final class SocketClose: Sendable {
    static let handshakeTimeout: Duration = .seconds(5)

    private let sendClose: @Sendable (UInt16, String) async -> Void
    private let state = Mutex<UInt16?>(nil)
    /// Yields once, when the close is decided.
    let decided: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    /// `sendClose` writes the close frame.
    init(sendClose: @escaping @Sendable (UInt16, String) async -> Void) {
        self.sendClose = sendClose
        (self.decided, self.continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The close code, once the server decided to close.
    var code: UInt16? { self.state.withLock { $0 } }
    var isClosing: Bool { self.code != nil }

    /// Closes with `code` unless a close was decided already.
    func close(_ code: UInt16, _ reason: String) {
        guard self.decide(code) else { return }
        Task { [sendClose] in await sendClose(code, reason) }
    }

    /// Decides to close with `code` without writing the close frame yet
    /// (the caller writes it with `sendFrame`); false if a close was decided already.
    func decide(_ code: UInt16) -> Bool {
        let first = self.state.withLock { current in
            guard current == nil else { return false }
            current = code
            return true
        }
        guard first else { return false }
        self.continuation.yield()
        self.continuation.finish()
        return true
    }

    /// Writes the close frame of a close decided with `decide`.
    func sendFrame(_ code: UInt16, _ reason: String) async {
        await self.sendClose(code, reason)
    }

    /// Returns once a close was decided and the client has had
    /// `handshakeTimeout` to answer it (or at once when the task is cancelled).
    func handshakeExpired() async {
        for await _ in self.decided {}
        guard !Task.isCancelled else { return }
        try? await Task.sleep(for: Self.handshakeTimeout)
    }
}
