// Parley's web client: sign-in, the chat list, a chat with its history,
// sending with resend after a reconnect, typing, receipts, presence,
// attachments, groups. Plain ES modules, no build step, nothing from
// elsewhere; every text from the server goes into the page as text, never
// as markup.

import { Api, ApiError } from "./api.js";
import { Live } from "./live.js";
import { disablePush, enablePush, pushState } from "./push.js";

// ---------------------------------------------------------------- helpers

/** h("button", {class, text, onclick, …attributes}, …children) */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "text") element.textContent = value;
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "value") element.value = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const root = document.getElementById("root");
const banner = document.getElementById("banner");
const toasts = document.getElementById("toasts");

function toast(message, kind = "error") {
  if (kind === "error") console.warn("parley:", message);
  const item = h("div", { class: "toast " + kind, role: kind === "error" ? "alert" : "status", text: message });
  toasts.append(item);
  setTimeout(() => item.remove(), 6000);
}

function explain(error) {
  if (error instanceof ApiError && error.status === 429) return `${error.message} (try again in ${error.retryAfter || "a few"} s)`;
  return error?.message || String(error);
}

function time(iso) {
  const date = new Date(iso);
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  return sameDay ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : date.toLocaleDateString([], { month: "short", day: "numeric" });
}

function size(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
  return (bytes / 1024 / 1024).toFixed(1) + " MB";
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const idPattern = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

// ---------------------------------------------------------------- state

let config = { environment: "production", mail_hint: null };
const api = new Api((reason) => {
  live?.stop();
  live = null;
  resetState();
  renderAuth(reason);
});
let live = null;

const state = {};
function resetState() {
  for (const url of state.blobs?.values() || []) url.then((u) => URL.revokeObjectURL(u)).catch(() => {});
  Object.assign(state, {
    me: null,
    chats: new Map(), // id → Chat
    lastSeq: new Map(), // chat id → highest seq received with nothing missing before it
    messages: new Map(), // chat id → {bySeq: Map, hasMore, loading}
    pending: new Map(), // client_id → an unacknowledged send
    users: new Map(), // id → User
    lookups: new Map(), // user id → Promise (names being fetched)
    details: new Map(), // chat id → members [{user, role, last_read_seq}]
    online: new Set(),
    blocked: null, // ids of the users we blocked (null: not read yet)
    typing: new Map(), // chat id → Map(user id → expiry)
    filling: new Map(), // chat id → Promise (a gap being filled)
    highest: new Map(), // chat id → the highest seq the socket brought (a fill goes up to it)
    resyncing: new Set(), // chats being reloaded after a resync (their live messages wait)
    readTimer: null,
    lastReadAt: 0,
    readyOnce: false,
    blobs: new Map(), // attachment id → Promise<object URL>
    open: null, // the open chat's id
    panel: null, // "new" | "details" | null
    replyTo: null,
    editing: null,
    staged: [], // uploaded attachments for the next send
    typingSent: 0, // when the last start went out (0: not typing)
    typingFrameAt: 0,
    typingTimer: null,
  });
}
resetState();

function remember(user) {
  if (user?.id) state.users.set(user.id, user);
}

function nameOf(userID) {
  if (userID === state.me?.id) return "You";
  const user = state.users.get(userID);
  if (user) return user.display_name;
  if (!state.lookups.has(userID)) {
    state.lookups.set(userID, api.get(`/v1/users/${userID}`).then((found) => { remember(found); renderAll(); }).catch(() => {}));
  }
  return "…";
}

function chatTitle(chat) {
  if (chat.kind === "direct") return chat.peer?.display_name || "Direct chat";
  return chat.title || "Group";
}

function activity(chat) {
  return chat.last_message?.created_at || chat.created_at;
}

function messagesOf(chatID) {
  if (!state.messages.has(chatID)) state.messages.set(chatID, { bySeq: new Map(), hasMore: true, loading: false, loaded: false });
  return state.messages.get(chatID);
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    config = await (await fetch("/app/config.json", { cache: "no-store" })).json();
  } catch { /* defaults */ }
  if (api.user) enterApp();
  else renderAuth();
}

// ---------------------------------------------------------------- sign-in

function renderAuth(reason) {
  document.body.classList.remove("chat-open");
  banner.hidden = true;
  let mode = "signin"; // signin | register | code
  let codeSentTo = null;
  const view = h("section", { class: "auth", "aria-labelledby": "auth-title" });
  const draw = () => {
    view.replaceChildren(
      h("h1", { id: "auth-title", text: "Parley" }),
      reason ? h("p", { class: "notice", role: "status", text: reason }) : null,
      h("div", { class: "tabs", role: "tablist" },
        tab("signin", "Sign in"), tab("register", "Create account"), tab("code", "Email code")),
      mode === "code" ? codeForm() : passwordForm(),
    );
    view.querySelector("input")?.focus();
  };
  const tab = (name, label) => h("button", {
    type: "button", role: "tab", class: "tab", "aria-selected": String(mode === name), text: label, id: "tab-" + name,
    onclick: () => { mode = name; reason = null; draw(); },
  });
  const failure = h("p", { class: "error", role: "alert" });
  const passwordForm = () => {
    const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email", id: "auth-email" });
    const password = h("input", { type: "password", name: "password", required: true, minlength: 8, maxlength: 256, id: "auth-password",
      autocomplete: mode === "register" ? "new-password" : "current-password" });
    const name = h("input", { type: "text", name: "display_name", required: true, maxlength: 64, id: "auth-name", autocomplete: "nickname" });
    return h("form", {
      class: "card", onsubmit: async (event) => {
        event.preventDefault();
        failure.textContent = "";
        const button = event.submitter;
        if (button) button.disabled = true;
        try {
          if (mode === "register") await api.register(email.value, password.value, name.value);
          else await api.login(email.value, password.value);
          enterApp();
        } catch (error) {
          failure.textContent = explain(error);
        } finally {
          if (button) button.disabled = false;
        }
      },
    },
    h("label", { for: "auth-email", text: "Email" }), email,
    mode === "register" ? [h("label", { for: "auth-name", text: "Display name" }), name] : null,
    h("label", { for: "auth-password", text: "Password" }), password,
    h("button", { type: "submit", class: "primary", id: "auth-submit", text: mode === "register" ? "Create account" : "Sign in" }),
    failure);
  };
  const codeForm = () => {
    const email = h("input", { type: "email", required: true, autocomplete: "email", id: "code-email", value: codeSentTo || "" });
    const code = h("input", { type: "text", inputmode: "numeric", pattern: "[0-9]{6}", maxlength: 6, autocomplete: "one-time-code", id: "code-code" });
    const hint = codeSentTo
      ? h("p", { class: "notice", role: "status" }, `A 6-digit code is on its way to ${codeSentTo}.`, config.mail_hint ? [" ", h("strong", { text: config.mail_hint })] : null)
      : h("p", { class: "muted", text: "We email you a 6-digit code; no password needed. New addresses get an account." });
    return h("form", {
      class: "card", onsubmit: async (event) => {
        event.preventDefault();
        failure.textContent = "";
        try {
          if (!codeSentTo || email.value.trim().toLowerCase() !== codeSentTo) {
            await api.requestCode(email.value);
            codeSentTo = email.value.trim().toLowerCase();
            draw();
            view.querySelector("#code-code")?.focus();
          } else {
            await api.verifyCode(codeSentTo, code.value.trim());
            enterApp();
          }
        } catch (error) {
          failure.textContent = explain(error);
        }
      },
    },
    h("label", { for: "code-email", text: "Email" }), email,
    codeSentTo ? [h("label", { for: "code-code", text: "Code" }), code] : null,
    hint,
    h("button", { type: "submit", class: "primary", id: "code-submit", text: codeSentTo ? "Sign in" : "Email me a code" }),
    codeSentTo ? h("button", { type: "button", class: "link", text: "Send a new code", onclick: async () => {
      try { await api.requestCode(codeSentTo); toast("A new code is on its way.", "info"); } catch (error) { failure.textContent = explain(error); }
    } }) : null,
    failure);
  };
  draw();
  root.replaceChildren(view);
  view.querySelector("input")?.focus();
}

