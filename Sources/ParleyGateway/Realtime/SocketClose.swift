import Synchronization

/// The server's decision to close one WebSocket. The first code asked for
/// wins; from that moment no client frame is acted on (`isClosing`), and the
/// socket's handler writes the close frame and drops the TCP connection of
/// a client that does not answer it within `handshakeTimeout`.
final class SocketClose: Sendable {
    static let handshakeTimeout: Duration = .seconds(5)

    private let sendClose: @Sendable (UInt16, String) -> Void
    private let state = Mutex<UInt16?>(nil)

    /// `sendClose` has the close frame written (called once, from any thread).
    init(sendClose: @escaping @Sendable (UInt16, String) -> Void) {
        self.sendClose = sendClose
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
    /// (the caller writes it with `sendFrame`); false if a close was decided already.
    func decide(_ code: UInt16) -> Bool {
        self.state.withLock { current in
            guard current == nil else { return false }
            current = code
            return true
        }
    }

    /// Writes the close frame of a close decided with `decide`.
    func sendFrame(_ code: UInt16, _ reason: String) {
        self.sendClose(code, reason)
    }
}
