import Foundation
import NIOCore
import NIOPosix
import ParleyTestSupport
import Testing

@testable import HiredisNIO

/// The client against real Redis Clusters: the shared one of scripts/test
/// (3 masters, 3 replicas) for routing, and private ones for tests that
/// move slots or kill a master. One test at a time: a private cluster is six
/// more servers, started while every other suite starts too.
@Suite(.serialized) struct RedisClusterTests {
    /// Keys that land on every master (found by slot, not by luck).
    static func keysOnEveryMaster(_ topology: ClusterTopology, prefix: String, perMaster: Int = 5) -> [String] {
        var found: [RedisNodeAddress: [String]] = [:]
        var index = 0
        while found.count < topology.masters.count || found.values.contains(where: { $0.count < perMaster }) {
            let key = "\(prefix):\(index)"
            if let master = topology.master(of: ClusterSlot.of(key)), found[master, default: []].count < perMaster { found[master, default: []].append(key) }
            index += 1
        }
        return found.values.flatMap { $0 }
    }

    /// A subscriber that reconnects quickly, running until `runner` is cancelled.
    static func subscriber(_ configuration: RedisConfiguration) async throws -> (RedisSubscriber, Task<Void, any Error>) {
        let subscriber = RedisSubscriber(
            configuration: configuration, backoff: Backoff(base: .milliseconds(50), cap: .milliseconds(500)),
            pingInterval: .milliseconds(500), logger: TestEnvironment.logger
        )
        let runner = Task { try await subscriber.run() }
        try await eventually { subscriber.isConnected }
        return (subscriber, runner)
    }

    /// A private cluster, a client of it, and a subscriber following `channel`.
    static func privateCluster(following channel: String, commandTimeout: TimeAmount = .seconds(5)) async throws
        -> (RedisClusterProcess, RedisClient, RedisSubscriber, Task<Void, any Error>)
    {
        let cluster = try RedisClusterProcess()
        try await cluster.start()
        var configuration = try cluster.configuration
        configuration.commandTimeout = commandTimeout
        let (subscriber, runner) = try await Self.subscriber(configuration)
        try await subscriber.ssubscribe([channel])
        return (cluster, RedisClient(configuration: configuration, logger: TestEnvironment.logger), subscriber, runner)
    }

    @Test func commandsRunOnTheMasterOfTheirSlot() async throws {
        let configuration = try TestEnvironment.redisClusterConfiguration()
        let client = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        let router = RedisClusterRouter(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: TestEnvironment.logger)
        let topology = try await router.topology()
        #expect(topology.masters.count == 3 && topology.coversEverySlot)
        let run = UUID().uuidString.prefix(8)
        let keys = Self.keysOnEveryMaster(topology, prefix: "route-\(run)")
        for key in keys { try await client.set(key, to: .string("v-\(key)"), expireSeconds: 60) }
        // each key is on its slot's master: asked there directly, with no redirection
        for key in keys {
            let master = topology.master(of: ClusterSlot.of(key))!
            let direct = try await RedisConnection.connect(configuration: configuration.node(master), logger: TestEnvironment.logger)
            #expect(try await direct.send(RedisCommand("GET", [.string(key)])).string == "v-\(key)")
            await direct.close()
        }
        // and read back through the client
        for key in keys { #expect(try await client.get(key).map { String(buffer: $0) } == "v-\(key)") }
        await client.shutdown()
        await router.shutdown()
    }

    @Test func aPipelineAcrossMastersAnswersInOrder() async throws {
        let client = RedisClient(configuration: try TestEnvironment.redisClusterConfiguration(), logger: TestEnvironment.logger)
        let run = UUID().uuidString.prefix(8)
        var commands: [RedisCommand] = []
        for index in 0..<60 {
            commands.append(RedisCommand("INCRBY", [.string("pipe-\(run):\(index % 20)"), RedisArgument(index)]))
            commands.append(RedisCommand("PING"))
        }
        let replies = try await client.pipeline(commands)
        #expect(replies.count == commands.count)
        for index in 0..<60 {
            // key k gets k, then k + 20, then k + 40: the running totals come back in order
            let key = index % 20, round = index / 20
            let expected = (0...round).reduce(0) { $0 + key + 20 * $1 }
            #expect(replies[2 * index].int == Int64(expected), "reply \(2 * index)")
            #expect(replies[2 * index + 1].string == "PONG")
        }
        _ = try await client.del((0..<20).map { "pipe-\(run):\($0)" }.filter { ClusterSlot.of($0) == ClusterSlot.of("pipe-\(run):0") })
        await client.shutdown()
    }

    @Test func keysInDifferentSlotsAreRefusedAndHashTagsKeepThemTogether() async throws {
        let client = RedisClient(configuration: try TestEnvironment.redisClusterConfiguration(), logger: TestEnvironment.logger)
        await #expect {
            _ = try await client.del(["foo", "bar"])
        } throws: { error in
            (error as? RedisError)?.code == .crossSlot
        }
        let run = UUID().uuidString.prefix(8)
        try await client.set("{tag-\(run)}:a", to: "1")
        try await client.set("{tag-\(run)}:b", to: "2")
        #expect(try await client.del(["{tag-\(run)}:a", "{tag-\(run)}:b"]) == 2)
        await client.shutdown()
    }

