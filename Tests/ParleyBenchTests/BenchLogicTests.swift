import Foundation
import Testing

@testable import ParleyBench

@Suite struct FrameScannerTests {
    @Test func readsTheFieldsOfMessageAckAndErrorFrames() {
        let message = ScannedFrame(#"{"message":{"attachments":[],"body":"m1","chat_id":"c-1","client_id":"k-1","seq":42,"sender_id":"u"},"type":"message"}"#)
        #expect(message == {
            var frame = ScannedFrame("{}")
            frame.type = "message"
            frame.chatID = "c-1"
            frame.clientID = "k-1"
            frame.seq = 42
            return frame
        }())
        let ack = ScannedFrame(#"{"type": "ack", "ref": "7", "message": {"chat_id": "c-2", "seq": 3, "client_id": "k-2"}}"#)
        #expect(ack.type == "ack" && ack.chatID == "c-2" && ack.seq == 3 && ack.clientID == "k-2")
        let error = ScannedFrame(#"{"code":"rate_limited","detail":"slow down","ref":"9","type":"error"}"#)
        #expect(error.type == "error" && error.code == "rate_limited" && error.seq == nil)
    }

    @Test func missingOrMalformedFieldsAreNil() {
        #expect(ScannedFrame("").type == nil)
        #expect(ScannedFrame(#"{"type":"#).type == nil)
        #expect(ScannedFrame(#"{"seq":"x"}"#).seq == nil)
        #expect(ScannedFrame(#"{"type":"message","seq":}"#).seq == nil)
    }
}

@Suite struct DeliveryLedgerTests {
    @Test func inOrderDeliveriesOfAckedMessagesAreClean() {
        var ledger = DeliveryLedger()
        for seq in 1...3 {
            ledger.acknowledged(chat: "a", seq: Int64(seq))
            for connection in 0..<2 { ledger.received(connection: connection, chat: "a", seq: Int64(seq)) }
        }
        #expect(ledger.delivered == 6)
        #expect(ledger.duplicated == 0 && ledger.outOfOrder == 0)
        #expect(ledger.lost(members: ["a": [0, 1]]) == 0)
        // a member connection that got nothing lost all three
        #expect(ledger.lost(members: ["a": [0, 1, 2]]) == 3)
    }

    @Test func countsDuplicatesReorderingAndLoss() {
        var ledger = DeliveryLedger()
        for seq in 1...5 { ledger.acknowledged(chat: "a", seq: Int64(seq)) }
        ledger.received(connection: 0, chat: "a", seq: 1)
        ledger.received(connection: 0, chat: "a", seq: 1)  // duplicate
        ledger.received(connection: 0, chat: "a", seq: 3)  // out of order: 2 skipped
        ledger.received(connection: 0, chat: "a", seq: 2)  // the late one: not a duplicate
        ledger.received(connection: 0, chat: "a", seq: 2)  // now it is
        ledger.received(connection: 0, chat: "a", seq: 5)  // 4 skipped and never comes
        #expect(ledger.duplicated == 2)
        #expect(ledger.outOfOrder == 2)
        #expect(ledger.delivered == 4)
        #expect(ledger.lost(members: ["a": [0]]) == 1)
        // unacknowledged messages are not counted as lost
        var unacked = DeliveryLedger()
        unacked.received(connection: 0, chat: "b", seq: 1)
        #expect(unacked.lost(members: ["b": [0, 1]]) == 0)
    }
}

@Suite struct BenchReportTests {
    @Test func latencyPercentilesComeFromTheHistogram() {
        var latency = Latency()
        for ms in 1...100 { latency.record(.milliseconds(ms)) }
        let summary = latency.summary
        #expect(summary.count == 100)
        #expect(abs(summary.p50 - 50) < 0.1)
        #expect(abs(summary.p99 - 99) < 0.1)
        #expect(abs(summary.max - 100) < 0.1)
        #expect(Latency().summary.count == 0)
    }

    @Test func jsonAndTableCarryResultsAndFailures() throws {
        var report = BenchReport(scenario: "fanout")
        report.parameters = [("rate", .rate(1000))]
        report.results = [("lost", .count(2)), ("acked_per_s", .rate(1999.94))]
        var latency = Latency()
        latency.record(.milliseconds(3))
        report.latencies = [("send_to_ack", latency.summary)]
        report.failures = ["2 acknowledged deliveries lost"]
        let object = try #require(try JSONSerialization.jsonObject(with: report.json()) as? [String: Any])
        #expect(object["passed"] as? Bool == false)
        #expect((object["results"] as? [String: Any])?["lost"] as? Int == 2)
        #expect(((object["latency_ms"] as? [String: Any])?["send_to_ack"] as? [String: Any])?["p99_9"] as? Double == 3)
        let table = report.table()
        #expect(table.contains("1,999.94/s") == false && table.contains("2,000/s"))
        #expect(table.contains("FAILED: 2 acknowledged deliveries lost"))
    }

    @Test func signInCodesAreReadFromBase64Mails() {
        let text = Data("Your Parley sign-in code is 123456.\n\nIt works once.".utf8).base64EncodedString()
        let mail = [
            "From: Parley <noreply@parley.example>", "To: <Ann@Example.com>", "Subject: Your Parley sign-in code",
            "Content-Type: multipart/alternative; boundary=\"b1\"", "", "--b1", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64", "", text, "", "--b1--", "",
        ].joined(separator: "\r\n")
        #expect(LoginScenario.code(in: mail).map { [$0.0, $0.1] } == ["ann@example.com", "123456"])
        #expect(LoginScenario.code(in: "To: x@y.z\r\n\r\nhello") == nil)
    }
}

@Suite struct ProcessCPUTests {
    @Test func theAckedRateIsCountedOverTheSendingTimeUnlessAcksFellBehind() {
        // a server that keeps up: the last ack comes one ordinary latency after the last send
        #expect(abs(FanoutScenario.ackWindow(duration: .seconds(3), lastAck: .milliseconds(3080), medianAckLatency: .milliseconds(60)) - 3.02) < 1e-9)
        #expect(FanoutScenario.ackWindow(duration: .seconds(3), lastAck: .milliseconds(2990), medianAckLatency: .milliseconds(60)) == 3)
        // a server that fell 2 s behind: the window grows, the rate falls
        #expect(abs(FanoutScenario.ackWindow(duration: .seconds(30), lastAck: .seconds(32), medianAckLatency: .milliseconds(50)) - 31.95) < 1e-9)
    }

    @Test func watchedProcessesAreNamedWithOrWithoutChildren() throws {
        let gateway = try #require(WatchedProcess("gateway-1=1234"))
        #expect(gateway.name == "gateway-1" && gateway.pid == 1234 && !gateway.children)
        let postgres = try #require(WatchedProcess("postgres+=99"))
        #expect(postgres.name == "postgres" && postgres.pid == 99 && postgres.children)
        for bad in ["", "x", "=1", "+=1", "name=pid"] { #expect(WatchedProcess(bad) == nil, "\(bad)") }
    }

    @Test func cpuTimeOfThisProcessGrowsWhileItWorks() {
        let me = getpid()
        let before = ProcessCPU.seconds(me, children: true)
        var x = 0.0
        let start = Date()
        while Date().timeIntervalSince(start) < 0.3 { x += sin(x + 1) }
        #expect(x != 1)
        #expect(ProcessCPU.seconds(me, children: true) - before >= 0.1)
    }
}