// ---------------------------------------------------------------- the app

async function enterApp() {
  resetState();
  state.me = api.user;
  remember(state.me);
  restorePending();
  renderShell();
  try {
    await loadChats();
  } catch (error) {
    toast("Could not load your chats: " + explain(error));
  }
  live = new Live(api, {
    resume: resumePositions,
    onFrame: handleFrame,
    onState: renderBanner,
    onReady: () => {
      // whatever was not acknowledged goes again, with the same client_id
      // (the server answers a repeat with the original message), paced
      // within the send limit
      [...state.pending.values()].filter((p) => p.status !== "failed").forEach((pending, index) => {
        setTimeout(() => { if (state.pending.has(pending.client_id)) deliver(pending); }, index * 150);
      });
      // membership changes are not replayed: after a reconnect the list is read again
      if (state.readyOnce) loadChats({ reconcile: true }).catch(() => {});
      state.readyOnce = true;
      loadPresence();
      markRead();
    },
  });
  live.start();
  route();
}

/** The last seq seen per chat, for hello: the 1,000 most recently active
 * chats (a frame stays far below 64 KiB); the others are brought up to
 * date by reading the chat list again after the reconnect. */
function resumePositions() {
  const chats = [...state.chats.values()].sort((a, b) => activity(b).localeCompare(activity(a))).slice(0, 1000);
  return Object.fromEntries(chats.map((chat) => [chat.id, state.lastSeq.get(chat.id) || 0]));
}

/** The chat list; with reconcile (after a reconnect), chats that are gone
 * are dropped and chats not resumed catch up with the server's figures. */
