// REST client of the Parley API (docs/openapi.yaml): the session's tokens,
// refreshed before the access token expires, and one retry after a 401.
// The session lives in sessionStorage: one session per tab, kept across a
// reload (two tabs sharing one refresh token would spend it twice, and the
// server revokes a session whose refresh token is reused).

const STORAGE_KEY = "parley.session";

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || (status === 0 ? "network" : "http_" + status);
    this.retryAfter = retryAfter;
  }
}

export class Api {
  /** onSignedOut(reason): the session ended (logout, refresh refused). */
  constructor(onSignedOut) {
    this.onSignedOut = onSignedOut;
    this.session = null;
    this.generation = 0; // bumped when the session ends: a refresh in flight then changes nothing
    this.refreshing = null;
    this.refreshTimer = null;
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      if (saved && saved.refresh_token && saved.user) this.adopt(saved);
    } catch {
      sessionStorage.removeItem(STORAGE_KEY);
    }
  }

  get user() { return this.session?.user || null; }
  get accessToken() { return this.session?.access_token || null; }

  /** Keeps a Tokens answer (or a saved session) and plans its refresh. */
  adopt(tokens) {
    const expiresAt = tokens.expires_at || Date.now() + (tokens.expires_in || 900) * 1000;
    this.session = { access_token: tokens.access_token, refresh_token: tokens.refresh_token, user: tokens.user, expires_at: expiresAt };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this.session));
    clearTimeout(this.refreshTimer);
    // a minute before expiry (at once when a reloaded page finds it nearly spent)
    const delay = Math.max(0, expiresAt - Date.now() - 60_000);
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => {}), delay);
  }

  forget(reason) {
    const had = this.session !== null;
    this.session = null;
    this.generation += 1;
    clearTimeout(this.refreshTimer);
    sessionStorage.removeItem(STORAGE_KEY);
    sessionStorage.removeItem("parley.pending");
    if (had) this.onSignedOut(reason);
  }

  /** One refresh at a time; a 401 ends the session. */
  refresh() {
    if (!this.session) return Promise.reject(new ApiError(401, { code: "signed_out", detail: "signed out" }));
    if (!this.refreshing) {
      const token = this.session.refresh_token;
      const generation = this.generation;
      this.refreshing = this.request("POST", "/v1/auth/refresh", { json: { refresh_token: token }, auth: false })
        .then((tokens) => {
          // signed out meanwhile: the new tokens are not kept
          if (generation !== this.generation) throw new ApiError(401, { code: "signed_out", detail: "signed out" });
          this.adopt(tokens);
          return tokens;
        })
        .catch((error) => {
          if (error.status === 401 && generation === this.generation) this.forget(error.code === "token_reused" ? "This session was ended because its refresh token was used twice. Sign in again." : "Your session has ended. Sign in again.");
          throw error;
        })
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  /**
   * One request. json: a body to send as JSON; body + contentType: raw
   * bytes; blob: answer with the body as a Blob. Answers the parsed JSON,
   * or null for 204.
   */
  async request(method, path, { json, body, contentType, auth = true, blob = false, retried = false } = {}) {
    const headers = {};
    if (auth) {
      if (this.refreshing) await this.refreshing.catch(() => {});
      if (!this.session) throw new ApiError(401, { code: "signed_out", detail: "signed out" });
      headers.Authorization = "Bearer " + this.session.access_token;
    }
    const used = this.session?.access_token;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (contentType) {
      headers["Content-Type"] = contentType;
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body, cache: "no-store" });
    } catch {
      throw new ApiError(0, { code: "network", detail: "the server cannot be reached; check your connection" });
    }
    if (response.ok) {
      if (blob) return response.blob();
      if (response.status === 204) return null;
      const type = response.headers.get("Content-Type") || "";
      return type.includes("json") ? response.json() : response.text();
    }
    let problem = null;
    try { problem = await response.json(); } catch { /* not JSON */ }
    if (response.status === 401 && auth && !retried && this.session) {
      // refreshed by another request meanwhile: just try again with the new token
      if (this.session.access_token === used) await this.refresh();
      return this.request(method, path, { json, body: json === undefined ? body : undefined, contentType, auth, blob, retried: true });
    }
    throw new ApiError(response.status, problem, Number(response.headers.get("Retry-After")) || undefined);
  }

  get(path) { return this.request("GET", path); }
  post(path, json) { return this.request("POST", path, { json }); }
  patch(path, json) { return this.request("PATCH", path, { json }); }
  put(path) { return this.request("PUT", path); }
  delete(path) { return this.request("DELETE", path); }

  async register(email, password, displayName) {
    this.adopt(await this.request("POST", "/v1/auth/register", { json: { email, password, display_name: displayName }, auth: false }));
  }

  async login(email, password) {
    this.adopt(await this.request("POST", "/v1/auth/login", { json: { email, password }, auth: false }));
  }

  requestCode(email) {
    return this.request("POST", "/v1/auth/otp/request", { json: { email }, auth: false });
  }

  async verifyCode(email, code) {
    this.adopt(await this.request("POST", "/v1/auth/otp/verify", { json: { email, code }, auth: false }));
  }

  async logout() {
    if (this.refreshing) await this.refreshing.catch(() => {});
    const token = this.session?.refresh_token;
    try {
      if (token) await this.request("POST", "/v1/auth/logout", { json: { refresh_token: token }, auth: false });
    } finally {
      this.forget(null);
    }
  }

  /** Uploads a File; answers {id, content_type, size, sha256}. */
  upload(file) {
    return this.request("POST", "/v1/attachments", { body: file, contentType: file.type || "application/octet-stream" });
  }
}
