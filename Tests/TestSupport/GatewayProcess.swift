import Foundation
import ParleyCore
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where clients send requests: a gateway, or a load balancer in front of gateways.
public protocol Endpoint: Sendable {
    var port: Int { get }
    var baseURL: String { get }
}

/// A real `parley serve` process on a free port.
public final class GatewayProcess: Endpoint, @unchecked Sendable {
    /// The JWT secret of every end-to-end gateway.
    public static let secret = "end-to-end-test-secret-0123456789abcdef"
    /// What their mailers are given instead (`parley mail-key`).
    public static var mailKey: String { OneTimeCodes.mailJobKeyText(secret: Array(Self.secret.utf8)) }
    public let port: Int
    /// The operations listener: `/metrics`, detailed `/readyz`.
    public let metricsPort: Int
    public let child: ChildProcess
    public var baseURL: String { "http://127.0.0.1:\(self.port)" }
    public var operationsURL: String { "http://127.0.0.1:\(self.metricsPort)" }

    /// Starts `parley serve` with the test servers' URLs (override any setting with `environment`).
    public init(databaseURL: String, redisURL: String? = nil, environment: [String: String] = [:], arguments: [String] = []) throws {
        self.port = try TestEnvironment.freePort()
        self.metricsPort = try TestEnvironment.freePort()
        var env: [String: String] = [
            "PARLEY_METRICS_PORT": "\(self.metricsPort)",
            "PARLEY_DATABASE_URL": databaseURL,
            "PARLEY_REDIS_URL": try redisURL ?? TestEnvironment.require("PARLEY_TEST_REDIS_URL"),
            "PARLEY_HTTP_PORT": "\(self.port)",
            "PARLEY_JWT_SECRET": Self.secret,
            "PARLEY_LOG_LEVEL": "info",
            "PARLEY_INSTANCE_ID": "e2e-\(self.port)",
            // tests give each client an address of its own through X-Forwarded-For
            "PARLEY_TRUSTED_PROXIES": "127.0.0.1,::1",
        ]
        env.merge(environment) { $1 }
        self.child = ChildProcess(try TestEnvironment.parleyBinary(), ["serve"] + arguments, environment: env, name: "gateway:\(self.port)")
        try self.child.start()
    }

    /// Waits until `/readyz` answers 200.
    public func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !self.child.isRunning { throw GatewayExited(output: self.child.outputText) }
            if let (status, _) = try? await HTTP.get("\(self.baseURL)/readyz"), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw GatewayExited(output: "not ready after \(timeout):\n" + self.child.outputText)
    }

    deinit {
        self.child.signal(SIGKILL)
    }
}

public struct GatewayExited: Error, CustomStringConvertible {
    public let output: String
    public var description: String { "gateway is not running:\n\(self.output)" }
}

/// A minimal HTTP client for end-to-end tests.
public enum HTTP {
    public static func request(_ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil) async throws -> (status: Int, body: Data, headers: [String: String]) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 10
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (key, value) in http.allHeaderFields { fields["\(key)".lowercased()] = "\(value)" }
        return (http.statusCode, data, fields)
    }

    /// A JSON call; returns the status and the decoded object (empty when the body is not an object).
    public static func json(_ method: String, _ url: String, _ body: [String: Any]? = nil, token: String? = nil, clientAddress: String? = nil) async throws -> (status: Int, json: [String: Any]) {
        var headers = ["Content-Type": "application/json"]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        if let clientAddress { headers["X-Forwarded-For"] = clientAddress }
        let response = try await self.request(method, url, headers: headers, body: try body.map { try JSONSerialization.data(withJSONObject: $0) })
        return (response.status, (try? JSONSerialization.jsonObject(with: response.body) as? [String: Any]) ?? [:])
    }

    public static func get(_ url: String) async throws -> (status: Int, body: Data) {
        let response = try await self.request("GET", url)
        return (response.status, response.body)
    }
}