    @Test func aScriptRunsOnWhicheverMasterHoldsItsKey() async throws {
        let configuration = try TestEnvironment.redisClusterConfiguration()
        let client = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        let router = RedisClusterRouter(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: TestEnvironment.logger)
        let script = RedisScript("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])")
        let keys = Self.keysOnEveryMaster(try await router.topology(), prefix: "script-\(UUID().uuidString.prefix(8))", perMaster: 1)
        // loaded on one node; the others learn it from EVAL when they answer NOSCRIPT
        for key in keys { #expect(try await client.evalsha(script, keys: [key], arguments: [.string(key)]).string == key) }
        _ = try await client.evalsha(script, keys: [keys[0]], arguments: ["again"])
        await client.shutdown()
        await router.shutdown()
    }

    @Test func shardChannelsAreHeardFromEveryMaster() async throws {
        let configuration = try TestEnvironment.redisClusterConfiguration()
        let router = RedisClusterRouter(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: TestEnvironment.logger)
        let channels = Self.keysOnEveryMaster(try await router.topology(), prefix: "shard-\(UUID().uuidString.prefix(8))", perMaster: 2)
        let publisher = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        let (subscriber, runner) = try await Self.subscriber(configuration)
        defer { runner.cancel() }
        try await subscriber.ssubscribe(channels)
        try await subscriber.subscribe(["broadcast-\(channels[0])"])
        var events = subscriber.events.makeAsyncIterator()
        for channel in channels { #expect(try await publisher.spublish(channel, .string("hello")) == 1) }
        var heard: Set<String> = []
        for _ in channels { heard.insert(try await RedisFaultTests.nextMessage(&events)) }
        #expect(heard == Set(channels.map { "\($0) hello" }))
        // a classic channel is heard whichever node the publisher reaches
        try await publisher.publish("broadcast-\(channels[0])", "to all")
        #expect(try await RedisFaultTests.nextMessage(&events) == "broadcast-\(channels[0]) to all")
        try await subscriber.sunsubscribe(channels)
        #expect(try await publisher.spublish(channels[0], .string("ignored")) == 0)
        runner.cancel()
        await publisher.shutdown()
        await router.shutdown()
    }

    /// A slot moves between masters while the client works: writes during
    /// the move follow ASK, reads after it follow MOVED, and a subscriber of a
    /// channel in that slot follows it to the new master and reports a gap.
    @Test func aSlotThatMovesIsFollowed() async throws {
        let (cluster, client, subscriber, runner) = try await Self.privateCluster(following: "{moving}:events")
        defer { runner.cancel() }
        var events = subscriber.events.makeAsyncIterator()

        let slot = ClusterSlot.of("moving")
        try await client.set("{moving}:old", to: "before")
        #expect(try await client.spublish("{moving}:events", .string("one")) == 1)
        #expect(try await RedisFaultTests.nextMessage(&events) == "{moving}:events one")

        let source = try await cluster.master(ofSlot: slot)
        let target = try await cluster.masters().first { $0 != source }!
        try await cluster.moveSlot(slot, to: target) {
            // half moved: a new key is created on the target (ASK), an old one still read on the source
            try await client.set("{moving}:new", to: "during")
            #expect(try await client.get("{moving}:old").map { String(buffer: $0) } == "before")
        }
        #expect(try await cluster.master(ofSlot: slot) == target)
        // the client's map still names the source: MOVED takes it to the target
        #expect(try await client.get("{moving}:old").map { String(buffer: $0) } == "before")
        #expect(try await client.get("{moving}:new").map { String(buffer: $0) } == "during")

        // the subscriber lost its shard subscription with the slot: it says so, and follows it
        guard case .gap = try await RedisFaultTests.nextEvent(&events) else {
            Issue.record("expected a gap once the slot moved")
            return
        }
        try await eventually { subscriber.isConnected }
        try await eventually { (try? await client.spublish("{moving}:events", .string("probe"))) == 1 }
        #expect(try await client.spublish("{moving}:events", .string("two")) == 1)
        var messages: [String] = []
        while messages.last != "{moving}:events two" { messages.append(try await RedisFaultTests.nextMessage(&events)) }
        #expect(messages.allSatisfy { $0.hasSuffix(" probe") || $0.hasSuffix(" two") })

        runner.cancel()
        await client.shutdown()
        await cluster.stop()
    }

    /// A master is killed while commands run: its replica takes over, the
    /// client finds it, and nothing it acknowledged is lost.
    @Test func aMasterThatDiesIsReplacedByItsReplica() async throws {
        let (cluster, client, subscriber, runner) = try await Self.privateCluster(following: "{doomed}:events", commandTimeout: .seconds(10))
        defer { runner.cancel() }
        var events = subscriber.events.makeAsyncIterator()

        let doomed = try await cluster.master(ofSlot: ClusterSlot.of("doomed"))
        var acknowledged: [Int] = []
        for index in 0..<20 {
            _ = try await client.send(RedisCommand("RPUSH", ["{doomed}:list", RedisArgument(index)]))
            acknowledged.append(index)
        }
        // Redis replicates asynchronously: what counts as kept is what reached the replica
        try await cluster.waitForReplicas(of: doomed)
        await cluster.kill(doomed)
        // commands sent meanwhile wait for the failover instead of failing
        for index in 20..<30 {
            do {
                _ = try await client.send(RedisCommand("RPUSH", ["{doomed}:list", RedisArgument(index)]))
            } catch let error as RedisError where error.code == .connectionClosed {
                // written to a pooled connection before it saw the master die: not
                // carried out (the master was gone), so sent again, as an app would
                _ = try await client.send(RedisCommand("RPUSH", ["{doomed}:list", RedisArgument(index)]))
            }
            acknowledged.append(index)
        }
        #expect(try await cluster.master(ofSlot: ClusterSlot.of("doomed")) != doomed)
        let stored = try await client.send(RedisCommand("LRANGE", ["{doomed}:list", "0", "-1"])).array?.compactMap { $0.int } ?? []
        #expect(stored == acknowledged.map { Int64($0) })

        // the subscriber reports the outage and hears the new master
        guard case .gap = try await RedisFaultTests.nextEvent(&events, timeout: .seconds(20)) else {
            Issue.record("expected a gap after the failover")
            return
        }
        try await eventually(timeout: .seconds(20)) { (try? await client.spublish("{doomed}:events", .string("after"))) == 1 }

        runner.cancel()
        await client.shutdown()
        await cluster.stop()
    }

    /// A cluster none of whose nodes answers fails every command at once, as a
    /// single Redis that is down does (waiting is for a failover, when the
    /// rest of the cluster still answers); the subscriber waits, and reports
    /// a gap once the cluster is back.
    @Test func aClusterThatIsDownFailsAtOnce() async throws {
        let (cluster, client, subscriber, runner) = try await Self.privateCluster(following: "{down}:events", commandTimeout: .seconds(10))
        defer { runner.cancel() }
        var events = subscriber.events.makeAsyncIterator()
        try await client.set("{down}:k", to: "v")
        await cluster.stop()
        let clock = ContinuousClock()
        for _ in 0..<3 {
            let started = clock.now
            await #expect {
                _ = try await client.get("{down}:k")
            } throws: { error in
                [.connectionClosed, .connectionRefused].contains((error as? RedisError)?.code)
            }
            #expect(clock.now - started < .seconds(3), "well under the 10 s command timeout")
        }
        try await eventually { !subscriber.isConnected }

        try await cluster.start()
        guard case .gap = try await RedisFaultTests.nextEvent(&events, timeout: .seconds(20)) else {
            Issue.record("expected a gap once the cluster was back")
            return
        }
        try await eventually(timeout: .seconds(20)) { (try? await client.spublish("{down}:events", .string("back"))) == 1 }
        runner.cancel()
        await client.shutdown()
        await cluster.stop()
    }
}
