// The realtime connection (/v1/ws, PROTOCOL.md "WebSocket"): hello with
// the access token and the last seq seen per chat, so that whatever was
// missed while disconnected is replayed in order; reconnects with backoff
// after a drop, a gateway restart (1012) or a slow-reader close (4008), and
// refreshes the token first after a 4001.

export class Live {
  /**
   * api: the Api (tokens); resume(): {chat_id: last seq seen};
   * onFrame(frame): every server frame but ready/ack/error-with-ref/pong;
   * onState(state, detail): "connecting" | "open" | "reconnecting" | "stopped".
   */
  constructor(api, { resume, onFrame, onState, onReady }) {
    this.api = api;
    this.resume = resume;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onReady = onReady;
    this.socket = null;
    this.state = "stopped";
    this.attempt = 0;
    this.waiting = new Map(); // ref → {resolve, reject, timer}
    this.nextRef = 1;
    this.retryTimer = null;
    this.pingTimer = null;
  }

  start() {
    if (this.state !== "stopped") return;
    this.connect();
  }

  stop() {
    this.setState("stopped");
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, "bye");
    }
    this.failWaiting("stopped");
  }

  setState(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  connect() {
    clearTimeout(this.retryTimer);
    const token = this.api.accessToken;
    if (!token) return this.setState("stopped");
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting", this.attempt);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/v1/ws`);
    this.socket = socket;
    this.socketToken = token;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "hello", token, resume: this.resume() }));
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      this.lastHeard = Date.now();
      this.handle(frame);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      clearInterval(this.pingTimer);
      this.failWaiting("disconnected");
      if (this.state === "stopped") return;
      this.closed(event.code);
    };
  }

  async closed(code) {
    this.attempt += 1;
    this.setState("reconnecting", this.attempt);
    if (code === 4001 && this.api.accessToken === this.socketToken) {
      // the token expired or the session ended: a refresh tells which (a
      // refused one signs the page out; a failed one is tried again below)
      try { await this.api.refresh(); } catch { if (!this.api.accessToken) return this.stop(); }
    }
    if (this.state === "stopped") return;
    // 0.5 s, 1 s, 2 s … up to 5 s, with jitter; at once after a restart notice
    const base = code === 1012 && this.attempt === 1 ? 100 : Math.min(5000, 500 * 2 ** (this.attempt - 1));
    this.retryTimer = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2);
  }

  handle(frame) {
    if (frame.type === "ready") {
      this.attempt = 0;
      this.setState("open");
      // a JSON ping every 20 s: a connection lost without a close (a dropped
      // network) is noticed within 30 s instead of when TCP gives up
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.checkAlive(), 20_000);
      this.onReady(frame);
      return;
    }
    if (frame.ref && this.waiting.has(frame.ref)) {
      const waiter = this.waiting.get(frame.ref);
      this.waiting.delete(frame.ref);
      clearTimeout(waiter.timer);
      if (frame.type === "error") waiter.reject(Object.assign(new Error(frame.detail || frame.code), { code: frame.code }));
      else waiter.resolve(frame);
      return;
    }
    if (frame.type === "pong") return;
    this.onFrame(frame);
  }

  checkAlive() {
    const socket = this.socket;
    if (!socket || this.state !== "open") return;
    this.request({ type: "ping" }, 10_000).catch(() => {
      if (socket !== this.socket) return;
      this.socket = null;
      socket.close(4000, "no pong");
      clearInterval(this.pingTimer);
      this.failWaiting("disconnected");
      this.closed(1006);
    });
  }

  /** Sends a frame without waiting for a reply; false when not connected. */
  send(frame) {
    if (!this.socket || this.state !== "open") return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame with a ref and resolves with the reply (ack, pong). */
  request(frame, timeout = 15_000) {
    return new Promise((resolve, reject) => {
      const ref = "r" + this.nextRef++;
      if (!this.send({ ...frame, ref })) return reject(Object.assign(new Error("not connected"), { code: "disconnected" }));
      const timer = setTimeout(() => {
        this.waiting.delete(ref);
        reject(Object.assign(new Error("no answer"), { code: "timeout" }));
      }, timeout);
      this.waiting.set(ref, { resolve, reject, timer });
    });
  }

  failWaiting(code) {
    for (const waiter of this.waiting.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(Object.assign(new Error(code), { code }));
    }
    this.waiting.clear();
  }
}
