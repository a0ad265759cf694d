#!/usr/bin/env python3
"""A local Web Push service for tests (RFC 8030), with the receiving browser's part.

Usage: push_service.py PORT   (run with the venv's python: http-ece, cryptography)

  POST /subscriptions[?behaviour=B]  makes a subscription as a browser would:
      a new P-256 key pair and auth secret; answers
      {"id", "endpoint", "keys": {"p256dh", "auth"}} (what PushSubscription.toJSON() gives).
      B: "accept" (201, the default), "gone" (410), "throttle-once" (the first
      push gets 429 with Retry-After: 1, later ones 201), "fail-once" (503, then 201).
  POST /push/ID  a push: checks the VAPID authorization (RFC 8292: an ES256 JWT whose
      aud is this service's origin, exp within 24 h, a mailto:/https: sub, signed
      by the key k), the headers (Content-Encoding aes128gcm, TTL, Topic, Urgency),
      then decrypts the body with the subscription's private key using http_ece
      (an implementation independent of the server's). Answers as B says; a push
      that fails a check gets 400 (bad body), 401/403 (VAPID) and is recorded with
      its error.
  GET /received?subscription=ID  every push to ID so far, in order: {"pushes": [
      {"status", "topic", "urgency", "ttl", "vapid_key", "payload" (JSON) | "error"}]}.
"""
import base64
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


LOCK = threading.Lock()
SUBSCRIPTIONS = {}  # id -> {"key", "auth", "behaviour", "pushes": [...], "count"}


def check_vapid(header, origin):
    """The public key (base64url) if the Authorization header is valid VAPID; raises otherwise."""
    if not header or not header.startswith("vapid "):
        raise PermissionError("no vapid authorization")
    params = dict(part.strip().split("=", 1) for part in header[len("vapid "):].split(","))
    token, key = params["t"], params["k"]
    signing_input, _, signature = token.rpartition(".")
    jwt_header = json.loads(unb64url(signing_input.split(".")[0]))
    claims = json.loads(unb64url(signing_input.split(".")[1]))
    if jwt_header.get("alg") != "ES256":
        raise PermissionError("alg is not ES256")
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    raw = unb64url(signature)
    if len(raw) != 64:
        raise PermissionError("the signature is not 64 bytes")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public_key.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise PermissionError("bad signature")
    if claims.get("aud") != origin:
        raise PermissionError("aud %r is not %r" % (claims.get("aud"), origin))
    now = time.time()
    if not (now < claims.get("exp", 0) <= now + 24 * 3600 + 60):
        raise PermissionError("exp out of range")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise PermissionError("sub is not mailto: or https:")
    return key


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("push_service: " + (fmt % args) + "\n")

    def reply(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/received":
            return self.reply(404, {"error": "not found"})
        sub_id = parse_qs(url.query).get("subscription", [""])[0]
        with LOCK:
            sub = SUBSCRIPTIONS.get(sub_id)
            pushes = list(sub["pushes"]) if sub else None
        if pushes is None:
            return self.reply(404, {"error": "no such subscription"})
        self.reply(200, {"pushes": pushes})

    def do_POST(self):
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path == "/subscriptions":
            behaviour = parse_qs(url.query).get("behaviour", ["accept"])[0]
            key = ec.generate_private_key(ec.SECP256R1())
            auth = bytes(uuid.uuid4().bytes)
            sub_id = uuid.uuid4().hex
            with LOCK:
                SUBSCRIPTIONS[sub_id] = {"key": key, "auth": auth, "behaviour": behaviour, "pushes": [], "count": 0}
            public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            host = self.headers.get("Host")
            return self.reply(201, {
                "id": sub_id,
                "endpoint": "http://%s/push/%s" % (host, sub_id),
                "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
            })
        if not url.path.startswith("/push/"):
            return self.reply(404, {"error": "not found"})
        sub_id = url.path[len("/push/"):]
        with LOCK:
            sub = SUBSCRIPTIONS.get(sub_id)
        if sub is None:
            return self.reply(404, {"error": "no such subscription"})
        record = {
            "topic": self.headers.get("Topic"),
            "urgency": self.headers.get("Urgency"),
            "ttl": self.headers.get("TTL"),
        }
        status, headers = 201, {}
        try:
            record["vapid_key"] = check_vapid(self.headers.get("Authorization"), "http://" + self.headers.get("Host"))
        except Exception as error:  # noqa: BLE001 - every failure is the server's to see
            status, record["error"] = 403, "vapid: %s" % error
        if status == 201:
            try:
                if self.headers.get("Content-Encoding") != "aes128gcm":
                    raise ValueError("Content-Encoding is %r" % self.headers.get("Content-Encoding"))
                if not (self.headers.get("TTL") or "").isdigit():
                    raise ValueError("no TTL")
                plaintext = http_ece.decrypt(body, private_key=sub["key"], auth_secret=sub["auth"], version="aes128gcm")
                record["payload"] = json.loads(plaintext)
            except Exception as error:  # noqa: BLE001
                status, record["error"] = 400, "body: %s" % error
        with LOCK:
            sub["count"] += 1
            behaviour, count = sub["behaviour"], sub["count"]
            if status == 201:
                if behaviour == "gone":
                    status = 410
                elif behaviour == "throttle-once" and count == 1:
                    status, headers = 429, {"Retry-After": "1"}
                elif behaviour == "fail-once" and count == 1:
                    status = 503
            record["status"] = status
            sub["pushes"].append(record)
        self.reply(status, None if status == 201 else {"error": record.get("error", "as the test asked")}, headers)


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
