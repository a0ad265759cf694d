import Foundation

/// CPU time used by processes, read from /proc: a process and, optionally,
/// its children (a PostgreSQL server is its postmaster and one backend per
/// connection), living and exited.
struct ProcessCPU {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// (utime + stime + cutime + cstime, ppid) of one process, in clock ticks.
    static func stat(_ pid: Int32) -> (ticks: Int64, ppid: Int32)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        // after the command (which may hold spaces): state, ppid, …; utime is field 14
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 14, let ppid = Int32(fields[1]) else { return nil }
        let ticks = fields[11...14].compactMap { Int64($0) }.reduce(0, +)
        return (ticks, ppid)
    }

    /// Seconds of CPU the process used so far, with its children if asked.
    static func seconds(_ pid: Int32, children: Bool) -> Double {
        var total = Self.stat(pid)?.ticks ?? 0
        if children, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
            for entry in entries {
                guard let child = Int32(entry), child != pid, let stat = Self.stat(child), stat.ppid == pid else { continue }
                total += stat.ticks
            }
        }
        return Double(total) / Self.ticksPerSecond
    }
}

/// A process whose CPU a scenario reports (`--cpu NAME=PID`, `NAME+=PID` with its children).
public struct WatchedProcess: Sendable, Hashable {
    public var name: String
    public var pid: Int32
    public var children: Bool

    /// `gateway-1=1234`, or `postgres+=1200` for a process with its children.
    public init?(_ text: String) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let pid = Int32(parts[1]), !parts[0].isEmpty else { return nil }
        self.children = parts[0].hasSuffix("+")
        self.name = self.children ? String(parts[0].dropLast()) : parts[0]
        self.pid = pid
        guard !self.name.isEmpty else { return nil }
    }

    var seconds: Double { ProcessCPU.seconds(self.pid, children: self.children) }

    /// Whether /proc has the process.
    public var isRunning: Bool { ProcessCPU.stat(self.pid) != nil }
}