async function loadChats({ reconcile = false } = {}) {
  let cursor = null;
  const seen = new Set();
  for (let page = 0; page < 20; page++) {
    const answer = await api.get("/v1/chats?limit=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    for (const chat of answer.chats) {
      seen.add(chat.id);
      const known = state.chats.get(chat.id);
      if (!reconcile || !known) {
        upsertChat(chat);
      } else if (state.messages.get(chat.id)?.loaded || (state.lastSeq.get(chat.id) || 0) >= chat.last_seq) {
        // the socket keeps this chat current (its replay may still be
        // arriving): take the chat's own fields, keep the counters
        upsertChat({ ...chat, last_seq: known.last_seq, last_message: known.last_message, unread_count: known.unread_count, last_read_seq: known.last_read_seq });
      } else {
        // not resumed, or behind: the server's figures, and the socket goes on from there
        state.lastSeq.set(chat.id, chat.last_seq);
        upsertChat(chat);
      }
    }
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  if (reconcile && !cursor) {
    for (const id of [...state.chats.keys()]) {
      if (seen.has(id)) continue;
      state.chats.delete(id);
      state.lastSeq.delete(id);
      state.messages.delete(id);
      if (id === state.open) location.hash = "";
    }
  }
  renderList();
  loadPresence();
}

/** A chat as the server describes it now. Its messages from here on come
 * over the socket (resumed from the last seq seen), so a chat seen for the
 * first time starts at its current last seq. */
function upsertChat(chat) {
  const { members, ...fields } = chat;
  const isNew = !state.chats.has(chat.id);
  state.chats.set(chat.id, { ...state.chats.get(chat.id), ...fields });
  if (!state.lastSeq.has(chat.id)) state.lastSeq.set(chat.id, chat.last_seq || 0);
  remember(chat.peer);
  if (isNew && chat.kind === "direct" && live) loadPresence([state.chats.get(chat.id)]);
}

/** Who is online now, for direct chats (presence events keep it current). */
async function loadPresence(chats = [...state.chats.values()]) {
  const direct = chats.filter((chat) => chat.kind === "direct");
  await Promise.all(direct.map(async (chat) => {
    try {
      const answer = await api.get(`/v1/chats/${chat.id}/presence`);
      if (chat.peer) {
        if (answer.online.includes(chat.peer.id)) state.online.add(chat.peer.id);
        else state.online.delete(chat.peer.id);
      }
    } catch { /* presence is a nicety */ }
  }));
  renderList();
  renderHeader();
}

function route() {
  const hash = location.hash;
  const join = hash.match(/^#join=(.+)$/);
  if (join) {
    const match = decodeURIComponent(join[1]).match(idPattern);
    history.replaceState(null, "", location.pathname);
    if (state.open) stopTyping(state.open);
    state.open = null;
    document.body.classList.remove("chat-open");
    state.panel = "new";
    renderMain();
    const input = document.getElementById("join-id");
    if (input && match) { input.value = match[0]; input.focus(); }
    return;
  }
  const chat = hash.match(/^#\/chat\/([0-9a-f-]{36})$/);
  if (chat) openChat(chat[1], { fromRoute: true });
  else closeChat();
}
window.addEventListener("hashchange", () => { if (state.me) route(); });

// ---------------------------------------------------------------- events

function handleFrame(frame) {
  switch (frame.type) {
    case "message":
      applyMessage(frame.message);
      break;
    case "message_updated":
      applyUpdate(frame.message);
      break;
    case "reaction":
      applyReaction(frame);
      break;
    case "typing": {
      if (!state.typing.has(frame.chat_id)) state.typing.set(frame.chat_id, new Map());
      const typing = state.typing.get(frame.chat_id);
      if (frame.active) typing.set(frame.user_id, Date.now() + 6000);
      else typing.delete(frame.user_id);
      renderTyping();
      setTimeout(renderTyping, 6100);
      break;
    }
    case "read": {
      const chat = state.chats.get(frame.chat_id);
      if (frame.user_id === state.me.id) {
        if (chat && frame.seq > (chat.last_read_seq || 0)) {
          chat.last_read_seq = frame.seq;
          if (frame.seq >= chat.last_seq) chat.unread_count = 0;
          renderList();
        }
      } else {
        const member = state.details.get(frame.chat_id)?.find((m) => m.user.id === frame.user_id);
        if (member && frame.seq > (member.last_read_seq || 0)) member.last_read_seq = frame.seq;
        if (chat?.kind === "direct") chat.peer_read_seq = Math.max(chat.peer_read_seq || 0, frame.seq);
        if (frame.chat_id === state.open) renderMessages();
      }
      break;
    }
    case "presence":
      if (frame.online) state.online.add(frame.user_id);
      else state.online.delete(frame.user_id);
      renderList();
      renderHeader();
      if (state.panel === "details") renderPanel();
      break;
    case "chat":
      upsertChat(frame.chat);
      state.details.delete(frame.chat.id);
      if (frame.chat.id === state.open) { loadDetails(frame.chat.id); renderHeader(); }
      renderList();
      break;
    case "chat_removed":
      state.chats.delete(frame.chat_id);
      state.lastSeq.delete(frame.chat_id);
      state.messages.delete(frame.chat_id);
      if (frame.chat_id === state.open) {
        toast("You are no longer a member of that chat.", "info");
        location.hash = "";
      }
      renderList();
      break;
    case "resync":
      resync(frame.chat_id);
      break;
    case "error":
      toast(frame.detail || frame.code);
      break;
  }
}

/** A new message, from the socket (live or replayed) or a gap fill: applied once, in seq order. */
function applyMessage(message) {
  const chatID = message.chat_id;
  const last = state.lastSeq.get(chatID) ?? 0;
  if (!state.chats.has(chatID)) {
    // a chat we have not seen yet (added a moment ago): load it; its
    // messages come with its history when it is opened
    api.get(`/v1/chats/${chatID}`).then((chat) => { upsertChat(chat); renderList(); }).catch(() => {});
    return;
  }
  // kept for the view even when the chat's history is not loaded yet: a
  // page read before this message was committed is merged with it
  keepReactions(message, messagesOf(chatID).bySeq.get(message.seq));
  messagesOf(chatID).bySeq.set(message.seq, message);
  if (message.seq <= last) {
    // already seen (a replay, or the ack came first)
    settlePending(message);
    if (chatID === state.open) renderMessages();
    return;
  }
  if (message.seq > last + 1 || state.resyncing.has(chatID)) {
    // something before it is missing: history fills the gap, up to here
    state.highest.set(chatID, Math.max(state.highest.get(chatID) || 0, message.seq));
    if (!state.resyncing.has(chatID)) fillGap(chatID);
    if (chatID === state.open) renderMessages();
    return;
  }
  state.lastSeq.set(chatID, message.seq);
  settlePending(message);
  const chat = state.chats.get(chatID);
  chat.last_seq = Math.max(chat.last_seq || 0, message.seq);
  chat.last_message = message;
  if (message.sender_id === state.me.id) {
    chat.last_read_seq = Math.max(chat.last_read_seq || 0, message.seq);
  } else {
    state.typing.get(chatID)?.delete(message.sender_id);
    if (!(chatID === state.open && document.visibilityState === "visible")) chat.unread_count = (chat.unread_count || 0) + 1;
  }
  renderList();
  if (chatID === state.open) {
    renderMessages();
    renderTyping();
    markRead();
  }
}

function settlePending(message) {
  if (message.sender_id !== state.me.id || !state.pending.delete(message.client_id)) return;
  savePending();
  if (message.chat_id === state.open) renderMessages();
}

/** Messages the socket did not bring (a gap): read from history, in order, once per chat at a time. */
function fillGap(chatID) {
  if (state.filling.has(chatID)) return state.filling.get(chatID);
  const work = (async () => {
    try {
      // until nothing is missing below the highest seq the socket brought
      // (live messages that arrive meanwhile raise it)
      for (let round = 0; round < 60; round++) {
        const after = state.lastSeq.get(chatID) ?? 0;
        const page = await api.get(`/v1/chats/${chatID}/messages?after=${after}&limit=100`);
        for (const message of page.messages) if (message.seq === (state.lastSeq.get(chatID) ?? 0) + 1) applyMessage(message);
        const caughtUp = (state.lastSeq.get(chatID) ?? 0) >= (state.highest.get(chatID) || 0);
        if ((!page.has_more && caughtUp) || page.messages.length === 0) break;
      }
    } catch (error) {
      toast("Could not load new messages: " + explain(error));
    } finally {
      state.filling.delete(chatID);
    }
  })();
  state.filling.set(chatID, work);
  return work;
}

/** More than the server replays was missed: start again from the chat as it is now. */
async function resync(chatID) {
  // live messages of the chat wait (they only raise `highest`) until the
  // chat is read again; then what is above its last seq is filled in
  state.resyncing.add(chatID);
  try {
    const chat = await api.get(`/v1/chats/${chatID}`);
    const known = state.lastSeq.get(chatID) || 0;
    if (chat.last_seq > known) {
      state.lastSeq.set(chatID, chat.last_seq);
      const messages = state.messages.get(chatID);
      if (messages) messages.loaded = false; // reloaded when shown
    }
    upsertChat(chat);
    renderList();
    if (chatID === state.open) await loadLatest(chatID);
  } catch (error) {
    toast("Could not catch up: " + explain(error));
  } finally {
    state.resyncing.delete(chatID);
  }
  if ((state.highest.get(chatID) || 0) > (state.lastSeq.get(chatID) || 0)) fillGap(chatID);
}

/** Events that cannot know the reader's `me` carry no reactions: keep the ones we have. */
function keepReactions(message, known) {
  if (!("reactions" in message) && known?.reactions) message.reactions = known.reactions;
}

function applyUpdate(message) {
  const messages = state.messages.get(message.chat_id);
  if (messages?.bySeq.has(message.seq)) {
    keepReactions(message, messages.bySeq.get(message.seq));
    messages.bySeq.set(message.seq, message);
  }
  const chat = state.chats.get(message.chat_id);
  if (chat?.last_message?.seq === message.seq) chat.last_message = message;
  renderList();
  if (message.chat_id === state.open) renderMessages();
}

/** A reaction added or taken back, by anyone (ourselves included, from any device). */
function applyReaction(frame) {
  const message = state.messages.get(frame.chat_id)?.bySeq.get(frame.seq);
  if (!message) return;  // not loaded: its history page will have it
  const mine = frame.user_id === state.me.id;
  const reactions = (message.reactions || []).map((r) => ({ ...r }));
  let entry = reactions.find((r) => r.emoji === frame.emoji);
  if (frame.added) {
    if (mine && entry?.me) return;  // our own, counted already (the page came after it)
    if (!entry) reactions.push(entry = { emoji: frame.emoji, count: 0, me: false });
    entry.count += 1;
    if (mine) entry.me = true;
  } else if (entry && !(mine && !entry.me)) {
    entry.count -= 1;
    if (mine) entry.me = false;
  }
  // most used first; equal counts keep their order
  message.reactions = reactions.filter((r) => r.count > 0).sort((a, b) => b.count - a.count);
  if (frame.chat_id === state.open) renderMessages();
}

const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

/** Adds our reaction, or takes it back when it is there; the event updates the view. */
async function toggleReaction(chatID, message, emoji) {
  const mine = message.reactions?.find((r) => r.emoji === emoji)?.me;
  const path = `/v1/chats/${chatID}/messages/${message.seq}/reactions/${encodeURIComponent(emoji)}`;
  try {
    if (mine) await api.delete(path); else await api.put(path);
  } catch (error) { toast(explain(error)); }
}

// ---------------------------------------------------------------- sending

const PENDING_KEY = "parley.pending";

/** Unacknowledged sends outlive a reload of the page (this tab's storage). */
function savePending() {
  const kept = [...state.pending.values()].map(({ error, status, ...pending }) => pending);
  if (kept.length) sessionStorage.setItem(PENDING_KEY, JSON.stringify(kept));
  else sessionStorage.removeItem(PENDING_KEY);
}

function restorePending() {
  try {
    for (const pending of JSON.parse(sessionStorage.getItem(PENDING_KEY) || "[]")) {
      if (pending.sender_id === state.me.id) state.pending.set(pending.client_id, { ...pending, status: "waiting" });
    }
  } catch { sessionStorage.removeItem(PENDING_KEY); }
}

/** The members a body mentions: those whose name follows an "@". */
function mentionsIn(chatID, body) {
  if (!body || !body.includes("@")) return [];
  const members = state.details.get(chatID) || [];
  return members.filter((m) => m.user.id !== state.me.id && body.includes("@" + m.user.display_name)).map((m) => m.user.id);
}

function sendMessage(chatID, body, attachments, replyTo) {
  const pending = {
    client_id: uuid(), chat_id: chatID, body, attachments, reply_to_seq: replyTo, mentions: mentionsIn(chatID, body),
    sender_id: state.me.id, created_at: new Date().toISOString(), status: "sending",
  };
  state.pending.set(pending.client_id, pending);
  savePending();
  deliver(pending);
  renderMessages({ toBottom: true });
}

function deliver(pending) {
  pending.status = "sending";
  const frame = { type: "send", chat_id: pending.chat_id, client_id: pending.client_id };
  if (pending.body) frame.body = pending.body;
  if (pending.attachments.length) frame.attachment_ids = pending.attachments.map((a) => a.id);
  if (pending.reply_to_seq) frame.reply_to_seq = pending.reply_to_seq;
  if (pending.mentions?.length) frame.mentions = pending.mentions;
  if (!live || live.state !== "open") {
    pending.status = "waiting"; // sent when the socket is back (onReady)
    return;
  }
  live.request(frame).then((ack) => {
    const message = ack.message;
    state.pending.delete(pending.client_id);
    savePending();
    messagesOf(message.chat_id).bySeq.set(message.seq, message);
    // the message event follows on this socket and moves the chat along
    if (message.chat_id === state.open) renderMessages();
  }).catch((error) => {
    if (!state.pending.has(pending.client_id)) return;
    if (["disconnected", "stopped"].includes(error.code)) {
      pending.status = "waiting"; // again after the reconnect
    } else if (error.code === "timeout") {
      // no answer on a socket that looks alive: again in a moment (the same
      // client_id returns the original if the first one was stored)
      pending.status = "waiting";
      setTimeout(() => { if (state.pending.has(pending.client_id) && live?.state === "open") deliver(pending); }, 3000);
    } else if (error.code === "rate_limited" || error.code === "unavailable") {
      pending.status = "waiting";
      setTimeout(() => { if (state.pending.has(pending.client_id)) deliver(pending); }, 2000);
    } else {
      pending.status = "failed";
      pending.error = error.message;
    }
    if (pending.chat_id === state.open) renderMessages();
  });
}

/** Read positions go out at most once a second, for the highest seq seen
 * (a burst of messages, a catch-up after a reconnect: one frame). */
function markRead() {
  if (state.readTimer) return;
  state.readTimer = setTimeout(() => {
    state.readTimer = null;
    sendRead();
  }, state.lastReadAt && Date.now() - state.lastReadAt < 1000 ? 1000 : 50);
}

function sendRead() {
  state.lastReadAt = Date.now();
  const chat = state.chats.get(state.open);
  if (!chat || document.visibilityState !== "visible") return;
  const seq = state.lastSeq.get(chat.id) || 0;
  if (seq <= (chat.last_read_seq || 0) && !chat.unread_count) return;
  if (seq > (chat.last_read_seq || 0)) {
    if (!live?.send({ type: "read", chat_id: chat.id, seq })) {
      api.post(`/v1/chats/${chat.id}/read`, { seq }).catch(() => {});
    }
    chat.last_read_seq = seq;
  }
  chat.unread_count = 0;
  renderList();
}
document.addEventListener("visibilitychange", () => { if (state.me) markRead(); });

/** Typing frames: a start at most every 2.5 s while typing, a stop after
 * 4 s without a key or on send; never two frames within 600 ms (the server
 * allows 2 a second and answers more with an error). A stop that is skipped
 * costs nothing: the message clears the indicator, or it expires. */
function typingFrame(chatID, active) {
  const now = Date.now();
  if (now - state.typingFrameAt < 600) return false;
  if (!live?.send({ type: "typing", chat_id: chatID, active })) return false;
  state.typingFrameAt = now;
  return true;
}

function typingChanged(chatID, text) {
  clearTimeout(state.typingTimer);
  if (!text) return stopTyping(chatID);
  if (Date.now() - state.typingSent > 2500 && typingFrame(chatID, true)) {
    state.typingSent = Date.now();
  }
  state.typingTimer = setTimeout(() => stopTyping(chatID), 4000);
}

function stopTyping(chatID) {
  clearTimeout(state.typingTimer);
  if (state.typingSent > 0) typingFrame(chatID, false);
  state.typingSent = 0;
}

// ---------------------------------------------------------------- history

async function loadLatest(chatID) {
  const messages = messagesOf(chatID);
  messages.loading = true;
  try {
    const page = await api.get(`/v1/chats/${chatID}/messages?limit=50`);
    const newest = page.messages.at(-1)?.seq || 0;
    const live = messages.bySeq;
    messages.bySeq = new Map(page.messages.map((m) => [m.seq, m]));
    // what the socket brought while the page was read, if newer than it
    for (const [seq, message] of live) if (seq > newest) messages.bySeq.set(seq, message);
    messages.hasMore = page.has_more;
    messages.loaded = true;
    // the page ends at the newest message: nothing before it is missing
    if (newest > (state.lastSeq.get(chatID) || 0)) state.lastSeq.set(chatID, newest);
  } finally {
    messages.loading = false;
  }
  if (chatID === state.open) {
    renderMessages({ toBottom: true });
    markRead();
  }
}

async function loadOlder(chatID) {
  const messages = messagesOf(chatID);
  if (messages.loading || !messages.hasMore || !messages.loaded) return;
  const oldest = Math.min(...messages.bySeq.keys());
  if (!Number.isFinite(oldest) || oldest <= 1) { messages.hasMore = false; return; }
  messages.loading = true;
  const list = document.getElementById("messages");
  const fromBottom = list ? list.scrollHeight - list.scrollTop : 0;
  try {
    const page = await api.get(`/v1/chats/${chatID}/messages?before=${oldest}&limit=50`);
    for (const message of page.messages) messages.bySeq.set(message.seq, message);
    messages.hasMore = page.has_more;
  } catch (error) {
    toast("Could not load older messages: " + explain(error));
  } finally {
    messages.loading = false;
  }
  if (chatID === state.open) {
    renderMessages();
    const after = document.getElementById("messages");
    if (after) after.scrollTop = after.scrollHeight - fromBottom;
  }
}

async function loadDetails(chatID) {
  try {
    const chat = await api.get(`/v1/chats/${chatID}`);
    for (const member of chat.members) remember(member.user);
    state.details.set(chatID, chat.members);
    upsertChat(chat);
    if (chatID === state.open) { renderHeader(); renderMessages(); if (state.panel === "details") renderPanel(); }
  } catch (error) {
    if (error.status === 404 && chatID === state.open) { toast("That chat does not exist, or you are not a member."); location.hash = ""; }
  }
}

function attachmentURL(id) {
  if (!state.blobs.has(id)) {
    state.blobs.set(id, api.request("GET", `/v1/attachments/${id}`, { blob: true }).then((blob) => URL.createObjectURL(blob)).catch((error) => {
      state.blobs.delete(id);
      throw error;
    }));
  }
  return state.blobs.get(id);
}

// ---------------------------------------------------------------- opening and closing chats

function openChat(chatID, { fromRoute = false } = {}) {
  if (!fromRoute) { location.hash = `#/chat/${chatID}`; return; }
  if (state.open && state.open !== chatID) stopTyping(state.open);
  const changed = state.open !== chatID;
  state.open = chatID;
  if (changed) { state.replyTo = null; state.editing = null; state.staged = []; if (state.panel === "details") state.panel = null; }
  if (state.panel === "new") state.panel = null;
  document.body.classList.add("chat-open");
  renderMain();
  renderList();
  if (!state.chats.has(chatID)) {
    loadDetails(chatID).then(() => { if (state.chats.has(chatID)) { renderMain(); loadLatest(chatID); } });
    return;
  }
  loadDetails(chatID);
  if (!messagesOf(chatID).loaded) loadLatest(chatID).catch((error) => toast(explain(error)));
  else markRead();
}

function closeChat() {
  if (state.open) stopTyping(state.open);
  state.open = null;
  document.body.classList.remove("chat-open");
  renderMain();
  renderList();
}

// ---------------------------------------------------------------- rendering

function renderAll() {
  renderList();
  renderHeader();
  renderMessages();
}

let bannerTimer = null;

/** "Reconnecting…" once the connection has been down for a moment (a
 * reconnect that takes a blink, as after a token expiry, shows nothing). */
function renderBanner(connection, attempt) {
  if (!state.me) return;
  document.body.dataset.connection = connection;
  clearTimeout(bannerTimer);
  if (connection === "open" || connection === "stopped") {
    banner.hidden = true;
    banner.textContent = "";
    return;
  }
  bannerTimer = setTimeout(() => {
    if (live?.state !== connection) return; // it changed meanwhile
    banner.hidden = false;
    banner.className = connection === "reconnecting" ? "banner warn" : "banner";
    banner.textContent = connection === "connecting" ? "Connecting…" : attempt > 1 ? `Reconnecting… (attempt ${attempt})` : "Reconnecting…";
  }, 800);
}

function renderShell() {
  root.replaceChildren(
    h("aside", { class: "sidebar", "aria-label": "Chats" },
      h("header", { class: "me" },
        h("div", {},
          h("strong", { id: "me-name", text: state.me.display_name }),
          h("div", { class: "muted small", text: state.me.email || "" })),
        h("div", { class: "me-actions" },
          h("button", { type: "button", class: "secondary", id: "push-toggle", hidden: true, onclick: togglePush }),
          h("button", { type: "button", class: "secondary", id: "sign-out", text: "Sign out", onclick: async () => {
            // the server ends the subscription with the session; the browser's goes too
            await disablePush(api, { serverToo: false }).catch(() => {});
            api.logout().catch(() => {});
          } }))),
      h("button", { type: "button", class: "primary wide", id: "new-chat", text: "New chat", onclick: () => {
        state.panel = "new";
        if (state.open) location.hash = "";
        else renderMain();
      } }),
      messageSearch(),
      h("nav", { id: "chat-list", class: "chat-list", "aria-label": "Your chats" })),
    h("main", { id: "main", class: "main" }),
  );
  renderList();
  renderMain();
  renderPushToggle();
}

/** The notifications button: shown when this browser and the server both do Web Push. */
async function renderPushToggle() {
  const button = document.getElementById("push-toggle");
  if (!button) return;
  let now;
  try { now = await pushState(api); } catch { now = "unsupported"; }
  button.hidden = now === "unsupported" || now === "disabled";
  button.textContent = now === "on" ? "🔔 On" : "🔕 Off";
  button.title = now === "on" ? "Push notifications on this device: on (click to turn off)" : "Push notifications on this device: off (click to turn on)";
  button.dataset.state = now;
}

async function togglePush() {
  const button = document.getElementById("push-toggle");
  button.disabled = true;
  try {
    if (button.dataset.state === "on") await disablePush(api);
    else {
      await enablePush(api);
      toast("Notifications are on for this device while Parley is closed.", "info");
    }
  } catch (error) {
    toast(`Could not turn notifications on: ${error.message || error}`);
  } finally {
    button.disabled = false;
    renderPushToggle();
  }
}

// a click on a notification of an open tab opens its chat here
navigator.serviceWorker?.addEventListener("message", (event) => {
  const chat = event.data?.type === "open_chat" ? event.data.chat_id : null;
  if (chat && /^[0-9a-f-]{36}$/.test(chat)) location.hash = `#/chat/${chat}`;
});

function renderList() {
  const list = document.getElementById("chat-list");
  if (!list) return;
  const chats = [...state.chats.values()].sort((a, b) => activity(b).localeCompare(activity(a)));
  if (chats.length === 0) {
    list.replaceChildren(h("p", { class: "muted empty", text: "No chats yet. Start one with “New chat”." }));
    return;
  }
  list.replaceChildren(...chats.map((chat) => {
    const last = chat.last_message;
    let preview = "No messages yet";
    if (last) {
      const who = last.sender_id === state.me.id ? "You: " : chat.kind === "group" ? nameOf(last.sender_id) + ": " : "";
      preview = who + (last.deleted ? "message deleted" : last.body || (last.attachments.length ? "attachment" : ""));
    }
    const online = chat.kind === "direct" && chat.peer && state.online.has(chat.peer.id);
    return h("a", {
      href: `#/chat/${chat.id}`, class: "chat-item" + (chat.id === state.open ? " active" : ""), dataset: { chatId: chat.id },
      "aria-current": chat.id === state.open ? "page" : null,
    },
    chat.kind === "direct" ? h("span", { class: "dot" + (online ? " online" : ""), title: online ? "online" : "offline", "aria-label": online ? "online" : "offline" }) : h("span", { class: "dot group", "aria-hidden": "true", text: "#" }),
    h("span", { class: "chat-text" },
      h("span", { class: "chat-title", text: chatTitle(chat) }, quiet(chat) ? h("span", { class: "quiet", title: "muted", "aria-label": "muted", text: " 🔕" }) : null),
      h("span", { class: "chat-preview", text: preview })),
    h("span", { class: "chat-meta" },
      h("span", { class: "small muted", text: time(activity(chat)) }),
      chat.unread_count > 0 ? h("span", { class: "badge", "aria-label": `${chat.unread_count} unread`, text: String(chat.unread_count) }) : null));
  }));
}

function renderMain() {
  const main = document.getElementById("main");
  if (!main) return;
  const chat = state.chats.get(state.open);
  if (state.panel === "new" && !state.open) {
    main.replaceChildren(newChatPanel());
    main.querySelector("input")?.focus();
    return;
  }
  if (!chat) {
    main.replaceChildren(h("div", { class: "placeholder" },
      h("h2", { text: state.open ? "Loading…" : "Pick a chat, or start a new one" }),
      h("p", { class: "muted", text: "Messages arrive live on every gateway; nothing is lost when the connection drops." })));
    return;
  }
  const input = h("textarea", {
    id: "composer", rows: 1, maxlength: 4000, placeholder: "Write a message", "aria-label": "Message",
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); submit(); }
      if (event.key === "Escape") { state.replyTo = null; state.editing = null; input.value = ""; renderComposerState(); }
    },
    oninput: () => { if (!state.editing) typingChanged(chat.id, input.value.trim()); },
  });
  const files = h("input", { type: "file", id: "file-input", class: "visually-hidden", multiple: true,
    accept: "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain", onchange: () => upload(files) });
  const submit = async () => {
    const text = input.value.trim();
    if (state.editing) {
      const seq = state.editing;
      if (!text) return;
      try {
        const updated = await api.patch(`/v1/chats/${chat.id}/messages/${seq}`, { body: text });
        applyUpdate(updated);
        state.editing = null;
        input.value = "";
        renderComposerState();
      } catch (error) { toast(explain(error)); }
      return;
    }
    if (!text && state.staged.length === 0) return;
    if (state.staged.some((item) => item.uploading)) { toast("Wait for the upload to finish.", "info"); return; }
    sendMessage(chat.id, text, state.staged, state.replyTo);
    stopTyping(chat.id);
    input.value = "";
    state.staged = [];
    state.replyTo = null;
    renderComposerState();
  };
  main.replaceChildren(
    h("header", { class: "chat-header", id: "chat-header" }),
    h("div", { class: "chat-body" },
      h("div", { id: "messages", class: "messages", role: "log", "aria-live": "polite", "aria-label": "Messages", tabindex: "0",
        onscroll: (event) => { if (event.target.scrollTop < 120) loadOlder(chat.id); } }),
      h("aside", { id: "panel", class: "panel", hidden: true })),
    h("div", { id: "typing", class: "typing", "aria-live": "polite" }),
    h("form", { class: "composer", onsubmit: (event) => { event.preventDefault(); submit(); } },
      h("div", { id: "composer-state", class: "composer-state" }),
      h("div", { class: "composer-row" },
        h("label", { for: "file-input", class: "button secondary", title: "Attach a file", tabindex: "0",
          onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); files.click(); } } }, "Attach"),
        files, input,
        h("button", { type: "submit", class: "primary", id: "send", text: "Send" }))),
  );
  renderHeader();
  renderMessages({ toBottom: true });
  renderTyping();
  renderComposerState();
  renderPanel();
  input.focus();
}

