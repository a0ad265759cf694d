import DequeModule
import Foundation

/// What one WebSocket's client frames do, decided without any I/O: the
/// handler (`WebSocketConnectionHandler`) feeds it what happened and carries
/// out the actions it returns.
///
/// Phases: awaiting hello → authenticating → live → closing. Frames that
/// arrive while a hello is being checked, or while an earlier frame is being
/// acted on (a send waits for its commit), wait in a short inbox, in order;
/// past `inboxLimit` the handler stops reading from the socket (TCP pushes
/// back on the client) until the inbox has room again. Frames already read
/// still arrive after the pause (one read can hold many): the inbox holds
/// them up to `inboxBytes`. Frames are counted against the rate limit when
/// they are acted on: one the server could act on at once and that is over
/// the limit closes the socket (1008); one that had to wait (behind a send,
/// or in the kernel while reading was paused) is paced instead, so that a
/// client whose frames piled up while the server was slow is not closed for
/// it. Once closing, no client frame is acted on.
struct SocketMachine {
    enum Phase: Equatable {
        case awaitingHello
        case authenticating
        case live
        case closing
    }

    /// A complete client message (fragments already joined).
    enum Input: Equatable {
        case text(String)
        case binary
    }

    enum Action {
        /// Check the hello's token (or the upgrade's), then `authenticated()`.
        case authenticate(token: String?, resume: [UUID: Int64])
        /// Act on a frame (send, typing, read), then `performed(_:)`.
        case perform(ClientFrame)
        /// A frame for this socket (error, pong), after what is queued.
        case reply(String)
        /// Close with this code; `afterQueued`: after the frames already queued.
        case close(UInt16, String, afterQueued: Bool)
        case pauseReading
        case resumeReading
        /// Frames wait for the rate limit: call `paced()` after this long.
        case drainLater(Duration)
    }

    /// How acting on a frame ended.
    enum Outcome {
        case done
        /// The client's mistake: an error frame, counted towards the bad-frame limit.
        case rejected(ref: String?, code: String, detail: String)
        /// Ours (a dependency is down): an error frame, not counted.
        case failed(ref: String?, code: String, detail: String)
    }

    private(set) var phase = Phase.awaitingHello
    /// Frames not acted on yet; `waited`: it arrived while another was
    /// being acted on or waiting (the server, not the client, held it back).
    private var inbox = Deque<(input: Input, waited: Bool)>()
    /// What the inbox holds, counted as `cost(of:)`.
    private var inboxCost = 0
    /// A frame is being acted on (`perform`) or the hello checked.
    private var busy = false
    private var paused = false
    /// Frames wait for a token (`drainLater`).
    private var pacing = false
    private var frames: TokenBucket
    private var typing: TokenBucket
    private var badFrames: Deque<ContinuousClock.Instant> = []
    let limits: RealtimeLimits
    /// Frames that wait while one is acted on, before reading pauses.
    static let inboxLimit = 16
    /// What may wait in the inbox, counted as `cost(of:)`: the frames that
    /// paused reading and what the reads under way then held (NIO reads up to
    /// `ConnectionReads.perWakeUp` times per wake-up, at most 64 KiB each),
    /// about 19 frames of the largest size. More is not a slow server's
    /// backlog but a flood: 1008.
    var inboxBytes: Int { (Self.inboxLimit + Int(ConnectionReads.perWakeUp)) * max(self.limits.frameBytes, ConnectionReads.bytes) }
    /// A frame's share of the inbox: its bytes and the bookkeeping around them.
    private static func cost(of input: Input) -> Int {
        if case .text(let text) = input { return text.utf8.count + 64 }
        return 64
    }

    init(limits: RealtimeLimits, now: ContinuousClock.Instant = .now) {
        self.limits = limits
        self.frames = TokenBucket(capacity: limits.framesPerSecond, perSecond: limits.framesPerSecond, now: now)
        self.typing = TokenBucket(capacity: limits.typingPerSecond, perSecond: limits.typingPerSecond, now: now)
    }

    /// A client message arrived.
    mutating func received(_ input: Input, now: ContinuousClock.Instant = .now) -> [Action] {
        switch self.phase {
        case .closing:
            return []
        case .awaitingHello:
            self.phase = .authenticating
            self.busy = true
            guard case .text(let text) = input else { return self.refuseHello(nil) }
            do {
                guard case .hello(let token, let resume) = try ClientFrame.parse(text) else { return self.refuseHello(nil) }
                return [.authenticate(token: token, resume: resume)]
            } catch {
                return self.refuseHello(ServerFrame.error(ref: error.ref, code: error.code, detail: error.detail))
            }
        case .authenticating, .live:
            self.inbox.append((input, waited: self.busy || self.pacing || !self.inbox.isEmpty))
            self.inboxCost += Self.cost(of: input)
            // reading pauses at `inboxLimit`, but what was read already keeps coming
            if self.inboxCost > self.inboxBytes {
                self.phase = .closing
                self.emptyInbox()
                return [.close(1008, "too many frames waiting to be acted on", afterQueued: true)]
            }
            return self.drain(now: now)
        }
    }

