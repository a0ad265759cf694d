/// Every error the client raises. `code` is stable; `message` is for humans.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable, Hashable {
            case serverError, connectionRefused, connectTimeout, commandTimeout
            case connectionClosed, protocolError, unexpectedReply, invalidURL, shutdown, crossSlot
        }
        let base: Base
        public var description: String { self.base.rawValue }

        /// Redis answered with an error reply (`WRONGTYPE …`, `NOSCRIPT …`).
        public static let serverError = Code(base: .serverError)
        /// Nobody listens at the address.
        public static let connectionRefused = Code(base: .connectionRefused)
        /// The TCP connection (or AUTH/SELECT) did not complete in time.
        public static let connectTimeout = Code(base: .connectTimeout)
        /// A command got no reply in time; the connection is closed.
        public static let commandTimeout = Code(base: .commandTimeout)
        /// The connection closed while the command was pending, or before it was sent.
        public static let connectionClosed = Code(base: .connectionClosed)
        /// The server sent bytes that are not RESP.
        public static let protocolError = Code(base: .protocolError)
        /// The reply had a shape the typed helper did not expect.
        public static let unexpectedReply = Code(base: .unexpectedReply)
        public static let invalidURL = Code(base: .invalidURL)
        /// The client was shut down.
        public static let shutdown = Code(base: .shutdown)
        /// In a cluster, a command's keys hash to different slots (refused before it is sent).
        public static let crossSlot = Code(base: .crossSlot)
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// For server errors: the first word of the message (`WRONGTYPE`, `NOSCRIPT`, `BUSYGROUP`).
    public var serverErrorPrefix: String? {
        guard self.code == .serverError else { return nil }
        return self.message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    /// The server cannot be used right now (not reachable, not answering,
    /// or still loading or failing over), as opposed to a command it refused.
    public var isUnavailable: Bool {
        switch self.code {
        case .connectionRefused, .connectTimeout, .commandTimeout, .connectionClosed, .shutdown: return true
        case .serverError: return ["LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY"].contains(self.serverErrorPrefix ?? "")
        default: return false
        }
    }

    public var description: String { "redis \(self.code): \(self.message)" }
}
