import Foundation
import HiredisNIO
import ParleyTestSupport
import Testing

/// Nothing lost, nothing duplicated, in order — through reconnects to
/// alternating instances, `kill -9` of an instance and a Redis restart.
@Suite struct DeliveryUnderFaultsTests {
    static let loadEnvironment = ["PARLEY_SENDS_PER_SECOND": "10000"]

    /// Sends `count` messages from `senders` (over REST, spread over the
    /// gateways), retrying each with its client_id until acknowledged.
    /// Returns the acknowledged seqs and how many attempts failed (and were retried).
    static func load(_ senders: [E2EUser], chat: String, count: Int, gateways: @escaping @Sendable () -> [any Endpoint]) async throws -> (acked: Set<Int>, failures: Int) {
        try await withThrowingTaskGroup(of: ([Int], Int).self) { group in
            for (index, sender) in senders.enumerated() {
                group.addTask {
                    var acked: [Int] = []
                    var failures = 0
                    for n in 0..<(count / senders.count) {
                        let clientID = UUID().uuidString
                        var attempt = 0
                        while true {
                            let live = gateways()
                            let gateway = live[(n + index + attempt) % live.count]
                            if let response = try? await sender.post(gateway, "/v1/chats/\(chat)/messages", ["client_id": clientID, "body": "m \(index)-\(n)"]),
                                response.status == 201 || response.status == 200, let seq = response.json["seq"] as? Int
                            {
                                acked.append(seq)
                                break
                            }
                            attempt += 1
                            failures += 1
                            try await Task.sleep(for: .milliseconds(50))
                            if attempt > 400 { throw TestWebSocketError(message: "a send never got through") }
                        }
                    }
                    return (acked, failures)
                }
            }
            var all = Set<Int>()
            var failures = 0
            for try await (acked, failed) in group {
                all.formUnion(acked)
                failures += failed
            }
            return (all, failures)
        }
    }

    /// Seqs of a chat's message events a socket received, in arrival order.
    static func seqs(_ socket: TestWebSocket, chat: String) -> [Int] {
        socket.allFrames.filter { $0["type"] as? String == "message" && $0.messageChat == chat }.compactMap(\.messageSeq)
    }

