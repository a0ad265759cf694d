#!/usr/bin/env python3
"""A local webhook receiver for tests: verifies each delivery with the
Standard Webhooks reference library (PyPI `standardwebhooks`), an
implementation independent of Parley's.

Usage: webhook_receiver.py PORT SECRET   (run with the venv's python)

  POST /hook/NAME  a delivery. NAME says how to answer:
      "fail-N-…"  500 to the first N deliveries, then 204;
      "hang-…"    the first delivery is held for 60 s (the sender times out
                  or is killed meanwhile), later ones 204;
      "down-…"    503 always;
      anything else 204.
      A delivery whose signature does not verify (or is older than 5
      minutes) gets 401. Every delivery is recorded.
  GET /received?name=NAME  {"deliveries": [{"status", "id", "timestamp",
      "type", "data", "verified", "error"?}]}, in arrival order (a held
      delivery is recorded when it arrives).
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
RECEIVED = {}  # name -> [delivery]
WEBHOOK = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("webhook_receiver: " + (fmt % args) + "\n")

    def reply(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/received":
            return self.reply(404, {"error": "not found"})
        name = parse_qs(url.query).get("name", [""])[0]
        with LOCK:
            deliveries = list(RECEIVED.get(name, []))
        self.reply(200, {"deliveries": deliveries})

    def do_POST(self):
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not url.path.startswith("/hook/"):
            return self.reply(404, {"error": "not found"})
        name = url.path[len("/hook/"):]
        headers = {key.lower(): value for key, value in self.headers.items()}
        record = {"id": headers.get("webhook-id"), "timestamp": headers.get("webhook-timestamp")}
        try:
            payload = WEBHOOK.verify(body, headers)
            record.update(verified=True, type=payload.get("type"), data=payload.get("data"), event_timestamp=payload.get("timestamp"))
        except WebhookVerificationError as error:
            record.update(verified=False, error=str(error))
        with LOCK:
            deliveries = RECEIVED.setdefault(name, [])
            count = len(deliveries) + 1
            deliveries.append(record)
        status = 204
        if not record["verified"]:
            status = 401
        elif name.startswith("fail-") and count <= int(name.split("-")[1]):
            status = 500
        elif name.startswith("down-"):
            status = 503
        elif name.startswith("hang-") and count == 1:
            time.sleep(60)
        with LOCK:
            record["status"] = status
        self.reply(status)


def main():
    global WEBHOOK
    port, secret = int(sys.argv[1]), sys.argv[2]
    WEBHOOK = Webhook(secret)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