    private mutating func refuseHello(_ error: String?) -> [Action] {
        self.phase = .closing
        return (error.map { [Action.reply($0)] } ?? []) + [.close(4001, "the first frame must be hello", afterQueued: error != nil)]
    }

    /// No hello arrived in time.
    mutating func helloTimedOut() -> [Action] {
        guard self.phase == .awaitingHello else { return [] }
        self.phase = .closing
        return [.close(4001, "no hello within \(self.limits.helloTimeout)", afterQueued: false)]
    }

    /// The hello was accepted: frames that came meanwhile are acted on now.
    mutating func authenticated(now: ContinuousClock.Instant = .now) -> [Action] {
        guard self.phase == .authenticating else { return [] }
        self.phase = .live
        self.busy = false
        return self.drain(now: now)
    }

    /// The frame handed out with `perform` has been acted on.
    mutating func performed(_ outcome: Outcome, now: ContinuousClock.Instant = .now) -> [Action] {
        self.busy = false
        guard self.phase == .live else { return [] }
        var actions: [Action] = []
        switch outcome {
        case .done:
            break
        case .rejected(let ref, let code, let detail):
            actions += self.reject(ref: ref, code: code, detail: detail, now: now)
        case .failed(let ref, let code, let detail):
            actions.append(.reply(ServerFrame.error(ref: ref, code: code, detail: detail)))
        }
        return actions + self.drain(now: now)
    }

    /// The server decided to close (here or elsewhere): nothing more is acted on.
    mutating func closeDecided() -> [Action] {
        self.phase = .closing
        self.emptyInbox()
        guard self.paused else { return [] }
        self.paused = false
        return [.resumeReading]  // the client's close frame must still be read
    }

    /// Acts on waiting frames until one needs I/O (or none is left).
    private mutating func drain(now: ContinuousClock.Instant) -> [Action] {
        var actions: [Action] = []
        while self.phase == .live, !self.busy, !self.pacing, let entry = self.inbox.popFirst() {
            self.inboxCost -= Self.cost(of: entry.input)
            guard self.frames.take(now: now) else {
                if entry.waited {
                    // held back by the server: acted on when the budget allows
                    self.inbox.prepend(entry)
                    self.inboxCost += Self.cost(of: entry.input)
                    self.pacing = true
                    actions.append(.drainLater(self.frames.untilNextToken))
                    break
                }
                self.phase = .closing
                actions.append(.close(1008, "too many frames (at most \(self.limits.framesPerSecond) a second)", afterQueued: true))
                break
            }
            actions += self.evaluate(entry.input, now: now)
        }
        if self.phase == .closing { self.emptyInbox() }
        if !self.paused && self.inbox.count >= Self.inboxLimit {
            self.paused = true
            actions.append(.pauseReading)
        } else if self.paused && self.inbox.count < Self.inboxLimit / 2 {
            self.paused = false
            actions.append(.resumeReading)
        }
        return actions
    }

    /// The time asked for by `drainLater` has passed: waiting frames go on.
    mutating func paced(now: ContinuousClock.Instant = .now) -> [Action] {
        self.pacing = false
        return self.drain(now: now)
    }

    /// Acts on one frame (its token already taken).
    private mutating func evaluate(_ input: Input, now: ContinuousClock.Instant) -> [Action] {
        guard case .text(let text) = input else {
            return self.reject(ref: nil, code: "invalid_frame", detail: "frames are JSON text", now: now)
        }
        let frame: ClientFrame
        do {
            frame = try ClientFrame.parse(text)
        } catch {
            return self.reject(ref: error.ref, code: error.code, detail: error.detail, now: now)
        }
        switch frame {
        case .hello:
            return self.reject(ref: nil, code: "invalid_frame", detail: "hello was already received", now: now)
        case .ping(let ref):
            var pong: [String: Any] = ["type": "pong"]
            if let ref { pong["ref"] = ref }
            return [.reply(ServerFrame.json(pong))]
        case .typing where !self.typing.take(now: now):
            return [.reply(ServerFrame.error(ref: frame.ref, code: "rate_limited", detail: "at most \(self.limits.typingPerSecond) typing frames a second"))]
        case .send, .typing, .read:
            self.busy = true
            return [.perform(frame)]
        }
    }

    private mutating func emptyInbox() {
        self.inbox.removeAll()
        self.inboxCost = 0
    }

    /// Answers a bad frame with an error frame; too many in a minute close the connection (1008).
    private mutating func reject(ref: String?, code: String, detail: String, now: ContinuousClock.Instant) -> [Action] {
        var actions: [Action] = [.reply(ServerFrame.error(ref: ref, code: code, detail: detail))]
        while let first = self.badFrames.first, now - first >= .seconds(60) { self.badFrames.removeFirst() }
        self.badFrames.append(now)
        if self.badFrames.count > self.limits.badFramesPerMinute {
            self.phase = .closing
            self.emptyInbox()
            actions.append(.close(1008, "too many bad frames", afterQueued: true))
        }
        return actions
    }
}
