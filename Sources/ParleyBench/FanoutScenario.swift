public import Foundation
import Synchronization

/// `parley bench fanout`: `users` users in groups of `groupSize`, each with
/// one WebSocket, spread over the gateway URLs (a group spans them all).
/// Sends go out on an open-loop schedule at `rate` messages/s in total,
/// spread evenly over the groups (consecutive sends go to different groups,
/// whose members take turns), each into the sender's group; latencies are
/// measured from the scheduled send time, so a server that falls behind
/// shows as queueing, not as a lower offered load. Every member connection
/// checks that it gets each acknowledged message once and in order.
public struct FanoutScenario: Sendable {
    public var urls: [URL]
    public var users = 1000
    public var groupSize = 10
    public var rate = 1000.0
    public var duration: Duration = .seconds(60)
    /// How long to wait after the last send for acks and deliveries.
    public var drainTimeout: Duration = .seconds(20)
    /// Concurrent registrations and group creations during setup.
    public var setupWidth = 8
    /// A run counts as sustained only when at least this share of the offered
    /// rate was acknowledged…
    public var minimumAckedShare = 0.98
    /// …and, when given, p99 send→delivery stayed within this.
    public var maxP99: Duration?
    /// Processes whose CPU use during the sending is reported.
    public var watched: [WatchedProcess] = []

    public init(urls: [URL]) {
        self.urls = urls
    }

    struct Live {
        var sentAt: [String: ContinuousClock.Instant] = [:]
        var sent = 0
        var acked = 0
        var errors: [String: Int] = [:]
        var ack = Latency()
        var delivery = Latency()
        var ledger = DeliveryLedger()
        var lastAck: ContinuousClock.Instant?
        var lastDelivery: ContinuousClock.Instant?
    }

