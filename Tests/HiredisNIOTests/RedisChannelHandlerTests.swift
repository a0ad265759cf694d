import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import HiredisNIO

@Suite struct RedisChannelHandlerTests {
    final class Pushes: Sendable {
        let values = Mutex<[RedisValue]>([])
    }

    func makeChannel(pushes: Pushes? = nil) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        var onPush: (@Sendable (RedisValue) -> Void)? = nil
        if let pushes {
            onPush = { value in pushes.values.withLock { $0.append(value) } }
        }
        try channel.pipeline.syncOperations.addHandler(
            RedisChannelHandler(onPush: onPush, timeoutCheckInterval: .milliseconds(10), logger: Logger(label: "test"))
        )
        return channel
    }

    /// One single-reply request per command, as concurrent `send`s make them.
    func singles(_ commands: [RedisCommand], on loop: any EventLoop, deadline: NIODeadline? = nil) -> ([RedisOutboundBatch], [EventLoopFuture<RedisValue>]) {
        let promises = commands.map { _ in loop.makePromise(of: RedisValue.self) }
        let batches = zip(commands, promises).map {
            RedisOutboundBatch(commands: .one($0.0), target: .single($0.1), deadline: deadline ?? loop.now + .seconds(5))
        }
        return (batches, promises.map(\.futureResult))
    }

    @Test func pipelinedRepliesAreMatchedInOrder() throws {
        let channel = try self.makeChannel()
        let (batches, futures) = self.singles([RedisCommand("GET", ["a"]), RedisCommand("GET", ["b"]), RedisCommand("INCR", ["c"])], on: channel.eventLoop)
        for batch in batches { try channel.writeOutbound(batch) }
        var written = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { written += String(buffer: buffer) }
        #expect(written == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n")
        // Replies arrive in one odd split across reads.
        try channel.writeInbound(ByteBuffer(string: "$1\r\n1\r\n$-"))
        try channel.writeInbound(ByteBuffer(string: "1\r\n:7"))
        try channel.writeInbound(ByteBuffer(string: "\r\n"))
        #expect(try futures[0].wait() == .bulkString(ByteBuffer(string: "1")))
        #expect(try futures[1].wait() == .null)
        #expect(try futures[2].wait() == .integer(7))
        _ = try channel.finish()
    }

    @Test func repliesFedByteByByteAllArrive() throws {
        let channel = try self.makeChannel()
        let commands = RESPDecoderTests.cases.map { RedisCommand("ECHO", [.string($0.0)]) }
        let (batches, futures) = self.singles(commands, on: channel.eventLoop)
        for batch in batches { try channel.writeOutbound(batch) }
        for byte in RESPDecoderTests.cases.flatMap(\.1) {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        #expect(try futures.map { try $0.wait() } == RESPDecoderTests.cases.map(\.2))
        _ = try channel.finish()
    }

    @Test func manyRepliesInOneReadAllArrive() throws {
        let channel = try self.makeChannel()
        let commands = RESPDecoderTests.cases.map { RedisCommand("ECHO", [.string($0.0)]) }
        let (batches, futures) = self.singles(commands, on: channel.eventLoop)
        for batch in batches { try channel.writeOutbound(batch) }
        try channel.writeInbound(ByteBuffer(bytes: RESPDecoderTests.cases.flatMap(\.1)))
        #expect(try futures.map { try $0.wait() } == RESPDecoderTests.cases.map(\.2))
        _ = try channel.finish()
    }

    @Test func aBatchCompletesOnceWithEveryReplyInOrder() throws {
        let channel = try self.makeChannel()
        let promise = channel.eventLoop.makePromise(of: [RedisValue].self)
        let completions = Pushes()
        promise.futureResult.whenSuccess { _ in completions.values.withLock { $0.append(.null) } }
        let commands = (0..<4).map { RedisCommand("INCR", [RedisArgument($0)]) }
        try channel.writeOutbound(RedisOutboundBatch(commands: .many(commands), target: .batch(promise), deadline: channel.eventLoop.now + .seconds(5)))
        try channel.writeInbound(ByteBuffer(string: ":1\r\n:2\r\n-ERR no\r\n"))
        #expect(completions.values.withLock { $0.isEmpty }, "a batch completes only when every reply is in")
        try channel.writeInbound(ByteBuffer(string: ":4\r\n"))
        #expect(try promise.futureResult.wait() == [.integer(1), .integer(2), .error("ERR no"), .integer(4)])
        _ = try channel.finish()
    }

    @Test func aHalfAnsweredBatchFailsWhenTheConnectionCloses() throws {
        let channel = try self.makeChannel()
        let promise = channel.eventLoop.makePromise(of: [RedisValue].self)
        try channel.writeOutbound(RedisOutboundBatch(commands: .many([RedisCommand("PING"), RedisCommand("PING")]), target: .batch(promise), deadline: channel.eventLoop.now + .seconds(5)))
        try channel.writeInbound(ByteBuffer(string: "+PONG\r\n"))
        channel.pipeline.fireChannelInactive()
        #expect(throws: RedisError.self) { try promise.futureResult.wait() }
        _ = try? channel.finish()
    }

    @Test func everyPendingRequestFailsWhenTheConnectionCloses() throws {
        let channel = try self.makeChannel()
        let (batches, futures) = self.singles((0..<5).map { RedisCommand("GET", [RedisArgument($0)]) }, on: channel.eventLoop)
        for batch in batches { try channel.writeOutbound(batch) }
        try channel.writeInbound(ByteBuffer(string: ":1\r\n"))  // only the first is answered
        channel.pipeline.fireChannelInactive()
        #expect(try futures[0].wait() == .integer(1))
        for future in futures.dropFirst() {
            #expect(throws: RedisError.self) { try future.wait() }
            #expect((try? future.wait()) == nil)
        }
        // A write after the close fails at once instead of hanging.
        let (late, lateFutures) = self.singles([RedisCommand("PING")], on: channel.eventLoop)
        for batch in late { _ = try? channel.writeOutbound(batch) }
        #expect(throws: RedisError.self) { try lateFutures[0].wait() }
        _ = try? channel.finish()
    }

    @Test func anErrorFailsEverythingPendingAndCloses() throws {
        let channel = try self.makeChannel()
        let (batches, futures) = self.singles([RedisCommand("GET", ["a"]), RedisCommand("GET", ["b"])], on: channel.eventLoop)
        for batch in batches { try channel.writeOutbound(batch) }
        try channel.writeInbound(ByteBuffer(string: "!garbage\r\n"))
        for future in futures {
            #expect {
                try future.wait()
            } throws: { error in
                (error as? RedisError)?.code == .protocolError
            }
        }
        #expect(!channel.isActive)
    }

    @Test func aReplyNobodyAskedForIsAProtocolError() throws {
        let channel = try self.makeChannel()
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        #expect(!channel.isActive)
    }

    @Test func pushesGoToTheSubscriberAndRepliesToTheQueue() throws {
        let pushes = Pushes()
        let channel = try self.makeChannel(pushes: pushes)
        let (batches, futures) = self.singles([RedisCommand("PING")], on: channel.eventLoop)
        for batch in batches { try channel.writeOutbound(batch) }
        try channel.writeInbound(ByteBuffer(string: "*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$2\r\nhi\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n"))
        #expect(try futures[0].wait() == .array([.bulkString(ByteBuffer(string: "pong")), .bulkString(ByteBuffer())]))
        let received = pushes.values.withLock { $0 }
        #expect(received.count == 2)
        #expect(received.last == .array([.bulkString(ByteBuffer(string: "message")), .bulkString(ByteBuffer(string: "c1")), .bulkString(ByteBuffer(string: "hi"))]))
        _ = try channel.finish()
    }

    @Test func aCommandWithoutReplyInTimeFailsAndClosesTheConnection() throws {
        let channel = try self.makeChannel()
        let (batches, futures) = self.singles([RedisCommand("BLPOP", ["q", 0])], on: channel.eventLoop, deadline: channel.eventLoop.now + .milliseconds(20))
        for batch in batches { try channel.writeOutbound(batch) }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
        #expect {
            try futures[0].wait()
        } throws: { error in
            (error as? RedisError)?.code == .commandTimeout
        }
        #expect(!channel.isActive)
    }
}

