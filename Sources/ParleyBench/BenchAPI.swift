import Foundation
import NIOCore
import NIOHTTP1

/// A user the benchmark registered.
struct BenchUser: Sendable {
    let id: String
    let email: String
    let token: String
}

/// The REST calls of PROTOCOL.md that the scenarios make.
struct BenchAPI: Sendable {
    static let password = "bench password 1234"
    let connection: HTTPConnection
    /// Sent as X-Forwarded-For: gateways that trust loopback as a proxy then
    /// apply their per-IP limits to this address instead of to the benchmark's one.
    let clientAddress: String

    static func connect(_ base: URL, clientIndex: Int) async throws -> BenchAPI {
        BenchAPI(connection: try await HTTPConnection.connect(base), clientAddress: "10.\(clientIndex / 65536 % 256).\(clientIndex / 256 % 256).\(clientIndex % 256)")
    }

    func call(_ method: HTTPMethod, _ path: String, json: Any? = nil, token: String? = nil) async throws -> HTTPConnection.Response {
        var headers = [("X-Forwarded-For", self.clientAddress)]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        return try await self.connection.request(method, path, json: json, headers: headers)
    }

    /// An IPv6 address in a /64 of its own, derived from `key` (fd00::/8, unique local).
    static func address(for key: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
        for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let groups = (0..<3).map { String(UInt16(truncatingIfNeeded: hash >> (16 * $0)), radix: 16) }
        return "fd00:\(groups[0]):\(groups[1]):\(groups[2])::1"
    }

    func expect(_ status: Int, _ response: HTTPConnection.Response, _ what: String) throws {
        guard response.status == status else { throw BenchError("\(what): HTTP \(response.status) \(response.text.prefix(300))") }
    }

    func register(email: String, name: String) async throws -> BenchUser {
        // each registration from an address of its own: gateways allow a few per address and hour
        let registrar = BenchAPI(connection: self.connection, clientAddress: Self.address(for: email))
        let response = try await registrar.call(.POST, "/v1/auth/register", json: ["email": email, "password": Self.password, "display_name": name])
        try self.expect(201, response, "register")
        return try Self.user(response.json, email: email)
    }

    static func user(_ tokens: [String: Any], email: String) throws -> BenchUser {
        guard let token = tokens["access_token"] as? String, let id = (tokens["user"] as? [String: Any])?["id"] as? String else {
            throw BenchError("no tokens in the answer")
        }
        return BenchUser(id: id, email: email, token: token)
    }

    func createGroup(owner: BenchUser, members: [BenchUser], title: String) async throws -> String {
        let response = try await self.call(.POST, "/v1/chats", json: ["kind": "group", "title": title, "member_ids": members.map(\.id)], token: owner.token)
        try self.expect(201, response, "create group")
        guard let id = response.json["id"] as? String else { throw BenchError("create group: no id") }
        return id
    }

    func close() async { await self.connection.close() }
}

/// Runs `count` jobs with at most `width` at a time, each on its own client
/// connection to `urls[index % urls.count]`; reports progress.
func parallel<T: Sendable>(
    _ count: Int, width: Int, urls: [URL], progress: Progress, label: String,
    _ job: @escaping @Sendable (BenchAPI, Int) async throws -> T
) async throws -> [T] {
    let lanes = max(1, min(width, count))
    return try await withThrowingTaskGroup(of: [(Int, T)].self) { group in
        for lane in 0..<lanes {
            group.addTask {
                var apis: [Int: BenchAPI] = [:]
                defer { for api in apis.values { Task { await api.close() } } }
                var done: [(Int, T)] = []
                for index in stride(from: lane, to: count, by: lanes) {
                    let urlIndex = index % urls.count
                    if apis[urlIndex] == nil { apis[urlIndex] = try await BenchAPI.connect(urls[urlIndex], clientIndex: lane * urls.count + urlIndex + 1) }
                    done.append((index, try await job(apis[urlIndex]!, index)))
                    progress.step(label, total: count)
                }
                return done
            }
        }
        var results = [T?](repeating: nil, count: count)
        for try await part in group { for (index, value) in part { results[index] = value } }
        return results.map { $0! }
    }
}

/// What `closedLoop` measured.
struct ClosedLoop {
    var latency: Latency
    var rate: Double
    var failed: Int
}

/// `clients` clients, each on its own connection, doing `call` back to back
/// for `duration` (closed loop); `call` returns whether the answer was the
/// expected one. Client `c` is called with indices c, c + clients, …
func closedLoop(
    clients: Int, urls: [URL], duration: Duration, progress: Progress, label: String,
    _ call: @escaping @Sendable (BenchAPI, Int) async throws -> Bool
) async throws -> ClosedLoop {
    let latency = Locked(Latency())
    let failed = Locked(0)
    let started = ContinuousClock.now
    let end = started + duration
    try await withThrowingTaskGroup(of: Void.self) { group in
        for client in 0..<clients {
            group.addTask {
                let api = try await BenchAPI.connect(urls[client % urls.count], clientIndex: 1000 + client)
                defer { Task { await api.close() } }
                var local = Latency()
                var index = client
                while ContinuousClock.now < end {
                    let sent = ContinuousClock.now
                    let ok = try await call(api, index)
                    local.record(ContinuousClock.now - sent)
                    if !ok { failed.withLock { $0 += 1 } }
                    index += clients
                }
                latency.withLock { $0.add(local) }
            }
        }
        group.addTask {
            while ContinuousClock.now < end {
                try await Task.sleep(for: .seconds(1))
                progress.show("\(label) t=\(Int((ContinuousClock.now - started).seconds))s")
            }
        }
        try await group.waitForAll()
    }
    progress.done()
    let result = latency.withLock { $0 }
    return ClosedLoop(latency: result, rate: Double(result.count) / (ContinuousClock.now - started).seconds, failed: failed.withLock { $0 })
}