async function upload(input) {
  const picked = [...input.files];
  input.value = "";
  for (const file of picked) {
    const item = { name: file.name, uploading: true, id: null, content_type: file.type, size: file.size };
    state.staged.push(item);
    renderComposerState();
    try {
      const stored = await api.upload(file);
      Object.assign(item, stored, { uploading: false });
    } catch (error) {
      state.staged = state.staged.filter((other) => other !== item);
      toast(`${file.name}: ${explain(error)}`);
    }
    renderComposerState();
  }
}

function renderComposerState() {
  const box = document.getElementById("composer-state");
  if (!box) return;
  const chat = state.chats.get(state.open);
  const parts = [];
  if (state.replyTo) {
    const quoted = state.messages.get(state.open)?.bySeq.get(state.replyTo);
    parts.push(h("div", { class: "chip", id: "replying" }, "Replying to ", h("strong", { text: quoted ? nameOf(quoted.sender_id) : "#" + state.replyTo }),
      quoted?.body ? ": " + quoted.body.slice(0, 60) : "",
      h("button", { type: "button", class: "link", "aria-label": "Cancel reply", text: "×", onclick: () => { state.replyTo = null; renderComposerState(); } })));
  }
  if (state.editing) {
    parts.push(h("div", { class: "chip", id: "editing" }, "Editing your message",
      h("button", { type: "button", class: "link", "aria-label": "Cancel edit", text: "×", onclick: () => {
        state.editing = null;
        document.getElementById("composer").value = "";
        renderComposerState();
      } })));
  }
  for (const item of state.staged) {
    parts.push(h("div", { class: "chip attachment-chip" }, item.name, item.uploading ? " (uploading…)" : ` (${size(item.size)})`,
      h("button", { type: "button", class: "link", "aria-label": "Remove " + item.name, text: "×", onclick: () => {
        state.staged = state.staged.filter((other) => other !== item);
        renderComposerState();
      } })));
  }
  box.replaceChildren(...parts);
  box.hidden = parts.length === 0 || !chat;
}