@Suite struct RedisConfigurationTests {
    @Test func parsesEveryPart() throws {
        let configuration = try RedisConfiguration(url: "redis://user:p%40ss@cache.internal:6380/3")
        #expect(configuration.host == "cache.internal")
        #expect(configuration.port == 6380)
        #expect(configuration.username == "user")
        #expect(configuration.password == "p@ss")
        #expect(configuration.database == 3)
    }

    @Test func passwordWithoutUserAndDefaults() throws {
        let configuration = try RedisConfiguration(url: "redis://:secret@localhost")
        #expect(configuration.username == nil)
        #expect(configuration.password == "secret")
        #expect(configuration.port == 6379)
        #expect(configuration.database == 0)
    }

    @Test(arguments: [
        "http://localhost:6379", "redis://", "redis://localhost:6379/x", "redis://localhost:99999", "not a url at all",
        "redis+cluster://", "redis+cluster://host", "redis+cluster://h:1,,h:2", "redis+cluster://h:1/2", "redis+cluster://h:70000",
    ])
    func rejectsMalformedURLs(url: String) {
        #expect {
            _ = try RedisConfiguration(url: url)
        } throws: { error in
            (error as? RedisError)?.code == .invalidURL
        }
    }

    @Test func errorsNeverEchoThePassword() {
        do {
            _ = try RedisConfiguration(url: "rediss://:topsecret@host:1/0")
            Issue.record("expected an error")
        } catch {
            #expect(!error.message.contains("topsecret"))
        }
    }
}

@Suite struct BackoffTests {
    @Test func growsExponentiallyUpToTheCap() {
        let backoff = Backoff(base: .milliseconds(100), cap: .seconds(2))
        #expect(backoff.delay(attempt: 0, random: 1) == .milliseconds(100))
        #expect(backoff.delay(attempt: 1, random: 1) == .milliseconds(200))
        #expect(backoff.delay(attempt: 3, random: 1) == .milliseconds(800))
        #expect(backoff.delay(attempt: 10, random: 1) == .seconds(2))
        #expect(backoff.delay(attempt: 1_000, random: 1) == .seconds(2))
    }

    @Test func jitterStaysWithinHalfToFull() {
        let backoff = Backoff(base: .milliseconds(100), cap: .seconds(2))
        #expect(backoff.delay(attempt: 2, random: 0) == .milliseconds(200))
        for _ in 0..<100 {
            let delay = backoff.delay(attempt: 2)
            #expect(delay >= .milliseconds(200) && delay <= .milliseconds(400))
        }
    }
}
