import Foundation

/// Debian's nginx in front of local gateways, configured with the very
/// template that deployments use (`deploy/nginx/parley.conf.template`),
/// rendered for local ports the way the official image's envsubst does.
public final class NginxProcess: Endpoint, @unchecked Sendable {
    public let port: Int
    public let child: ChildProcess
    public var baseURL: String { "http://127.0.0.1:\(self.port)" }

    /// The template, from this checkout.
    public static var template: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/nginx/parley.conf.template")
    }

    public init(upstreams: [Int]) throws {
        precondition(upstreams.count == 2, "the template names two gateways")
        self.port = try TestEnvironment.freePort()
        let directory = try TestEnvironment.scratchDirectory().appendingPathComponent("nginx")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var snippet = try String(contentsOf: Self.template, encoding: .utf8)
        for (name, value) in [("PARLEY_UPSTREAM_1", "127.0.0.1:\(upstreams[0])"), ("PARLEY_UPSTREAM_2", "127.0.0.1:\(upstreams[1])"), ("PARLEY_LISTEN_PORT", "127.0.0.1:\(self.port)")] {
            snippet = snippet.replacingOccurrences(of: "${\(name)}", with: value)
        }
        try snippet.write(to: directory.appendingPathComponent("parley.conf"), atomically: true, encoding: .utf8)
        let path = directory.path
        // one process in the foreground (no master, no daemon): the test owns it
        let configuration = """
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(path)/nginx.pid;
            error_log \(path)/error.log info;
            events { worker_connections 1024; }
            http {
                access_log \(path)/access.log;
                client_body_temp_path \(path)/client_body;
                proxy_temp_path \(path)/proxy;
                fastcgi_temp_path \(path)/fastcgi;
                uwsgi_temp_path \(path)/uwsgi;
                scgi_temp_path \(path)/scgi;
                include \(path)/parley.conf;
            }
            """
        try configuration.write(to: directory.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
        self.child = ChildProcess("/usr/sbin/nginx", ["-p", path, "-c", "\(path)/nginx.conf"], name: "nginx")
        try self.child.start()
    }

    /// Waits until nginx answers (a gateway's /healthz through it).
    public func waitUntilReady(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !self.child.isRunning { throw GatewayExited(output: "nginx exited:\n" + self.child.outputText) }
            if let (status, _) = try? await HTTP.get("\(self.baseURL)/healthz"), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw GatewayExited(output: "nginx not ready:\n" + self.child.outputText)
    }

    deinit {
        self.child.signal(SIGKILL)
    }
}
