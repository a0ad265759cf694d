import Foundation
import HiredisNIO
import Logging
import NIOCore

/// A private Redis Cluster for tests that move slots or kill masters: three
/// masters with one replica each (six redis-servers on free ports, their
/// cluster buses on free ports of their own), quick failover (node timeout
/// 2 s). The shared cluster of scripts/test is never touched.
public final class RedisClusterProcess: @unchecked Sendable {
    public let password: String
    public let ports: [Int]
    private let busPorts: [Int]
    private let directory: URL
    private var children: [Int: ChildProcess] = [:]
    private var created = false

    public init() throws {
        self.password = UUID().uuidString
        var ports: [Int] = [], bus: [Int] = []
        for _ in 0..<6 {
            ports.append(try TestEnvironment.freePort())
            bus.append(try TestEnvironment.freePort())
        }
        self.ports = ports
        self.busPorts = bus
        self.directory = try TestEnvironment.scratchDirectory()
    }

    public var url: String {
        "redis+cluster://:\(self.password)@" + self.ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
    }

    public var configuration: RedisConfiguration {
        get throws { try RedisConfiguration(url: self.url) }
    }

    /// The settings for one node (a plain connection, no routing).
    public func node(_ port: Int) -> RedisConfiguration {
        var configuration = RedisConfiguration(host: "127.0.0.1", port: port, password: self.password)
        configuration.connectTimeout = .seconds(2)
        return configuration
    }

