public import Foundation
import NIOHTTP1

/// `parley bench history`: seeds one chat with `messages` messages (REST
/// sends), then `readers` concurrent clients, each on its own keep-alive
/// connection, fetch the latest page of 50 for `duration` (closed loop).
public struct HistoryScenario: Sendable {
    public var urls: [URL]
    public var messages = 10_000
    public var readers = 8
    public var duration: Duration = .seconds(20)

    public init(urls: [URL]) {
        self.urls = urls
    }

    public func run() async throws -> BenchReport {
        guard !self.urls.isEmpty, self.readers > 0, self.messages >= 50 else { throw BenchError("need a URL, readers > 0 and at least 50 messages") }
        let progress = Progress()
        let run = String(UUID().uuidString.prefix(8)).lowercased()
        let users = try await parallel(2, width: 2, urls: [self.urls[0]], progress: progress, label: "registering users") { api, index in
            try await api.register(email: "bench-history-\(run)-\(index)@bench.example", name: "bench \(index)")
        }
        let setup = try await BenchAPI.connect(self.urls[0], clientIndex: 1)
        let chat = try await setup.createGroup(owner: users[0], members: [users[1]], title: "bench history \(run)")
        await setup.close()
        let seedStart = ContinuousClock.now
        _ = try await parallel(self.messages, width: 16, urls: self.urls, progress: progress, label: "seeding messages") { api, index in
            let response = try await api.call(
                .POST, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "body": "history message \(index) " + String(repeating: "x", count: 80)],
                token: users[index % 2].token
            )
            try api.expect(201, response, "send")
        }
        let seedTime = ContinuousClock.now - seedStart
        progress.done()

        let path = "/v1/chats/\(chat)/messages?limit=50"
        let check = try await BenchAPI.connect(self.urls[0], clientIndex: 2)
        let page = try await check.call(.GET, path, token: users[0].token)
        try check.expect(200, page, "history")
        guard (page.json["messages"] as? [Any])?.count == 50 else { throw BenchError("history: expected a page of 50 messages") }
        await check.close()

        let reads = try await closedLoop(clients: self.readers, urls: self.urls, duration: self.duration, progress: progress, label: "reading") { api, index in
            try await api.call(.GET, path, token: users[index % 2].token).status == 200
        }
        let summary = reads.latency.summary
        var report = BenchReport(scenario: "history")
        report.parameters = [("messages", .count(self.messages)), ("readers", .count(self.readers)), ("page", .count(50)), ("duration_s", .number(self.duration.seconds, ""))]
        report.results = [
            ("requests", .count(Int(summary.count))),
            ("requests_per_s", .rate(reads.rate)),
            ("failed_requests", .count(reads.failed)),
            ("seed_sends_per_s", .rate(Double(self.messages) / seedTime.seconds)),
        ]
        report.latencies = [("latest_page", summary)]
        if reads.failed > 0 { report.failures.append("\(reads.failed) history requests failed") }
        return report
    }
}