    public func run() async throws -> BenchReport {
        guard !self.urls.isEmpty else { throw BenchError("give at least one gateway URL") }
        guard self.groupSize >= 2, self.users >= self.groupSize else { throw BenchError("need at least one group: users >= group size >= 2") }
        guard self.rate > 0 else { throw BenchError("rate must be positive") }
        let groups = self.users / self.groupSize
        let userCount = groups * self.groupSize
        let progress = Progress()
        let run = String(UUID().uuidString.prefix(8)).lowercased()

        let users = try await parallel(userCount, width: self.setupWidth, urls: self.urls, progress: progress, label: "registering users") { api, index in
            try await api.register(email: "bench-\(run)-\(index)@bench.example", name: "bench \(index)")
        }
        let size = self.groupSize
        let chats = try await parallel(groups, width: self.setupWidth, urls: self.urls, progress: progress, label: "creating groups") { api, group in
            let members = Array(users[(group * size)..<((group + 1) * size)])
            return try await api.createGroup(owner: members[0], members: Array(members.dropFirst()), title: "bench \(run) \(group)")
        }
        let chatOfUser = (0..<userCount).map { chats[$0 / size] }
        var members: [String: [Int]] = [:]
        for user in 0..<userCount { members[chatOfUser[user], default: []].append(user) }

        let live = Locked(Live())
        let urls = self.urls
        let sockets = try await parallel(userCount, width: 32, urls: urls, progress: progress, label: "connecting") { _, index in
            try await BenchSocket.open(base: urls[index % urls.count], token: users[index].token) { text in
                Self.receive(text, connection: index, live: live)
            }
        }
        progress.done()

        // the open-loop schedule
        let total = Int(self.rate * self.duration.seconds)
        let interval = Duration.seconds(1.0 / self.rate)
        let start = ContinuousClock.now + .milliseconds(200)
        let reporter = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let (sent, acked, delivered, errors) = live.withLock { ($0.sent, $0.acked, $0.ledger.delivered, $0.errors.values.reduce(0, +)) }
                let elapsed = max(0, (ContinuousClock.now - start).seconds)
                progress.show(String(format: "t=%.0fs sent %d acked %d delivered %d errors %d", elapsed, sent, acked, delivered, errors))
            }
        }
        var index = 0
        let cpuBefore = self.watched.map(\.seconds)
        while index < total {
            let due = start + interval * index
            if due > ContinuousClock.now { try await Task.sleep(until: due, tolerance: .microseconds(200)) }
            let now = ContinuousClock.now
            while index < total, start + interval * index <= now {
                // consecutive sends go to different groups (group = index % groups), and each
                // group's members take turns: every chat gets an even share of the rate
                let sender = (index % groups) * size + (index / groups) % size
                let clientID = UUID().uuidString.lowercased()
                let scheduled = start + interval * index
                live.withLock {
                    $0.sentAt[clientID] = scheduled
                    $0.sent += 1
                }
                let frame = #"{"type":"send","ref":"\#(index)","chat_id":"\#(chatOfUser[sender])","client_id":"\#(clientID)","body":"m\#(index)"}"#
                do {
                    try sockets[sender].send(frame)
                } catch {
                    live.withLock { $0.errors["socket_closed", default: 0] += 1 }
                }
                index += 1
            }
        }
        let sendingEnded = ContinuousClock.now
        let cpuUsed = zip(self.watched, cpuBefore).map { ($0.name, $0.seconds - $1) }

        // drain: every send answered, every acked message delivered to every member
        let deadline = ContinuousClock.now + self.drainTimeout
        while ContinuousClock.now < deadline {
            let done = live.withLock { state in
                state.acked + state.errors.values.reduce(0, +) >= state.sent && state.ledger.delivered >= state.acked * size
            }
            if done { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        reporter.cancel()
        progress.done()
        let closedEarly = sockets.filter { $0.isClosed }.map { $0.closeCode.map(String.init) ?? "none" }
        await withTaskGroup(of: Void.self) { group in
            for socket in sockets { group.addTask { await socket.close() } }
        }

        let state = live.withLock { $0 }
        var report = BenchReport(scenario: "fanout")
        report.parameters = [
            ("gateways", .count(self.urls.count)), ("users", .count(userCount)), ("group_size", .count(size)),
            ("rate", .rate(self.rate)), ("duration_s", .number(self.duration.seconds, "")),
        ]
        let ackWindow = Self.ackWindow(
            duration: self.duration, lastAck: (state.lastAck ?? start) - start, medianAckLatency: .milliseconds(Int64(state.ack.summary.p50))
        )
        let deliveryWindow = max(self.duration.seconds, ((state.lastDelivery ?? start) - start).seconds)
        let lost = state.ledger.lost(members: members)
        let ackedRate = Double(state.acked) / ackWindow
        let errors = state.errors.values.reduce(0, +)
        let unanswered = max(0, state.sent - state.acked - errors)
        report.results = [
            ("sent", .count(state.sent)),
            ("acked", .count(state.acked)),
            ("acked_per_s", .rate(ackedRate)),
            ("delivered", .count(state.ledger.delivered)),
            ("delivered_per_s", .rate(Double(state.ledger.delivered) / deliveryWindow)),
            ("expected_deliveries", .count(state.acked * size)),
            ("lost", .count(lost)),
            ("duplicated", .count(state.ledger.duplicated)),
            ("out_of_order", .count(state.ledger.outOfOrder)),
            ("send_errors", .count(errors)),
            ("unanswered_sends", .count(unanswered)),
            ("schedule_lag_ms", .number(max(0, (sendingEnded - (start + interval * total)).seconds * 1000), "ms")),
        ]
        let sendingSeconds = max(0.001, (sendingEnded - start).seconds)
        for (name, used) in cpuUsed {
            // percent of one core while sending, and per 1,000 acknowledged messages a second
            let percent = used / sendingSeconds * 100
            report.results.append(("cpu_\(name)_percent", .number(percent, "%")))
            if ackedRate > 0 { report.results.append(("cpu_\(name)_percent_per_1000_msg_s", .number(percent / ackedRate * 1000, "%"))) }
        }
        if !state.errors.isEmpty {
            report.results.append(("error_codes", .text(state.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))))
        }
        report.latencies = [("send_to_ack", state.ack.summary), ("send_to_delivery", state.delivery.summary)]
        if lost > 0 { report.failures.append("\(lost) acknowledged deliveries missing \(self.drainTimeout) after the last send (lost, or later than that)") }
        if state.ledger.duplicated > 0 { report.failures.append("\(state.ledger.duplicated) duplicated deliveries") }
        if state.ledger.outOfOrder > 0 { report.failures.append("\(state.ledger.outOfOrder) out-of-order deliveries") }
        if !closedEarly.isEmpty { report.failures.append("\(closedEarly.count) sockets closed by the server (codes \(Set(closedEarly).sorted().joined(separator: ",")))") }
        if errors > 0 { report.failures.append("\(errors) sends failed") }
        if unanswered > 0 { report.failures.append("\(unanswered) sends got no answer within \(self.drainTimeout) after the last send") }
        // a rate is sustained only if the server kept up with it
        if ackedRate < self.minimumAckedShare * self.rate {
            report.failures.append(String(format: "not sustained: %.0f acked/s of %.0f/s offered (less than %.0f%%)", ackedRate, self.rate, self.minimumAckedShare * 100))
        }
        if let maxP99 = self.maxP99, state.delivery.summary.p99 > maxP99.seconds * 1000 {
            report.failures.append(String(format: "not sustained: p99 send→delivery %.1f ms over %.0f ms", state.delivery.summary.p99, maxP99.seconds * 1000))
        }
        return report
    }

    /// The seconds over which the acknowledged rate is counted: the sending
    /// time, or longer when acks trailed behind it by more than a message
    /// takes anyway (a server that fell behind), but never the last
    /// message's own latency (which would make every short run look slow).
    static func ackWindow(duration: Duration, lastAck: Duration, medianAckLatency: Duration) -> Double {
        max(duration.seconds, (lastAck - medianAckLatency).seconds)
    }

    static func receive(_ text: String, connection: Int, live: Locked<Live>) {
        let frame = ScannedFrame(text)
        let now = ContinuousClock.now
        switch frame.type {
        case "message":
            guard let chat = frame.chatID, let seq = frame.seq else { return }
            live.withLock { state in
                state.ledger.received(connection: connection, chat: chat, seq: seq)
                if let client = frame.clientID, let sentAt = state.sentAt[client] { state.delivery.record(now - sentAt) }
                state.lastDelivery = now
            }
        case "ack":
            guard let chat = frame.chatID, let seq = frame.seq else { return }
            live.withLock { state in
                state.acked += 1
                state.ledger.acknowledged(chat: chat, seq: seq)
                if let client = frame.clientID, let sentAt = state.sentAt[client] { state.ack.record(now - sentAt) }
                state.lastAck = now
            }
        case "error":
            live.withLock { $0.errors[frame.code ?? "unknown", default: 0] += 1 }
        default:
            break
        }
    }
}

extension Duration {
    var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}
