public import Hummingbird

/// The request context of every route.
public struct ParleyRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    /// Attachments are up to 10 MiB; JSON routes apply their own, smaller limit.
    public var maxUploadSize: Int { 10 * 1024 * 1024 + 1 }
}
