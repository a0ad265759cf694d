#!/usr/bin/env python3
"""The driver of scripts/bench_push: registers a sender and RECIPIENTS members,
each with a Web Push subscription of the local push service
(scripts/push_service.py), puts them in one group, sends MESSAGES messages
at RATE per second through the gateway while nobody is connected, waits
until the pushes arrived, and prints one JSON line: pushes delivered (and
refused), wall time, and the notifier's CPU time per push (from /proc).

Usage: bench_push.py GATEWAY_URL PUSH_SERVICE_URL RECIPIENTS MESSAGES RATE NOTIFIER_PID
"""
import json, sys, time, urllib.request, uuid, os
GW, PUSH, RECIPIENTS, MESSAGES, RATE = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
NOTIFIER_PID = int(sys.argv[6])

def call(method, url, body=None, token=None, ip=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token: req.add_header("Authorization", "Bearer " + token)
    if ip: req.add_header("X-Forwarded-For", ip)
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return json.loads(data) if data else {}

def register(i):
    r = call("POST", GW + "/v1/auth/register", {"email": f"u{i}-{uuid.uuid4().hex[:6]}@example.test", "password": "correct horse battery", "display_name": f"U{i}"}, ip=f"10.9.{i // 250}.{i % 250 + 1}")
    return r["access_token"], r["user"]["id"]

def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

sender_token, sender_id = register(0)
subs = []
members = []
for i in range(1, RECIPIENTS + 1):
    token, uid = register(i)
    members.append(uid)
    s = call("POST", PUSH + "/subscriptions")
    call("POST", GW + "/v1/push/subscriptions", {"endpoint": s["endpoint"], "keys": s["keys"]}, token=token)
    subs.append(s["id"])
chat = call("POST", GW + "/v1/chats", {"kind": "group", "title": "bench", "member_ids": members}, token=sender_token)["id"]
time.sleep(1)
expected = MESSAGES * RECIPIENTS
c0, t0 = cpu(NOTIFIER_PID), time.monotonic()
for n in range(MESSAGES):
    target = t0 + n / RATE
    delay = target - time.monotonic()
    if delay > 0: time.sleep(delay)
    call("POST", GW + f"/v1/chats/{chat}/messages", {"client_id": str(uuid.uuid4()), "body": f"message {n} " + "x" * 80}, token=sender_token)
sent_at = time.monotonic()
while True:
    got = sum(len(call("GET", PUSH + f"/received?subscription={s}")["pushes"]) for s in subs[:: max(1, RECIPIENTS // 10)])
    sampled = len(subs[:: max(1, RECIPIENTS // 10)])
    if got >= MESSAGES * sampled: break
    if time.monotonic() - sent_at > 120: break
    time.sleep(0.5)
t1, c1 = time.monotonic(), cpu(NOTIFIER_PID)
total = sum(len(call("GET", PUSH + f"/received?subscription={s}")["pushes"]) for s in subs)
bad = sum(1 for s in subs for p in call("GET", PUSH + f"/received?subscription={s}")["pushes"] if p.get("status") != 201)
print(json.dumps({"recipients": RECIPIENTS, "messages": MESSAGES, "rate": RATE, "pushes": total, "expected": expected, "refused": bad,
                  "seconds": round(t1 - t0, 2), "pushes_per_s": round(total / (t1 - t0), 1),
                  "notifier_cpu_s": round(c1 - c0, 2), "cpu_us_per_push": round((c1 - c0) / max(total, 1) * 1e6, 1)}))