function renderHeader() {
  const header = document.getElementById("chat-header");
  const chat = state.chats.get(state.open);
  if (!header || !chat) return;
  let subtitle;
  if (chat.kind === "direct") {
    subtitle = chat.peer && state.online.has(chat.peer.id) ? "online" : "offline";
  } else {
    subtitle = `${chat.members_count} member${chat.members_count === 1 ? "" : "s"}` + (chat.public ? " · public" : "");
  }
  header.replaceChildren(
    h("button", { type: "button", class: "secondary back", "aria-label": "Back to chats", text: "←", onclick: () => { location.hash = ""; } }),
    h("div", { class: "chat-heading" },
      h("h2", { id: "chat-title", text: chatTitle(chat) }),
      h("span", { class: "muted small", id: "chat-subtitle", text: subtitle })),
    h("button", { type: "button", class: "secondary", id: "details-button", "aria-expanded": String(state.panel === "details"), text: "Details", onclick: () => {
      state.panel = state.panel === "details" ? null : "details";
      if (state.panel === "details" && chat.kind === "direct" && !state.blocked) loadBlocks();
      renderPanel();
      renderHeader();
    } }),
  );
}

function renderTyping() {
  const line = document.getElementById("typing");
  if (!line) return;
  const typing = state.typing.get(state.open);
  const now = Date.now();
  const names = typing ? [...typing.entries()].filter(([, until]) => until > now).map(([id]) => nameOf(id)) : [];
  line.textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

function seenText(chat, seq) {
  if (chat.kind === "direct") {
    const peer = state.details.get(chat.id)?.find((m) => m.user.id !== state.me.id);
    const read = Math.max(peer?.last_read_seq || 0, chat.peer_read_seq || 0);
    return read >= seq ? "Seen" : null;
  }
  const readers = (state.details.get(chat.id) || []).filter((m) => m.user.id !== state.me.id && (m.last_read_seq || 0) >= seq);
  return readers.length ? "Seen by " + readers.map((m) => m.user.display_name).join(", ") : null;
}

function renderMessages({ toBottom = false } = {}) {
  const list = document.getElementById("messages");
  const chat = state.chats.get(state.open);
  if (!list || !chat) return;
  const atBottom = toBottom || list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const messages = state.messages.get(chat.id);
  const sorted = messages ? [...messages.bySeq.values()].sort((a, b) => a.seq - b.seq) : [];
  const lastOwn = [...sorted].reverse().find((m) => m.sender_id === state.me.id && !m.deleted);
  const items = [];
  if (messages?.loaded && !messages.hasMore) items.push(h("p", { class: "muted center small", text: "The beginning of this chat" }));
  else if (messages?.loaded) items.push(h("button", { type: "button", class: "link center small", id: "load-older", text: "Load older messages", onclick: () => loadOlder(chat.id) }));
  else items.push(h("p", { class: "muted center", text: "Loading…" }));
  for (const message of sorted) {
    items.push(messageItem(chat, message, message === lastOwn ? seenText(chat, message.seq) : null));
  }
  for (const pending of state.pending.values()) {
    if (pending.chat_id === chat.id && !(messages?.bySeq && [...messages.bySeq.values()].some((m) => m.client_id === pending.client_id && m.sender_id === state.me.id))) {
      items.push(messageItem(chat, pending, null, pending));
    }
  }
  list.replaceChildren(...items);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function messageItem(chat, message, seen, pending) {
  const mine = message.sender_id === state.me.id;
  const actions = [];
  if (!pending && !message.deleted) {
    actions.push(h("button", { type: "button", class: "link", text: "Reply", onclick: () => {
      state.replyTo = message.seq;
      state.editing = null;
      renderComposerState();
      document.getElementById("composer")?.focus();
    } }));
    if (mine && message.body) {
      actions.push(h("button", { type: "button", class: "link", text: "Edit", onclick: () => {
        state.editing = message.seq;
        state.replyTo = null;
        const composer = document.getElementById("composer");
        composer.value = message.body;
        renderComposerState();
        composer.focus();
      } }));
    }
    actions.push(h("span", { class: "quick-reactions" }, QUICK_REACTIONS.map((emoji) =>
      h("button", { type: "button", class: "link", title: `React ${emoji}`, text: emoji, onclick: () => toggleReaction(chat.id, message, emoji) }))));
    const role = state.details.get(chat.id)?.find((m) => m.user.id === state.me.id)?.role;
    if (mine || role === "owner" || role === "admin") {
      actions.push(h("button", { type: "button", class: "link danger", text: "Delete", onclick: async () => {
        if (!confirm("Delete this message for everyone?")) return;
        try { await api.delete(`/v1/chats/${chat.id}/messages/${message.seq}`); } catch (error) { toast(explain(error)); }
      } }));
    }
  }
  let quote = null;
  if (message.reply_to_seq) {
    const quoted = state.messages.get(chat.id)?.bySeq.get(message.reply_to_seq);
    quote = h("div", { class: "quote" }, "↪ ", quoted ? h("strong", { text: nameOf(quoted.sender_id) }) : null,
      quoted ? ": " + (quoted.deleted ? "message deleted" : (quoted.body || "attachment").slice(0, 80)) : `message #${message.reply_to_seq}`);
  }
  let status = null;
  if (pending) {
    status = pending.status === "failed"
      ? h("span", { class: "status failed" }, "Not sent: " + (pending.error || "error") + " ",
        h("button", { type: "button", class: "link", text: "Retry", onclick: () => deliver(pending) }))
      : h("span", { class: "status", text: pending.status === "waiting" ? "waiting for the connection…" : "sending…" });
  }
  return h("article", {
    class: "message" + (mine ? " mine" : "") + (pending ? " pending" : "") + (message.deleted ? " deleted" : "")
      + (message.mentions?.includes(state.me.id) ? " mentions-me" : ""),
    dataset: pending ? { clientId: message.client_id } : { seq: String(message.seq), clientId: message.client_id || "" },
  },
  chat.kind === "group" && !mine ? h("div", { class: "sender", text: nameOf(message.sender_id) }) : null,
  quote,
  message.deleted ? h("p", { class: "body muted", text: "message deleted" }) : message.body ? h("p", { class: "body", text: message.body }) : null,
  (message.attachments || []).map((attachment) => attachmentView(attachment)),
  !pending && !message.deleted && message.reactions?.length
    ? h("div", { class: "reactions" }, message.reactions.map((r) => h("button", {
      type: "button", class: "chip reaction" + (r.me ? " me" : ""), title: r.me ? "Take your reaction back" : "React too",
      dataset: { emoji: r.emoji }, onclick: () => toggleReaction(chat.id, message, r.emoji),
    }, r.emoji, " ", String(r.count))))
    : null,
  h("footer", { class: "meta" },
    h("time", { datetime: message.created_at, text: time(message.created_at) }),
    message.edited_at && !message.deleted ? h("span", { text: " · edited" }) : null,
    status,
    seen ? h("span", { class: "seen", text: " · " + seen }) : null,
    actions.length ? h("span", { class: "actions" }, actions) : null));
}

function attachmentView(attachment) {
  if (!attachment.id) return h("div", { class: "attachment", text: attachment.name || "file" });
  if (attachment.content_type?.startsWith("image/")) {
    const image = h("img", { class: "attachment-image", alt: "image attachment", dataset: { attachmentId: attachment.id } });
    attachmentURL(attachment.id).then((url) => { image.src = url; }).catch(() => { image.alt = "image unavailable"; });
    return image;
  }
  return h("button", { type: "button", class: "attachment secondary", onclick: async () => {
    try {
      const url = await attachmentURL(attachment.id);
      const link = h("a", { href: url, download: attachment.name || `attachment-${attachment.id.slice(0, 8)}` });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (error) { toast(explain(error)); }
  } }, "Download ", attachment.content_type === "application/pdf" ? "PDF" : "file", ` (${size(attachment.size)})`);
}

// ---------------------------------------------------------------- panels

/** A highlight from the server (matches in <mark>, all else escaped) as
 * nodes, without handing any of it to the HTML parser. */
function highlighted(text) {
  const unescape = (part) => part.replace(/&(amp|lt|gt|quot|#39);/g, (_, name) => ({ amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" })[name]);
  return text.split(/(<mark>.*?<\/mark>)/s).filter(Boolean).map((part) => part.startsWith("<mark>")
    ? h("mark", { text: unescape(part.slice(6, -7)) }) : document.createTextNode(unescape(part)));
}

/** Message search over all chats, and the messages that mention me. */
function messageSearch() {
  const results = h("ul", { class: "results search-results", id: "search-results", hidden: true });
  let timer = null;
  async function run(query) {
    results.hidden = false;
    try {
      const answer = await api.get("/v1/search/messages?limit=20&" + query);
      results.replaceChildren(...(answer.results.length ? answer.results.map(({ message, highlight }) => {
        const chat = state.chats.get(message.chat_id);
        return h("li", {}, h("a", { href: `#/chat/${message.chat_id}`, class: "search-result", dataset: { seq: String(message.seq) } },
          h("span", { class: "small muted" }, chat ? chatTitle(chat) : "chat", " · ", nameOf(message.sender_id), " · ", time(message.created_at)),
          h("span", { class: "chat-preview" }, highlighted(highlight))));
      }) : [h("li", { class: "muted", text: "No messages found" })]));
    } catch (error) {
      results.replaceChildren(h("li", { class: "error", text: explain(error) }));
    }
  }
  const input = h("input", { type: "search", id: "message-search", placeholder: "Search messages", "aria-label": "Search messages", autocomplete: "off", oninput: () => {
    clearTimeout(timer);
    const query = input.value.trim();
    if (!query) { results.hidden = true; results.replaceChildren(); return; }
    timer = setTimeout(() => run("q=" + encodeURIComponent(query)), 300);
  } });
  return h("div", { class: "search" },
    h("div", { class: "search-row" }, input,
      h("button", { type: "button", class: "secondary", id: "mentions-button", text: "@me", title: "Messages that mention you", onclick: () => {
        input.value = "";
        run("mentions=me");
      } })),
    results);
}

function userSearch({ placeholder, id, render }) {
  const results = h("ul", { class: "results", id: id + "-results" });
  let timer = null;
  const input = h("input", { type: "search", id, placeholder, "aria-label": placeholder, autocomplete: "off", oninput: () => {
    clearTimeout(timer);
    const query = input.value.trim();
    if (!query) { results.replaceChildren(); return; }
    timer = setTimeout(async () => {
      try {
        const answer = await api.get("/v1/users?limit=10&query=" + encodeURIComponent(query));
        answer.users.forEach(remember);
        const others = answer.users.filter((user) => user.id !== state.me.id);
        results.replaceChildren(...(others.length ? others.map((user) => h("li", {}, h("span", { text: user.display_name }), render(user))) : [h("li", { class: "muted", text: "Nobody found" })]));
      } catch (error) {
        results.replaceChildren(h("li", { class: "error", text: explain(error) }));
      }
    }, 250);
  } });
  return [input, results];
}

function newChatPanel() {
  const members = new Map();
  const chosen = h("div", { class: "chips", id: "group-members" });
  const drawChosen = () => chosen.replaceChildren(...[...members.values()].map((user) =>
    h("span", { class: "chip" }, user.display_name, h("button", { type: "button", class: "link", "aria-label": "Remove " + user.display_name, text: "×", onclick: () => { members.delete(user.id); drawChosen(); } }))));
  const [search, results] = userSearch({
    placeholder: "Search people by name or email", id: "people-search",
    render: (user) => h("span", { class: "row-actions" },
      h("button", { type: "button", class: "primary", text: "Message", onclick: async () => {
        try {
          const chat = await api.post("/v1/chats", { kind: "direct", user_id: user.id });
          upsertChat(chat);
          state.panel = null;
          renderList();
          openChat(chat.id);
        } catch (error) { toast(explain(error)); }
      } }),
      h("button", { type: "button", class: "secondary", text: "Add to group", onclick: () => { members.set(user.id, user); drawChosen(); } })),
  });
  const title = h("input", { type: "text", id: "group-title", maxlength: 128, placeholder: "Group name", "aria-label": "Group name" });
  const isPublic = h("input", { type: "checkbox", id: "group-public" });
  const joinID = h("input", { type: "text", id: "join-id", placeholder: "Invite link or group id", "aria-label": "Invite link or group id" });
  return h("section", { class: "new-chat" },
    h("header", { class: "chat-header" },
      h("button", { type: "button", class: "secondary", "aria-label": "Close", text: "←", onclick: () => { state.panel = null; renderMain(); } }),
      h("h2", { text: "New chat" })),
    h("div", { class: "panel-body" },
      h("h3", { text: "Find people" }), search, results,
      h("h3", { text: "New group" }),
      h("form", { class: "stack", onsubmit: async (event) => {
        event.preventDefault();
        if (!title.value.trim()) { title.focus(); return; }
        try {
          const chat = await api.post("/v1/chats", { kind: "group", title: title.value.trim(), member_ids: [...members.keys()], public: isPublic.checked });
          upsertChat(chat);
          state.panel = null;
          openChat(chat.id);
        } catch (error) { toast(explain(error)); }
      } },
      title, h("p", { class: "muted small", text: "Members (add them with “Add to group” above):" }), chosen,
      h("label", { class: "inline" }, isPublic, " Public: anyone with the link can join"),
      h("button", { type: "submit", class: "primary", id: "create-group", text: "Create group" })),
      h("h3", { text: "Join a public group" }),
      h("form", { class: "row", onsubmit: async (event) => {
        event.preventDefault();
        const match = joinID.value.match(idPattern);
        if (!match) { toast("Paste an invite link or a group id."); return; }
        try {
          await api.post(`/v1/chats/${match[0]}/members`, { user_id: state.me.id });
          const chat = await api.get(`/v1/chats/${match[0]}`);
          upsertChat(chat);
          state.panel = null;
          openChat(chat.id);
        } catch (error) {
          toast(error.status === 404 ? "No such group, or it is not public." : explain(error));
        }
      } }, joinID, h("button", { type: "submit", class: "primary", text: "Join" }))));
}

/** The users we blocked, for the direct chat's details. */
async function loadBlocks() {
  try {
    const answer = await api.get("/v1/me/blocks");
    state.blocked = new Set(answer.users.map((user) => user.id));
    if (state.panel === "details") renderPanel();
  } catch (error) { toast(explain(error)); }
}

function renderPanel() {
  const panel = document.getElementById("panel");
  const chat = state.chats.get(state.open);
  if (!panel || !chat) return;
  panel.hidden = state.panel !== "details";
  if (panel.hidden) return;
  const members = state.details.get(chat.id) || [];
  const myRole = members.find((m) => m.user.id === state.me.id)?.role;
  const manager = myRole === "owner" || myRole === "admin";
  const parts = [h("h3", { text: chat.kind === "direct" ? "Direct chat" : "Members" })];
  if (members.some((m) => m.user.id === state.me.id)) parts.push(...notificationSettings(chat));
  parts.push(h("ul", { class: "members", id: "members" }, members.map((member) => {
    const online = state.online.has(member.user.id) || member.user.id === state.me.id;
    return h("li", {},
      h("span", { class: "dot" + (online ? " online" : ""), "aria-label": online ? "online" : "offline" }),
      h("span", { text: member.user.display_name + (member.user.id === state.me.id ? " (you)" : "") }),
      h("span", { class: "muted small", text: member.role }),
      chat.kind === "group" && manager && member.user.id !== state.me.id && member.role !== "owner"
        ? h("button", { type: "button", class: "link danger", text: "Remove", onclick: async () => {
          try { await api.delete(`/v1/chats/${chat.id}/members/${member.user.id}`); loadDetails(chat.id); } catch (error) { toast(explain(error)); }
        } }) : null);
  })));
  if (chat.kind === "direct" && chat.peer && state.blocked) {
    const peer = chat.peer;
    const blocked = state.blocked.has(peer.id);
    parts.push(h("p", { class: "muted small", text: blocked
      ? `You blocked ${peer.display_name}: they cannot write to you here or add you to groups. They are not told.`
      : `Blocking ${peer.display_name} stops their messages here and their invitations; they are not told.` }));
    parts.push(h("button", { type: "button", class: "secondary" + (blocked ? "" : " danger"), id: "block-button",
      text: blocked ? `Unblock ${peer.display_name}` : `Block ${peer.display_name}`, onclick: async () => {
        try {
          if (blocked) await api.delete(`/v1/me/blocks/${peer.id}`); else await api.put(`/v1/me/blocks/${peer.id}`);
          if (blocked) state.blocked.delete(peer.id); else state.blocked.add(peer.id);
          renderPanel();
        } catch (error) { toast(explain(error)); }
      } }));
  }
  if (chat.kind === "group") {
    if (manager) {
      const [search, results] = userSearch({
        placeholder: "Add people", id: "member-search",
        render: (user) => members.some((m) => m.user.id === user.id) ? h("span", { class: "muted small", text: "member" })
          : h("button", { type: "button", class: "primary", text: "Add", onclick: async () => {
            try { await api.post(`/v1/chats/${chat.id}/members`, { user_id: user.id }); loadDetails(chat.id); } catch (error) { toast(explain(error)); }
          } }),
      });
      parts.push(h("h3", { text: "Add members" }), search, results);
      const isPublic = h("input", { type: "checkbox", checked: chat.public, onchange: async () => {
        try { upsertChat(await api.patch(`/v1/chats/${chat.id}`, { public: isPublic.checked })); renderHeader(); renderPanel(); } catch (error) { toast(explain(error)); }
      } });
      parts.push(h("label", { class: "inline" }, isPublic, " Public group"));
    }
    if (chat.public) {
      const link = `${location.origin}/#join=${chat.id}`;
      parts.push(h("h3", { text: "Invite link" }), h("input", { type: "text", readonly: true, value: link, "aria-label": "Invite link", onfocus: (event) => event.target.select() }));
    }
    parts.push(h("button", { type: "button", class: "secondary danger", text: "Leave group", onclick: async () => {
      if (!confirm("Leave this group?")) return;
      try { await api.delete(`/v1/chats/${chat.id}/members/${state.me.id}`); location.hash = ""; } catch (error) { toast(explain(error)); }
    } }));
  }
  panel.replaceChildren(...parts);
}

/** Whether a chat is quiet for me now: notify none, or muted. */
function quiet(chat) {
  const settings = chat.settings || {};
  return settings.notify === "none" || (settings.muted_until && new Date(settings.muted_until) > new Date());
}

/** My notification settings for a chat (what the email digests follow). */
function notificationSettings(chat) {
  const settings = chat.settings || { notify: "all", muted_until: null };
  const muted = settings.muted_until && new Date(settings.muted_until) > new Date();
  async function save(change) {
    try {
      const saved = await api.patch(`/v1/chats/${chat.id}/settings`, change);
      const current = state.chats.get(chat.id);
      if (current) current.settings = saved;
      renderPanel();
      renderList();
    } catch (error) { toast(explain(error)); }
  }
  const labels = { all: "All messages", mentions: "Only mentions of me", none: "Nothing" };
  const select = h("select", { id: "notify-select", "aria-label": "Notify me about", onchange: () => save({ notify: select.value }) },
    Object.entries(labels).map(([value, text]) => h("option", { value, text, selected: settings.notify === value })));
  return [
    h("h3", { text: "Notify me about" }), select,
    h("button", { type: "button", class: "secondary", id: "mute-button",
      text: muted ? `Muted until ${time(settings.muted_until)}: unmute` : "Mute for 8 hours (mentions still notify)",
      onclick: () => save({ muted_until: muted ? null : new Date(Date.now() + 8 * 3600 * 1000).toISOString() }) }),
  ];
}

window.addEventListener("focus", () => { if (state.me) markRead(); });
start();
