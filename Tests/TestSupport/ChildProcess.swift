import Foundation

/// A child process with captured output, for tests that run real binaries.
///
/// Spawned with `posix_spawn` and an empty signal mask with default
/// dispositions: Foundation's `Process` on Linux lets the child inherit the
/// spawning thread's mask, in which SIGTERM and SIGINT are blocked, so a
/// graceful-shutdown test would never see its signal arrive.
public final class ChildProcess: @unchecked Sendable {
    public let name: String
    private let executable: String
    private let arguments: [String]
    private let environment: [String: String]
    private let lock = NSLock()
    private var captured = Data()
    private var exitStatus: Int32?
    public private(set) var pid: pid_t = 0

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], inheritEnvironment: Bool = true, name: String? = nil) {
        self.name = name ?? URL(fileURLWithPath: executable).lastPathComponent
        self.executable = executable
        self.arguments = arguments
        var env = inheritEnvironment ? ProcessInfo.processInfo.environment : [:]
        env.merge(environment) { $1 }
        self.environment = env
    }

    public func start() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw POSIXError(.EMFILE) }
        let (readEnd, writeEnd) = (fds[0], fds[1])

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        posix_spawn_file_actions_addclose(&actions, readEnd)
        posix_spawn_file_actions_addclose(&actions, writeEnd)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let argv = ([self.executable] + self.arguments).map { strdup($0) } + [nil]
        let envp = self.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, self.executable, &actions, &attributes, argv, envp)
        close(writeEnd)
        guard rc == 0 else {
            close(readEnd)
            throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .ENOENT)
        }
        self.pid = pid

        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(readEnd, &buffer, buffer.count)
                if n <= 0 { break }
                self.lock.lock()
                self.captured.append(contentsOf: buffer[0..<n])
                self.lock.unlock()
            }
            close(readEnd)
        }
        let childPID = pid
        Thread.detachNewThread { [self] in
            var status: Int32 = 0
            while waitpid(childPID, &status, 0) == -1 && errno == EINTR {}
            // WIFEXITED / WEXITSTATUS, else 128 + signal number, as a shell reports it
            let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
            self.lock.lock()
            self.exitStatus = code
            self.lock.unlock()
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    public var outputText: String {
        self.lock.lock()
        defer { self.lock.unlock() }
        return String(decoding: self.captured, as: UTF8.self)
    }

    public var isRunning: Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.pid != 0 && self.exitStatus == nil
    }

    public func signal(_ signal: Int32) {
        if self.isRunning { kill(self.pid, signal) }
    }

    /// Waits for the exit and returns its status (128 + n for signal n);
    /// kills the process after `timeout`.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(30)) async -> Int32 {
        let deadline = ContinuousClock.now + timeout
        var killed = false
        while self.isRunning {
            if !killed && ContinuousClock.now > deadline {
                self.signal(SIGKILL)
                killed = true
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        try? await Task.sleep(for: .milliseconds(30))  // let the last output arrive
        return self.status ?? -1
    }

    /// The exit status once the process has ended.
    public var status: Int32? {
        self.lock.withLock { self.exitStatus }
    }

    /// Runs to completion and returns (status, output).
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], inheritEnvironment: Bool = true, timeout: Duration = .seconds(60)) async throws -> (status: Int32, output: String) {
        let child = ChildProcess(executable, arguments, environment: environment, inheritEnvironment: inheritEnvironment)
        try child.start()
        let status = await child.waitForExit(timeout: timeout)
        return (status, child.outputText)
    }

    deinit {
        if self.isRunning { kill(self.pid, SIGKILL) }
    }
}
