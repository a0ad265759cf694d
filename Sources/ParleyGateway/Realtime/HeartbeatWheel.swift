import NIOCore
import Synchronization

/// Which sockets beat on which tick: `slots` ticks per heartbeat period, a
/// socket beats when the wheel comes back to the slot it was added to, so
/// once a period, the sockets of a period spread over its ticks. Pure.
struct HeartbeatSlots<Member> {
    private(set) var slots: [[ObjectIdentifier: Member]]
    /// The slot the last tick beat (a socket added now waits a whole turn).
    private(set) var cursor = 0

    var count: Int { self.slots.reduce(0) { $0 + $1.count } }

    init(slots: Int) {
        precondition(slots > 0)
        self.slots = Array(repeating: [:], count: slots)
    }

    /// Adds a member; returns its slot (to remove it by).
    mutating func add(_ member: Member, id: ObjectIdentifier) -> Int {
        self.slots[self.cursor][id] = member
        return self.cursor
    }

    mutating func remove(_ id: ObjectIdentifier, slot: Int) {
        self.slots[slot][id] = nil
    }

    /// The next tick: the members whose turn it is.
    mutating func tick() -> [Member] {
        self.cursor = (self.cursor + 1) % self.slots.count
        return Array(self.slots[self.cursor].values)
    }
}

/// Every WebSocket's heartbeat on one timer per event loop, instead of a
/// repeated task per socket: NIO keeps scheduled tasks in one heap per loop
/// and cancels by a linear search of it, so with a timer per socket every
/// connect and close (their hello and head timeouts) scanned all the
/// loop's sockets, and every beat of every socket was a new scheduled task.
/// The timer runs while the loop has sockets.
final class HeartbeatWheel {
    static let slotsPerPeriod = 16

    private let loop: any EventLoop
    private let tick: TimeAmount
    private var slots = HeartbeatSlots<WebSocketConnectionHandler>(slots: HeartbeatWheel.slotsPerPeriod)
    private var timer: RepeatedTask?

    init(loop: any EventLoop, period: TimeAmount) {
        self.loop = loop
        self.tick = .nanoseconds(max(1, period.nanoseconds / Int64(Self.slotsPerPeriod)))
    }

    /// On the wheel's loop. Returns the socket's slot.
    func add(_ handler: WebSocketConnectionHandler) -> Int {
        self.loop.preconditionInEventLoop()
        let slot = self.slots.add(handler, id: ObjectIdentifier(handler))
        if self.timer == nil {
            let bound = NIOLoopBound(self, eventLoop: self.loop)
            self.timer = self.loop.scheduleRepeatedTask(initialDelay: self.tick, delay: self.tick) { _ in bound.value.beat() }
        }
        return slot
    }

    func remove(_ handler: WebSocketConnectionHandler, slot: Int) {
        self.loop.preconditionInEventLoop()
        self.slots.remove(ObjectIdentifier(handler), slot: slot)
        if self.slots.count == 0 {
            self.timer?.cancel()
            self.timer = nil
        }
    }

    private func beat() {
        for handler in self.slots.tick() { handler.beat() }
    }
}

/// The heartbeat wheels of one gateway, one per event loop its sockets live on.
final class HeartbeatWheels: Sendable {
    private let period: TimeAmount
    private let wheels = Mutex<[ObjectIdentifier: NIOLoopBound<HeartbeatWheel>]>([:])

    init(period: Duration) {
        self.period = TimeAmount(period)
    }

    /// The wheel of `loop` (call on that loop).
    func wheel(on loop: any EventLoop) -> HeartbeatWheel {
        self.wheels.withLock { wheels in
            if let wheel = wheels[ObjectIdentifier(loop)] { return wheel.value }
            let wheel = HeartbeatWheel(loop: loop, period: self.period)
            wheels[ObjectIdentifier(loop)] = NIOLoopBound(wheel, eventLoop: loop)
            return wheel
        }
    }
}
