import Synchronization

/// The server's decision to close one WebSocket. The first code asked for
/// wins; from that moment no client frame is acted on (`isClosing`), the
/// close frame goes out (at once, or after what is queued), and the socket's
/// handler drops the TCP connection if the client has not finished the
/// close handshake `handshakeTimeout` after the decision.
final class SocketClose: Sendable {
    static let handshakeTimeout: Duration = .seconds(5)

    private let sendClose: @Sendable (UInt16, String) -> Void
    private let decided: @Sendable () -> Void
    private let state = Mutex<UInt16?>(nil)

    /// `sendClose` has the close frame written; `decided` is told of the
    /// decision, however it is made (each called once, from any thread).
    init(sendClose: @escaping @Sendable (UInt16, String) -> Void, decided: @escaping @Sendable () -> Void = {}) {
        self.sendClose = sendClose
        self.decided = decided
    }

    /// The close code, once the server decided to close.
    var code: UInt16? { self.state.withLock { $0 } }
    var isClosing: Bool { self.code != nil }

    /// Closes with `code` unless a close was decided already.
    func close(_ code: UInt16, _ reason: String) {
        guard self.decide(code) else { return }
        self.sendClose(code, reason)
    }

    /// Decides to close with `code` without writing the close frame yet
    /// (the caller queues it); false if a close was decided already.
    func decide(_ code: UInt16) -> Bool {
        let first = self.state.withLock { current in
            guard current == nil else { return false }
            current = code
            return true
        }
        if first { self.decided() }
        return first
    }
}
