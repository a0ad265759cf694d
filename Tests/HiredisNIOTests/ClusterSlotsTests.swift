import NIOCore
import Testing

@testable import HiredisNIO

@Suite struct ClusterSlotsTests {
    /// Slots as `CLUSTER KEYSLOT` of Redis 7.0 reports them.
    @Test(arguments: [
        ("foo", 12182), ("bar", 5061), ("{user1000}.following", 3443), ("user1000", 3443),
        ("{}x", 10595), ("a{}b{c}", 7353), ("{{a}}", 10276), ("", 0),
        ("chat:5f0c7a0e-1111-4222-8333-944445555666", 9876),
    ])
    func slotsMatchRedis(key: String, slot: Int) {
        #expect(ClusterSlot.of(key) == slot)
        #expect(ClusterSlot.of(ByteBuffer(string: key)) == slot)
    }

    @Test func keysAreFoundWhereEachCommandKeepsThem() throws {
        #expect(try RedisCommand("GET", ["foo"]).route() == .slot(12182))
        #expect(try RedisCommand("PING").route() == .anyNode)
        #expect(try RedisCommand("PUBLISH", ["foo", "x"]).route() == .anyNode)
        #expect(try RedisCommand("SPUBLISH", ["foo", "x"]).route() == .slot(12182))
        #expect(try RedisCommand("SCRIPT", ["LOAD", "return 1"]).route() == .anyNode)
        #expect(try RedisCommand("EVALSHA", ["abc", "2", "{u}a", "{u}b", "bar"]).route() == .slot(ClusterSlot.of("u")))
        #expect(try RedisCommand("EVALSHA", ["abc", "0", "bar"]).route() == .anyNode)
        #expect(try RedisCommand("XGROUP", ["CREATE", "foo", "g", "$", "MKSTREAM"]).route() == .slot(12182))
        #expect(try RedisCommand("XREADGROUP", ["GROUP", "g", "c", "COUNT", "5", "STREAMS", "foo", ">"]).route() == .slot(12182))
        #expect(try RedisCommand("DEL", ["{t}1", "{t}2", "{t}3"]).route() == .slot(ClusterSlot.of("t")))
        #expect(try RedisCommand("MSET", ["{t}1", "foo", "{t}2", "bar"]).route() == .slot(ClusterSlot.of("t")))
    }

    @Test(arguments: [
        RedisCommand("DEL", ["foo", "bar"]),
        RedisCommand("EVALSHA", ["abc", "2", "foo", "bar"]),
        RedisCommand("MSET", ["foo", "1", "bar", "2"]),
        RedisCommand("XREADGROUP", ["GROUP", "g", "c", "STREAMS", "foo", "bar", ">", ">"]),
    ])
    func keysInTwoSlotsAreRefusedBeforeSending(command: RedisCommand) {
        #expect {
            _ = try command.route()
        } throws: { error in
            (error as? RedisError)?.code == .crossSlot
        }
    }

    @Test func redirectionsAreRead() {
        #expect(ClusterRedirect(error: "MOVED 3999 127.0.0.1:6381") == ClusterRedirect(kind: .moved, slot: 3999, node: RedisNodeAddress(host: "127.0.0.1", port: 6381)))
        #expect(ClusterRedirect(error: "ASK 12 redis-b:7000")?.kind == .ask)
        #expect(ClusterRedirect(error: "MOVED 1 [::1]:7000")?.node == RedisNodeAddress(host: "::1", port: 7000))
        #expect(ClusterRedirect(error: "MOVED 7 :7002")?.node == RedisNodeAddress(host: "", port: 7002))
        #expect(ClusterRedirect(error: "MOVED 16384 host:1") == nil)
        #expect(ClusterRedirect(error: "WRONGTYPE Operation against a key") == nil)
        #expect(ClusterRedirect(.simpleString("MOVED 1 host:1")) == nil)
    }

    static func text(_ value: String) -> RedisValue { .bulkString(ByteBuffer(string: value)) }

    static func node(_ port: Int, role: String, health: String = "online") -> RedisValue {
        .array([
            text("id"), text("n\(port)"), text("port"), .integer(Int64(port)), text("ip"), text("10.0.0.1"), text("endpoint"), text("127.0.0.1"),
            text("role"), text(role), text("replication-offset"), .integer(0), text("health"), text(health),
        ])
    }

    @Test func theSlotMapIsReadFromClusterShards() throws {
        let reply = RedisValue.array([
            .array([Self.text("slots"), .array([.integer(0), .integer(5460)]), Self.text("nodes"), .array([Self.node(7001, role: "master"), Self.node(7004, role: "replica")])]),
            .array([Self.text("slots"), .array([.integer(5461), .integer(10922)]), Self.text("nodes"), .array([Self.node(7005, role: "replica"), Self.node(7002, role: "master")])]),
            // a master that failed, its replica not promoted yet: its slots have no owner
            .array([Self.text("slots"), .array([.integer(10923), .integer(16000), .integer(16001), .integer(16383)]),
                    Self.text("nodes"), .array([Self.node(7003, role: "master", health: "fail"), Self.node(7006, role: "replica")])]),
        ])
        let topology = try ClusterTopology.parse(shards: reply)
        #expect(topology.masters == [RedisNodeAddress(host: "127.0.0.1", port: 7001), RedisNodeAddress(host: "127.0.0.1", port: 7002)])
        #expect(topology.master(of: 0)?.port == 7001)
        #expect(topology.master(of: 5461)?.port == 7002)
        #expect(topology.master(of: 16383) == nil)
        #expect(!topology.coversEverySlot)
        #expect(topology.shards[0].replicas.map(\.port) == [7004])
    }

    @Test func clusterURLsNameTheirNodes() throws {
        let configuration = try RedisConfiguration(url: "redis+cluster://:p%40ss@10.0.0.1:7001,10.0.0.2:7002,[::1]:7003")
        #expect(configuration.isCluster)
        #expect(configuration.clusterSeeds.map(\.description) == ["10.0.0.1:7001", "10.0.0.2:7002", "[::1]:7003"])
        #expect(configuration.password == "p@ss")
        #expect(configuration.host == "10.0.0.1" && configuration.port == 7001)
        #expect(try !RedisConfiguration(url: "redis://localhost").isCluster)
    }
}
