// The web client of web/: plain ES modules, a stylesheet and one page,
// embedded in the binary and served by every gateway (WebClientController).

/// One file of the web client.
public struct WebClientFile: Sendable {
    public let name: String
    public let contentType: String
    public let bytes: [UInt8]
}

public enum WebClient {
    /// Every file, by the name it is served under (`/` is index.html,
    /// everything else is `/app/<name>`).
    public static let files: [String: WebClientFile] = Dictionary(
        uniqueKeysWithValues: [
            WebClientFile(name: "index.html", contentType: "text/html; charset=utf-8", bytes: PackageResources.index_html),
            WebClientFile(name: "style.css", contentType: "text/css; charset=utf-8", bytes: PackageResources.style_css),
            WebClientFile(name: "app.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.app_js),
            WebClientFile(name: "api.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.api_js),
            WebClientFile(name: "live.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.live_js),
            WebClientFile(name: "push.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.push_js),
            // the service worker of Web Push (its scope is /app/)
            WebClientFile(name: "sw.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.sw_js),
            WebClientFile(name: "icon.svg", contentType: "image/svg+xml", bytes: PackageResources.icon_svg),
        ].map { ($0.name, $0) }
    )
}
