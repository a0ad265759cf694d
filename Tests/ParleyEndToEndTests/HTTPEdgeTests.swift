import Foundation
import ParleyTestSupport
import Testing

/// What a client that holds connections without finishing requests gets:
/// the connection, dropped.
@Suite struct HTTPEdgeTests {
    @Test func slowHeadsAndIdleConnectionsAreDropped() async throws {
        let gateway = try GatewayProcess(
            databaseURL: try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"),
            environment: ["PARLEY_HTTP_HEAD_TIMEOUT_MS": "1000", "PARLEY_HTTP_IDLE_TIMEOUT_MS": "1500"], arguments: ["--no-migrate"]
        )
        try await gateway.waitUntilReady()

        // nothing at all
        let silent = try RawConnection(port: gateway.port)
        #expect(silent.closes(within: .seconds(4)), "a connection that sends nothing")

        // a head trickled a byte at a time, never finished (slowloris)
        let slow = try RawConnection(port: gateway.port)
        var closed = false
        for byte in Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "x"), count: 40) {
            guard (try? slow.write([byte])) != nil else {
                closed = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(closed || slow.closes(within: .seconds(3)), "a head that never completes")

        // a kept-alive connection: served, then closed once idle
        let kept = try RawConnection(port: gateway.port)
        try kept.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let head = try #require(try kept.readHead(timeout: .seconds(5)))
        #expect(head.hasPrefix("HTTP/1.1 200"))
        #expect(kept.closes(within: .seconds(5)), "an idle kept-alive connection")

        // and the gateway still serves everyone else
        #expect(try await HTTP.get("\(gateway.baseURL)/healthz").status == 200)
    }
}
