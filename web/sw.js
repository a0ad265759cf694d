// Parley's service worker: shows the pushes the notifier sends
// (PROTOCOL.md 1.1 "Push"). A message push becomes a notification tagged
// with its chat, so a newer one replaces it (an older one never does); a
// "read" push (the user read the chat on another device) closes those of
// that chat up to the seq read.

self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = {}; }
  if (data.type === "message") {
    // Pushes may arrive out of order: one older than the notification shown
    // for its chat shows that newer one again (every push must show something).
    event.waitUntil(self.registration.getNotifications({ tag: data.chat_id }).then((shown) => {
      const newer = shown.find((notification) => (notification.data?.seq ?? 0) > data.seq);
      if (newer) return self.registration.showNotification(newer.title, {
        body: newer.body, tag: newer.tag, icon: newer.icon, data: newer.data, silent: true,
      });
      return self.registration.showNotification(data.sender?.display_name || "Parley", {
        body: data.preview || "New message",
        tag: data.chat_id,
        icon: "/app/icon.svg",
        data: { chat_id: data.chat_id, seq: data.seq },
      });
    }));
  } else if (data.type === "read") {
    event.waitUntil(self.registration.getNotifications({ tag: data.chat_id }).then((shown) => {
      for (const notification of shown) if ((notification.data?.seq ?? 0) <= data.seq) notification.close();
    }));
  }
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const chat = event.notification.data?.chat_id;
  const url = chat ? `/#/chat/${chat}` : "/";
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    for (const client of windows) {
      if (new URL(client.url).origin === self.location.origin && "focus" in client) {
        client.postMessage({ type: "open_chat", chat_id: chat });
        return client.focus();
      }
    }
    return self.clients.openWindow(url);
  }));
});
