public import Hummingbird
import NIOCore
import ParleyCore

/// The request context of every route.
public struct ParleyRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by AuthMiddleware.
    public var identity: Identity?
    /// The TCP peer's IP address, or "unknown".
    public let peerAddress: String
    /// The client's IP address (for per-IP limits): the peer, or, when the
    /// peer is a trusted proxy, what it says in X-Forwarded-For.
    public var clientAddress: String
    /// The client's address as per-address limits count it (an IPv6 address by its /64).
    public var limitAddress: String { ClientAddress.limitKey(self.clientAddress) }

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.peerAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        self.clientAddress = self.peerAddress
    }

    /// Attachments are up to 10 MiB; JSON routes apply their own, smaller limit.
    public var maxUploadSize: Int { 10 * 1024 * 1024 + 1 }
}
