import Foundation
import HiredisNIO
import Logging
import NIOCore

/// A private redis-server that a test may stop, kill and restart on the same
/// port (for fault tests); the shared one from scripts/test is never touched.
public final class RedisServerProcess: @unchecked Sendable {
    public let port: Int
    public let password: String?
    private let directory: URL
    private var child: ChildProcess?

    public init(password: String? = nil) throws {
        self.port = try TestEnvironment.freePort()
        self.password = password
        self.directory = try TestEnvironment.scratchDirectory()
    }

    public var url: String {
        "redis://\(self.password.map { ":\($0)@" } ?? "")127.0.0.1:\(self.port)/0"
    }

    /// With a connect timeout of 10 s, as for the shared server: a private
    /// server started while every suite starts has taken over the production
    /// default of 2 s to accept (a refused connect still fails at once).
    public var configuration: RedisConfiguration {
        get throws {
            var configuration = try RedisConfiguration(url: self.url)
            configuration.connectTimeout = .seconds(10)
            return configuration
        }
    }

    /// Starts (or restarts) the server and waits until it answers.
    public func start() async throws {
        var arguments = ["--port", "\(self.port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.directory.path]
        if let password { arguments += ["--requirepass", password] }
        let child = ChildProcess("redis-server", arguments)
        try child.start()
        self.child = child
        var configuration = try self.configuration
        configuration.connectTimeout = .milliseconds(200)
        for _ in 0..<100 {
            if let connection = try? await RedisConnection.connect(configuration: configuration, logger: TestEnvironment.logger) {
                await connection.close()
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RedisError(.connectionRefused, "private redis-server did not start: \(child.outputText)")
    }

    /// `kill -9`: the server dies without closing anything cleanly.
    public func kill() async {
        guard let child else { return }
        child.signal(SIGKILL)
        await child.waitForExit(timeout: .seconds(5))
        self.child = nil
    }

    /// SIGTERM, as a service manager would.
    public func stop() async {
        guard let child else { return }
        child.signal(SIGTERM)
        await child.waitForExit(timeout: .seconds(10))
        self.child = nil
    }

    deinit {
        self.child?.signal(SIGKILL)
    }
}
