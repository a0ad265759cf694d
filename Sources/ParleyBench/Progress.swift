import Foundation
import Synchronization

/// The progress line on stderr (rewritten in place on a terminal, at most
/// once a second otherwise).
final class Progress: Sendable {
    private struct State {
        var counts: [String: Int] = [:]
        var lastPrint = ContinuousClock.now - .seconds(10)
    }

    private let state = Mutex(State())
    private let interactive = isatty(STDERR_FILENO) != 0

    func step(_ label: String, total: Int) {
        let line: String? = self.state.withLock { state in
            state.counts[label, default: 0] += 1
            let count = state.counts[label]!
            let now = ContinuousClock.now
            guard count == total || now - state.lastPrint >= (self.interactive ? .milliseconds(200) : .seconds(1)) else { return nil }
            state.lastPrint = now
            return "\(label) \(count)/\(total)"
        }
        if let line { self.show(line) }
    }

    func show(_ line: String) {
        let text = self.interactive ? "\r\u{1B}[K" + line : line + "\n"
        FileHandle.standardError.write(Data(text.utf8))
    }

    func done() {
        if self.interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
