// Web Push in the browser: the service worker (/app/sw.js) and this
// device's subscription, sent to the server (POST /v1/push/subscriptions)
// with the server's VAPID key. The server pushes only while this device has
// no open WebSocket, and ends the subscription with the session (sign-out).

const SCOPE = "/app/";
/** This browser's subscription id, per account (another account may sign in here). */
const storageKey = (api) => `parley.push.${api.user?.id || "none"}`;

/** Whether this browser can take pushes at all. */
export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window && window.isSecureContext;
}

/** "unsupported" (this browser), "disabled" (the server sends none), "on" or "off". */
export async function pushState(api) {
  if (!pushSupported()) return "unsupported";
  try {
    await api.get("/v1/push/vapid-public-key");
  } catch (error) {
    if (error.code === "push_disabled") return "disabled";
    throw error;
  }
  const registration = await navigator.serviceWorker.getRegistration(SCOPE);
  const subscription = await registration?.pushManager.getSubscription();
  return subscription && localStorage.getItem(storageKey(api)) ? "on" : "off";
}

/** Asks for permission, subscribes this browser and tells the server. */
export async function enablePush(api) {
  const { key } = await api.get("/v1/push/vapid-public-key");
  const registration = await navigator.serviceWorker.register("/app/sw.js", { scope: SCOPE });
  const permission = await Notification.requestPermission();
  if (permission !== "granted") throw new Error("notifications are blocked for this site in the browser's settings");
  // (not navigator.serviceWorker.ready: that waits for a worker controlling this page, and /app/ does not)
  await activated(registration);
  let subscription = await registration.pushManager.getSubscription();
  // a subscription made with another server key cannot be used
  if (subscription && toBase64URL(subscription.options.applicationServerKey) !== key) {
    await subscription.unsubscribe();
    subscription = null;
  }
  // the browser's push service may be out of reach: say so rather than wait forever
  subscription ||= await within(15000, "the browser's push service did not answer",
    registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: fromBase64URL(key) }));
  const { id } = await api.post("/v1/push/subscriptions", subscription.toJSON());
  localStorage.setItem(storageKey(api), id);
}

/** Forgets this device's subscription, on the server and in the browser. */
export async function disablePush(api, { serverToo = true } = {}) {
  const id = localStorage.getItem(storageKey(api));
  localStorage.removeItem(storageKey(api));
  if (id && serverToo) await api.delete(`/v1/push/subscriptions/${id}`).catch(() => {});
  const registration = pushSupported() ? await navigator.serviceWorker.getRegistration(SCOPE) : null;
  await (await registration?.pushManager.getSubscription())?.unsubscribe();
}

/** Resolves once the registration has an active worker. */
function activated(registration) {
  if (registration.active) return Promise.resolve();
  const worker = registration.installing || registration.waiting;
  return new Promise((resolve, reject) => {
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") resolve();
      else if (worker.state === "redundant") reject(new Error("the service worker could not be installed"));
    });
  });
}

function within(milliseconds, message, promise) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(message)), milliseconds); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function fromBase64URL(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function toBase64URL(buffer) {
  if (!buffer) return "";
  return btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