    @Test(arguments: [false, true])
    func aReceiverHoppingBetweenInstancesGetsEverythingOnceInOrder(killOneInstance: Bool) async throws {
        let (g1, g2) = try await twoGateways(environment: Self.loadEnvironment)
        let owner = try await E2EUser.register(on: g1, name: "Load")
        var senders = [owner]
        for i in 0..<3 { senders.append(try await E2EUser.register(on: g2, name: "S\(i)")) }
        let receiver = try await E2EUser.register(on: g1, name: "Recv")
        let chat = try await owner.group(on: g1, members: Array(senders.dropFirst()) + [receiver])
        let total = 1000
        let killed = Flag()
        let gateways: @Sendable () -> [GatewayProcess] = { killed.isSet ? [g1] : [g1, g2] }

        let loadTask = Task { try await Self.load(senders, chat: chat, count: total, gateways: gateways) }
        var received: [Int] = []
        var hop = 0
        while received.count < total {
            let live = gateways()
            let gateway = live[hop % live.count]
            hop += 1
            guard let socket = try? await receiver.connect(gateway, resume: received.isEmpty ? [chat: 0] : [chat: received.last!]) else { continue }
            let stay = ContinuousClock.now + .milliseconds(Int64.random(in: 100...400))
            while ContinuousClock.now < stay && !socket.isClosed { try await Task.sleep(for: .milliseconds(20)) }
            if killOneInstance && hop == 4 && !killed.isSet {
                #expect(received.count < total / 2, "the kill happens mid-load")
                g2.child.signal(SIGKILL)  // mid-load: its sockets die, sends to it fail and are retried on g1
                _ = await g2.child.waitForExit()
                killed.set()
            }
            await socket.close()
            received += Self.seqs(socket, chat: chat)
            if hop > 400 { break }
        }
        let (acked, failures) = try await loadTask.value
        if killOneInstance { #expect(failures > 0, "the kill must hit sends in flight") }
        #expect(received == Array(1...total), "got \(received.count) events; first problem near \(zip(received, 1...).first { $0 != $1 }.map { "\($0)" } ?? "end")")
        #expect(acked.isSubset(of: Set(received)), "every acknowledged message arrived")
        #expect(acked.count == total)
    }

    /// Two gateways on `redisURL`, two sockets of one member, `total` sends
    /// over REST; `fault` runs once 20 are stored, while the sends go on.
    /// Afterwards every socket has every message once, in order, and every
    /// send was acknowledged. Returns the failed (retried) send attempts.
    static func loadThroughARedisFault(
        redisURL: String, total: Int = 400,
        _ fault: (_ chat: String, _ owner: E2EUser, _ gateway: GatewayProcess, _ finished: Flag) async throws -> Void
    ) async throws -> Int {
        let (g1, g2) = try await twoGateways(environment: Self.loadEnvironment, redisURL: redisURL)
        let owner = try await E2EUser.register(on: g1, name: "Redis")
        let other = try await E2EUser.register(on: g2, name: "Other")
        let chat = try await owner.group(on: g1, members: [other])
        let s1 = try await other.connect(g1)
        let s2 = try await other.connect(g2)
        let finished = Flag()
        let loadTask = Task {
            defer { finished.set() }
            return try await Self.load([owner, other], chat: chat, count: total, gateways: { [g1, g2] })
        }
        try await eventually { try await owner.lastSeq(on: g1, chat) >= 20 }
        try await fault(chat, owner, g1, finished)
        let (acked, failures) = try await loadTask.value
        // after the resync, every connected client has every message
        let deadline = ContinuousClock.now + .seconds(30)
        while (Self.seqs(s1, chat: chat).count < total || Self.seqs(s2, chat: chat).count < total) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        for socket in [s1, s2] {
            #expect(Self.seqs(socket, chat: chat) == Array(1...total))
            #expect(!socket.isClosed)
        }
        #expect(acked == Set(1...total))
        // and live delivery goes on
        _ = try await owner.post(g1, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "after"])
        try await eventually { Self.seqs(s1, chat: chat).last == total + 1 && Self.seqs(s2, chat: chat).last == total + 1 }
        await s1.close()
        await s2.close()
        return failures
    }

    @Test func aRedisRestartDuringLoadLosesNothing() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        let failures = try await Self.loadThroughARedisFault(redisURL: redis.url) { chat, owner, g1, finished in
            await redis.kill()
            // sends go on being stored while Redis is down
            let atKill = try await owner.lastSeq(on: g1, chat)
            try await eventually { try await owner.lastSeq(on: g1, chat) >= atKill + 50 || finished.isSet }
            #expect(!finished.isSet, "the outage must fall in the middle of the sends")
            try await redis.start()
        }
        // Redis is only the fast path: sends are stored and acknowledged while it is down
        // (limits fall back to each process), and members catch up once it is back
        #expect(failures == 0, "sends keep working while Redis is down")
        await redis.stop()
    }

    /// Gateways on a Redis Cluster: the master that serves the chat's shard
    /// channel is killed mid-load, its replica takes over, and every
    /// connected client still gets every acknowledged message once, in order.
    @Test func aRedisClusterFailoverDuringLoadLosesNothing() async throws {
        let cluster = try RedisClusterProcess()
        try await cluster.start()
        _ = try await Self.loadThroughARedisFault(redisURL: cluster.url) { chat, _, _, finished in
            let slot = ClusterSlot.of("chat:{\(chat.lowercased())}")
            let master = try await cluster.master(ofSlot: slot)
            await cluster.kill(master)
            #expect(!finished.isSet, "the failover must fall in the middle of the sends")
            // a replica takes over (failure detection, then its election)
            try await eventually(timeout: .seconds(30)) { (try? await cluster.master(ofSlot: slot)).map { $0 != master } ?? false }
        }
        await cluster.stop()
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { self.lock.withLock { self.value } }
    func set() { self.lock.withLock { self.value = true } }
}