    /// Starts the six servers, creates the cluster the first time (later
    /// starts bring the same nodes back: each keeps its nodes.conf), and
    /// waits until every node reports it ok and every replica has its
    /// master's data.
    public func start() async throws {
        for (index, port) in self.ports.enumerated() {
            let dir = self.directory.appendingPathComponent("\(port)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let child = ChildProcess("redis-server", [
                "--port", "\(port)", "--cluster-port", "\(self.busPorts[index])", "--bind", "127.0.0.1",
                "--dir", dir.path, "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                "--requirepass", self.password, "--masterauth", self.password,
                // replicas sync at once (by default a diskless sync waits 5 s for company)
                "--repl-diskless-sync-delay", "0",
            ])
            try child.start()
            self.children[port] = child
        }
        for port in self.ports { try await self.waitForPong(port) }
        if !self.created {
            let created = try await ChildProcess.run(
                "redis-cli", ["--cluster", "create"] + self.ports.map { "127.0.0.1:\($0)" } + ["--cluster-replicas", "1", "--cluster-yes"],
                environment: ["REDISCLI_AUTH": self.password]
            )
            guard created.status == 0 else { throw RedisError(.connectionRefused, "redis-cli --cluster create failed: \(created.output)") }
            self.created = true
        }
        try await self.waitUntilHealthy()
        // a replica can take over only once it has its master's data
        for master in try await self.masters() { try await self.waitForReplicas(of: master) }
    }

    private func waitForPong(_ port: Int) async throws {
        for _ in 0..<100 {
            if let connection = try? await RedisConnection.connect(configuration: self.node(port), logger: TestEnvironment.logger) {
                await connection.close()
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RedisError(.connectionRefused, "cluster node \(port) did not start: \(self.children[port]?.outputText ?? "")")
    }

    /// Waits until every running node says `cluster_state:ok` and every slot has an online master.
    public func waitUntilHealthy(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var healthy = true
            for port in self.ports where self.children[port] != nil {
                let info = try? await self.send(port, RedisCommand("CLUSTER", ["INFO"])).string
                if info?.contains("cluster_state:ok") != true { healthy = false }
            }
            if healthy { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RedisError(.commandTimeout, "the private Redis Cluster did not become healthy in \(timeout)")
    }

    /// One command on one node, on a connection of its own.
    @discardableResult
    public func send(_ port: Int, _ command: RedisCommand) async throws -> RedisValue {
        let connection = try await RedisConnection.connect(configuration: self.node(port), logger: TestEnvironment.logger)
        defer { Task { await connection.close() } }
        return try await connection.send(command)
    }

    /// The port of the master that serves `slot` now, as node `askPort` sees it.
    public func master(ofSlot slot: Int, askPort: Int? = nil) async throws -> Int {
        let lines = try await self.send(askPort ?? self.ports.first { self.children[$0] != nil }!, RedisCommand("CLUSTER", ["NODES"])).string ?? ""
        for line in lines.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 9, fields[2].contains("master"), !fields[2].contains("fail") else { continue }
            let port = Int(fields[1].split(separator: "@")[0].split(separator: ":").last ?? "") ?? 0
            for range in fields[8...] {
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                if bounds.count == 2, (bounds[0]...bounds[1]).contains(slot) { return port }
                if bounds.count == 1, bounds[0] == slot { return port }
            }
        }
        throw RedisError(.unexpectedReply, "no master serves slot \(slot)")
    }

    /// The ports of the masters now.
    public func masters() async throws -> [Int] {
        let lines = try await self.send(self.ports.first { self.children[$0] != nil }!, RedisCommand("CLUSTER", ["NODES"])).string ?? ""
        return lines.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 9, fields[2].contains("master"), !fields[2].contains("fail") else { return nil }
            return Int(fields[1].split(separator: "@")[0].split(separator: ":").last ?? "")
        }.sorted()
    }

    public func nodeID(_ port: Int) async throws -> String {
        try await self.send(port, RedisCommand("CLUSTER", ["MYID"])).string ?? ""
    }

    /// Moves one slot (and its keys) from its master to another, as
    /// `redis-cli --cluster reshard` does: importing/migrating, MIGRATE, then
    /// the new owner announced to every master. `between` runs while the slot
    /// is half moved (its keys already on the target answer ASK).
    public func moveSlot(_ slot: Int, to target: Int, between: () async throws -> Void = {}) async throws {
        let source = try await self.master(ofSlot: slot)
        let sourceID = try await self.nodeID(source), targetID = try await self.nodeID(target)
        try await self.send(target, RedisCommand("CLUSTER", ["SETSLOT", RedisArgument(slot), "IMPORTING", .string(sourceID)]))
        try await self.send(source, RedisCommand("CLUSTER", ["SETSLOT", RedisArgument(slot), "MIGRATING", .string(targetID)]))
        try await between()
        while true {
            let keys = try await self.send(source, RedisCommand("CLUSTER", ["GETKEYSINSLOT", RedisArgument(slot), "100"])).array ?? []
            if keys.isEmpty { break }
            try await self.send(source, RedisCommand("MIGRATE", ["127.0.0.1", RedisArgument(target), "", "0", "5000", "AUTH", .string(self.password), "KEYS"]
                + keys.compactMap { $0.string.map { RedisArgument.string($0) } }))
        }
        for port in [target, source] + (try await self.masters()).filter({ $0 != target && $0 != source }) {
            try await self.send(port, RedisCommand("CLUSTER", ["SETSLOT", RedisArgument(slot), "NODE", .string(targetID)]))
        }
    }

    /// Waits until every replica of a master has all its writes.
    public func waitForReplicas(of port: Int) async throws {
        try await eventually {
            let info = try await self.send(port, RedisCommand("INFO", ["replication"])).string ?? ""
            var master: Int64?, replicas: [Int64] = []
            for line in info.split(whereSeparator: \.isNewline) {
                if line.hasPrefix("master_repl_offset:") { master = Int64(line.dropFirst("master_repl_offset:".count)) }
                if line.hasPrefix("slave"), line.contains("state=online"), let offset = line.split(separator: ",").first(where: { $0.hasPrefix("offset=") }) {
                    replicas.append(Int64(offset.dropFirst("offset=".count)) ?? -1)
                }
            }
            guard let master, !replicas.isEmpty, info.contains("connected_slaves:1") else { return false }
            return replicas.allSatisfy { $0 >= master }
        }
    }

    /// `kill -9` of one node.
    public func kill(_ port: Int) async {
        guard let child = self.children.removeValue(forKey: port) else { return }
        child.signal(SIGKILL)
        await child.waitForExit(timeout: .seconds(5))
    }

    public func stop() async {
        for (_, child) in self.children { child.signal(SIGTERM) }
        for (_, child) in self.children { await child.waitForExit(timeout: .seconds(10)) }
        self.children = [:]
    }

    deinit {
        for (_, child) in self.children { child.signal(SIGKILL) }
    }
}
