import Foundation
public import Hummingbird
public import HiredisNIO
import Logging
public import ParleyCore
import PostgresNIO
public import Prometheus

/// `/healthz`, `/readyz`, `/metrics`. On the public listener: `/healthz`,
/// and `/readyz` with its status only. On the operations listener
/// (`PARLEY_METRICS_PORT`, loopback by default): `/readyz` names what is down
/// and why, and `/metrics` serves Prometheus text.
public struct OperationsController: Sendable {
    let database: Database
    let redis: RedisClient
    let registry: PrometheusCollectorRegistry
    let readinessTimeout: Duration
    /// Whether this is the operations listener (details and metrics).
    let detailed: Bool

    public init(database: Database, redis: RedisClient, registry: PrometheusCollectorRegistry, readinessTimeout: Duration = .seconds(1), detailed: Bool) {
        self.database = database
        self.redis = redis
        self.registry = registry
        self.readinessTimeout = readinessTimeout
        self.detailed = detailed
    }

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/healthz") { _, _ in
            Self.json(["status": "ok"])
        }
        router.get("/readyz") { _, context in
            try await self.readiness(logger: context.logger)
        }
        guard self.detailed else { return }
        router.get("/metrics") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: self.registry.emitToBuffer())))
        }
    }

    /// 200 when PostgreSQL and Redis both answer within the timeout, else 503 naming what is down.
    func readiness(logger: Logger) async throws -> Response {
        let postgres = self.database.client
        let redis = self.redis
        // while the circuit is open PostgreSQL is known to be down: no need to wait for it
        let circuitOpen = self.database.health.state == .open
        async let postgresProblem = circuitOpen ? "circuit open" : Self.check(timeout: self.readinessTimeout) {
            _ = try await postgres.query("SELECT 1", logger: logger).collect()
        }
        async let redisProblem = Self.check(timeout: self.readinessTimeout) {
            try await redis.ping()
        }
        let problems = [("postgres", await postgresProblem), ("redis", await redisProblem)]
        let down = problems.compactMap { name, problem in problem.map { (name, $0) } }
        guard down.isEmpty else {
            logger.warning("not ready", metadata: ["readiness.down": "\(down.map(\.0).joined(separator: ","))"])
            guard self.detailed else { throw APIError.unavailable("a dependency is unavailable; retry shortly") }
            var extra: [String: String] = [:]
            for (name, problem) in problems { extra[name] = problem ?? "ok" }
            throw APIError.unavailable(down.map { "\($0.0) is down (\($0.1))" }.joined(separator: "; "), extra: extra)
        }
        return Self.json(self.detailed ? ["status": "ready", "postgres": "ok", "redis": "ok"] : ["status": "ready"])
    }

    /// nil when the check passed, else a short reason.
    static func check(timeout: Duration, _ body: @escaping @Sendable () async throws -> Void) async -> String? {
        do {
            try await withDeadline(timeout, body)
            return nil
        } catch is DeadlineExceeded {
            return "no answer within \(timeout)"
        } catch let error as RedisError {
            return error.code.description
        } catch {
            return "\(type(of: error))"
        }
    }

    static func json(_ object: [String: String]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
