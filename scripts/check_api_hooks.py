"""schemathesis hooks for scripts/check_api: every authenticated operation
runs as a user of this check's own, registered when the hooks load (one per
schemathesis process, from an address of its own so that per-address limits
spent by generated requests do not stop it).

Generated requests learn that user's email and session ids from responses
(GET /v1/me, GET /v1/me/sessions) and use them: wrong passwords against the
email lock password logins (as they should), and DELETE
/v1/me/sessions/{id} would end the session. So the token comes from the
refresh token, never from a password login again, and a generated request
never names this session."""

import json
import os
import random
import secrets
import sys
import time
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["PARLEY_CHECK_URL"]
ADDRESS = f"198.51.100.{random.randint(1, 254)}"


def _call(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json", "X-Forwarded-For": ADDRESS}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        # schemathesis only says that fetching the token failed: say why
        message = f"check_api_hooks: {method} {path} answered {error.code}: {error.read().decode(errors='replace')}"
        print(message, file=sys.stderr)
        with open(os.environ.get("PARLEY_CHECK_LOG", os.devnull), "a") as log:
            log.write(message + "\n")
        raise


_tokens = _call("POST", "/v1/auth/register", {
    "email": f"check-api-{secrets.token_hex(6)}@example.test",
    "password": secrets.token_urlsafe(18),
    "display_name": "API check",
})
_state = {"access": _tokens["access_token"], "refresh": _tokens["refresh_token"], "at": time.monotonic()}
SESSION = next(s["id"] for s in _call("GET", "/v1/me/sessions", token=_state["access"])["sessions"] if s["current"])


@schemathesis.auth(refresh_interval=60)
class ParleySession:
    def get(self, case, ctx):
        # access tokens live 15 minutes: rotate well before that
        if time.monotonic() - _state["at"] > 300:
            tokens = _call("POST", "/v1/auth/refresh", {"refresh_token": _state["refresh"]})
            _state.update(access=tokens["access_token"], refresh=tokens["refresh_token"], at=time.monotonic())
        return _state["access"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    if path_parameters and path_parameters.get("session_id") == SESSION:
        path_parameters["session_id"] = "00000000-0000-7000-8000-000000000000"
    return path_parameters
