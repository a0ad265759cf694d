"""The web client in a real browser: headless Chromium driven by Selenium.

Two users, each in a browser of their own, on two different gateways: they
start a chat, exchange messages both ways, see the typing indicator and the
read receipt, send an image and see it; one page reloads and shows the
history; one gateway is stopped and started again, and the messages sent
meanwhile (to and from the page that lost its gateway) arrive after the
reconnect, once each and in order. A third user signs in with an emailed
code (the mailer writes it to an outbox folder). Screenshots of the pages
are saved under .local/web-test/.

Run by scripts/check_web, which sets WEB_TEST_DIR, WEB_TEST_ARTIFACTS,
WEB_TEST_CHROMIUM and WEB_TEST_CHROMEDRIVER; PARLEY_BIN,
PARLEY_TEST_DATABASE_URL and PARLEY_TEST_REDIS_URL come from scripts/test.
"""

import email
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

BIN = os.environ["PARLEY_BIN"]
WORK = os.environ["WEB_TEST_DIR"]
ARTIFACTS = os.environ.get("WEB_TEST_ARTIFACTS", WORK)
SECRET = "web-test-secret-" + secrets.token_hex(16)
TIMEOUT = float(os.environ.get("WEB_TEST_TIMEOUT", "20"))
# a database number of its own, so that the mail jobs of earlier tests are not in its stream
REDIS_URL = re.sub(r"/\d+$", "", os.environ["PARLEY_TEST_REDIS_URL"]) + "/5"


def step(text):
    print(f"  web test: {text}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env():
    env = dict(os.environ)
    env.update({
        "PARLEY_ENV": "development",
        "PARLEY_DATABASE_URL": os.environ["PARLEY_TEST_DATABASE_URL"],
        "PARLEY_REDIS_URL": REDIS_URL,
        "PARLEY_LOG_LEVEL": "warning",
    })
    return env


class Gateway:
    def __init__(self, number):
        self.number = number
        self.port = free_port()
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        env = base_env()
        env.update({
            "PARLEY_JWT_SECRET": SECRET,
            "PARLEY_INSTANCE_ID": f"web-test-{self.number}",
            "PARLEY_WEB_MAIL_HINT": "Web test: the mailer writes it to the test's outbox folder.",
            "PARLEY_SENDS_PER_SECOND": "200",  # the test writes a history of 70 messages
            # Web Push on: the page offers notifications
            "PARLEY_VAPID_PRIVATE_KEY": vapid_key(),
            "PARLEY_VAPID_SUBJECT": "mailto:web-test@example.test",
        })
        log = open(os.path.join(WORK, f"gateway-{self.number}.log"), "ab")
        self.process = subprocess.Popen([BIN, "serve", "--no-migrate", "--port", str(self.port)], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gateway {self.number} exited with {self.process.returncode} (log: gateway-{self.number}.log)")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"gateway {self.number} did not become ready")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def vapid_key():
    """One VAPID key for the run's gateways (parley vapid-key)."""
    global VAPID_KEY
    if VAPID_KEY is None:
        VAPID_KEY = subprocess.run([BIN, "vapid-key", "--private-only"], check=True, capture_output=True, text=True).stdout.strip()
    return VAPID_KEY


VAPID_KEY = None


def start_mailer(outbox):
    env = base_env()
    env["PARLEY_JWT_SECRET"] = SECRET
    key = subprocess.run([BIN, "mail-key"], env=env, check=True, capture_output=True, text=True).stdout.strip()
    del env["PARLEY_JWT_SECRET"]
    env.update({"PARLEY_MAIL_KEY": key, "PARLEY_MAIL_OUTBOX": outbox, "PARLEY_INSTANCE_ID": "web-test-mailer"})
    log = open(os.path.join(WORK, "mailer.log"), "ab")
    return subprocess.Popen([BIN, "notifier"], env=env, stdout=log, stderr=log)


def browser(name):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("WEB_TEST_CHROMIUM", "/usr/bin/chromium")
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1180,760",
                     # a desktop with a mouse (headless reports no hover, which shows every message's actions)
                     "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,availablePointerTypes=4",
                     f"--user-data-dir={os.path.join(WORK, 'profile-' + name)}", "--lang=en-US"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the user allows notifications when asked
    options.add_experimental_option("prefs", {"profile.default_content_setting_values.notifications": 1})
    service = Service(os.environ.get("WEB_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"), log_output=os.path.join(WORK, f"chromedriver-{name}.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.label = name
    return driver


def wait(driver, condition, what):
    def safe(d):
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False
    try:
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.1).until(safe)
    except TimeoutException:
        shot = os.path.join(ARTIFACTS, f"failed-{driver.label}.png")
        driver.save_screenshot(shot)
        logs = ""
        try:
            logs = "\n".join(entry["message"] for entry in driver.get_log("browser"))
        except Exception:
            pass
        raise AssertionError(f"{driver.label}: timed out waiting for {what} (screenshot {shot})\n{logs}")


def find(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def click(driver, css):
    """Clicks the element the selector names now: an element the page re-rendered
    between finding and clicking is found again (a stale reference is never clicked)."""
    def attempt(d):
        d.execute_script("arguments[0].click()", find(d, css))
        return True
    wait(driver, attempt, f"a click on {css}")


def texts(driver, css):
    return [element.get_attribute("textContent") for element in driver.find_elements(By.CSS_SELECTOR, css)]


def delivered(driver, text):
    """The acknowledged (not pending) messages of the open chat with this body."""
    return [e for e in driver.find_elements(By.CSS_SELECTOR, "#messages article.message:not(.pending) .body") if e.text == text]


def register(driver, gateway, email_address, name, password):
    driver.get(gateway.url + "/")
    wait(driver, lambda d: d.find_elements(By.ID, "tab-register"), "the sign-in page")
    find(driver, "#tab-register").click()
    find(driver, "#auth-email").send_keys(email_address)
    find(driver, "#auth-name").send_keys(name)
    find(driver, "#auth-password").send_keys(password)
    find(driver, "#auth-submit").click()
    wait(driver, lambda d: d.find_elements(By.ID, "me-name") and find(d, "#me-name").text == name, "the signed-in page")
    wait_connected(driver, "the live connection")


def session(driver):
    return driver.execute_script("return JSON.parse(sessionStorage.getItem('parley.session'))")


def uuid_of(run, number):
    return uuid.uuid5(uuid.NAMESPACE_URL, f"parley-web-test/{run}/{number}")


def api(gateway, method, path, token, body):
    request = urllib.request.Request(gateway.url + path, method=method, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def get_json(gateway, path, token):
    request = urllib.request.Request(gateway.url + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def wait_connected(driver, what):
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-connection") == "open", what)


def send(driver, text):
    composer = find(driver, "#composer")
    composer.send_keys(text)
    composer.send_keys(Keys.ENTER)


def png(width=160, height=96):
    """A small valid PNG (the server checks uploads against their type)."""
    raw = b"".join(b"\x00" + bytes(v for x in range(width) for v in ((x * 10) % 256, (y * 15) % 256, 180)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def code_from_outbox(outbox, address, after):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for name in sorted(os.listdir(outbox)):
            path = os.path.join(outbox, name)
            if os.path.getmtime(path) < after:
                continue
            with open(path, "rb") as file:
                message = email.message_from_bytes(file.read())
            if address not in message.get("To", ""):
                continue
            for part in message.walk():
                if part.get_content_type() == "text/plain":
                    found = re.search(r"code is (\d{6})", part.get_payload(decode=True).decode())
                    if found:
                        return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no code mail for {address} in the outbox")


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    outbox = os.path.join(WORK, "outbox")
    g1, g2 = Gateway(1), Gateway(2)
    mailer = alice = bob = carol = None
    run = secrets.token_hex(3)
    password = "plum orchard sailing " + run
    try:
        g1.start()
        g2.start()
        mailer = start_mailer(outbox)
        alice, bob = browser("alice"), browser("bob")
        step(f"two users register in two browsers, on gateways :{g1.port} and :{g2.port}")
        register(alice, g1, f"alice-{run}@example.test", f"Alice {run}", password)
        register(bob, g2, f"bob-{run}@example.test", f"Bob {run}", password)

        step("Alice finds Bob and starts a direct chat")
        find(alice, "#new-chat").click()
        find(alice, "#people-search").send_keys(f"Bob {run}")
        wait(alice, lambda d: any(f"Bob {run}" in t for t in texts(d, "#people-search-results li")), "Bob in the search results")
        next(b for b in alice.find_elements(By.CSS_SELECTOR, "#people-search-results li button") if b.text == "Message").click()
        wait(alice, lambda d: find(d, "#chat-title").text == f"Bob {run}", "the chat with Bob")
        send(alice, "Hello Bob, this is Alice")
        wait(alice, lambda d: delivered(d, "Hello Bob, this is Alice"), "Alice's message acknowledged")

        step("Bob sees the chat appear with an unread badge, and the message")
        wait(bob, lambda d: any(f"Alice {run}" in t for t in texts(d, "#chat-list .chat-title")), "the new chat in Bob's list")
        wait(bob, lambda d: texts(d, "#chat-list .badge") == ["1"], "one unread message")
        wait(bob, lambda d: any("online" == e.get_attribute("aria-label") for e in d.find_elements(By.CSS_SELECTOR, "#chat-list .dot")), "Alice shown online")
        find(bob, "#chat-list .chat-item").click()
        wait(bob, lambda d: delivered(d, "Hello Bob, this is Alice"), "Alice's message at Bob")
        wait(bob, lambda d: not d.find_elements(By.CSS_SELECTOR, "#chat-list .badge"), "the badge cleared once read")

        step("Alice sees the read receipt, then Bob typing, then his answer")
        wait(alice, lambda d: "Seen" in " ".join(texts(d, "#messages .message.mine .seen")), "'Seen' under Alice's message")
        find(bob, "#composer").send_keys("Hi Alice")
        wait(alice, lambda d: f"Bob {run} is typing" in find(d, "#typing").text, "the typing indicator")
        find(bob, "#composer").send_keys(Keys.ENTER)
        wait(alice, lambda d: delivered(d, "Hi Alice"), "Bob's answer at Alice")
        wait(alice, lambda d: find(d, "#typing").text == "", "the typing indicator gone with the message")

        step("Alice replies to Bob's message with an image")
        image = os.path.join(WORK, "picture.png")
        with open(image, "wb") as file:
            file.write(png())
        reply = [a for a in alice.find_elements(By.CSS_SELECTOR, "#messages article.message:not(.mine) .actions button") if a.get_attribute("textContent") == "Reply"]
        alice.execute_script("arguments[0].click()", reply[-1])
        find(alice, "#file-input").send_keys(image)
        wait(alice, lambda d: d.find_elements(By.CSS_SELECTOR, ".attachment-chip") and "uploading" not in find(d, ".attachment-chip").text, "the upload")
        send(alice, "A picture")
        image_loaded = "return [...document.querySelectorAll('#messages article:not(.pending) img.attachment-image')].some(i => i.complete && i.naturalWidth === 160)"
        wait(alice, lambda d: d.execute_script(image_loaded), "the image in Alice's chat")
        wait(bob, lambda d: d.execute_script(image_loaded), "the image in Bob's chat")
        wait(bob, lambda d: any("Hi Alice" in q for q in texts(d, "#messages .quote")), "the reply's quote at Bob")

        alice.save_screenshot(os.path.join(ARTIFACTS, "alice-chat.png"))  # the README's picture (docs/web-client.png)

        step("Bob reloads the page: the session and the history are there")
        bob.refresh()
        wait(bob, lambda d: delivered(d, "Hello Bob, this is Alice") and delivered(d, "Hi Alice") and d.execute_script(image_loaded), "the history after a reload")
        wait_connected(bob, "the live connection after a reload")

        step("Bob's gateway stops; messages are sent both ways meanwhile, and Bob is added to a group")
        bob_id = session(bob)["user"]["id"]
        direct = re.search(r"#/chat/([0-9a-f-]{36})", alice.current_url).group(1)
        g2.stop()
        wait(bob, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-connection") == "reconnecting", "Bob's page reconnecting")
        wait(bob, lambda d: "Reconnecting" in find(d, "#banner").text and find(d, "#banner").is_displayed(), "a visible 'Reconnecting' banner")
        bob.save_screenshot(os.path.join(ARTIFACTS, "bob-reconnecting.png"))
        send(alice, "Sent while your gateway was down")
        wait(alice, lambda d: delivered(d, "Sent while your gateway was down"), "Alice's message acknowledged")
        token = session(alice)["access_token"]
        for number in range(1, 41):
            api(g1, "POST", f"/v1/chats/{direct}/messages", token, {"client_id": str(uuid_of(run, 1000 + number)), "body": f"Backlog {number}"})
        api(g1, "POST", "/v1/chats", token, {"kind": "group", "title": f"Offline group {run}", "member_ids": [bob_id]})
        send(bob, "Written while offline")
        wait(bob, lambda d: any("waiting for the connection" in t for t in texts(d, "#messages article.pending")), "Bob's message waiting")
        kept = bob.execute_script("return sessionStorage.getItem('parley.pending')") or ""
        assert "Written while offline" in kept, f"the waiting message is kept for a reload: {kept!r}"

        step("Bob's gateway starts again: everything arrives once, in order")
        g2.start()
        wait_connected(bob, "Bob's page reconnected")
        wait(bob, lambda d: delivered(d, "Sent while your gateway was down") and delivered(d, "Backlog 40") and delivered(d, "Written while offline") and not d.find_elements(By.CSS_SELECTOR, "#messages article.pending"), "everything at Bob")
        wait(bob, lambda d: any(f"Offline group {run}" in t for t in texts(d, "#chat-list .chat-title")), "the group Bob was added to while offline")
        wait(alice, lambda d: delivered(d, "Written while offline"), "Bob's offline message at Alice")
        assert bob.execute_script("return sessionStorage.getItem('parley.pending')") is None, "nothing left waiting"
        for driver in (alice, bob):
            bodies = texts(driver, "#messages article.message:not(.pending) .body")
            for text in ("Hello Bob, this is Alice", "Hi Alice", "Sent while your gateway was down", "Written while offline"):
                assert bodies.count(text) == 1, f"{driver.label}: {text!r} shown {bodies.count(text)} times: {bodies}"
            seqs = [int(s) for s in driver.execute_script("return [...document.querySelectorAll('#messages article[data-seq]')].map(a => a.dataset.seq)")]
            assert seqs == list(range(1, len(seqs) + 1)), f"{driver.label}: seqs {seqs}"
            assert len(seqs) == 45, f"{driver.label}: {len(seqs)} messages: {bodies}"
            for number in range(1, 41):
                assert bodies.count(f"Backlog {number}") == 1, f"{driver.label}: 'Backlog {number}' shown {bodies.count(f'Backlog {number}')} times"
        assert not find(bob, "#banner").is_displayed(), "the banner is gone once connected"

        step("Alice edits her first message; Bob sees the edit")
        edit = [b for b in alice.find_elements(By.CSS_SELECTOR, "#messages article.mine .actions button") if b.get_attribute("textContent") == "Edit"]
        alice.execute_script("arguments[0].click()", edit[0])
        composer = find(alice, "#composer")
        composer.send_keys(Keys.CONTROL, "a")
        composer.send_keys("Hello Bob (edited)")
        composer.send_keys(Keys.ENTER)
        wait(bob, lambda d: delivered(d, "Hello Bob (edited)") and "edited" in d.find_element(By.CSS_SELECTOR, "#messages article[data-seq='1']").text, "the edit at Bob")

        step("Bob reacts to it; Alice sees the count, adds hers, and Bob takes his back")
        def reaction(driver, emoji):
            """The count on the first message's reaction chip, and whether it is the reader's (None: no chip)."""
            return driver.execute_script(
                "const c = [...document.querySelectorAll(\"#messages article[data-seq='1'] .reaction\")].find(c => c.dataset.emoji === arguments[0]);"
                "return c ? [c.textContent.trim(), c.classList.contains('me')] : null", emoji)
        quick = [b for b in bob.find_elements(By.CSS_SELECTOR, "#messages article[data-seq='1'] .quick-reactions button") if b.get_attribute("textContent") == "🎉"]
        bob.execute_script("arguments[0].click()", quick[0])
        wait(alice, lambda d: reaction(d, "🎉") == ["🎉 1", False], "Bob's reaction at Alice")
        wait(bob, lambda d: reaction(d, "🎉") == ["🎉 1", True], "Bob's own reaction, marked as his")
        click(alice, "#messages article[data-seq='1'] .reaction")
        wait(bob, lambda d: reaction(d, "🎉") == ["🎉 2", True], "two reactions at Bob")
        click(bob, "#messages article[data-seq='1'] .reaction")
        wait(alice, lambda d: reaction(d, "🎉") == ["🎉 1", True], "Bob's reaction taken back, at Alice")
        wait(bob, lambda d: reaction(d, "🎉") == ["🎉 1", False], "Bob's reaction taken back, at Bob")

        step("Alice blocks Bob: his next message is refused; once she unblocks him, his retry arrives")
        click(alice, "#details-button")
        wait(alice, lambda d: d.find_elements(By.ID, "block-button") and "Block" in find(d, "#block-button").text, "the block button")
        click(alice, "#block-button")
        wait(alice, lambda d: find(d, "#block-button").text.startswith("Unblock"), "Bob shown as blocked")
        send(bob, "Can you hear me?")
        wait(bob, lambda d: any("Not sent" in a.text for a in d.find_elements(By.CSS_SELECTOR, "#messages article.pending")), "Bob's send refused")
        click(alice, "#block-button")
        wait(alice, lambda d: find(d, "#block-button").text.startswith("Block"), "Bob unblocked")
        retry = [b for b in bob.find_elements(By.CSS_SELECTOR, "#messages article.pending button") if b.get_attribute("textContent") == "Retry"]
        bob.execute_script("arguments[0].click()", retry[0])
        wait(alice, lambda d: delivered(d, "Can you hear me?"), "Bob's retried message at Alice")
        click(alice, "#details-button")

        alice.save_screenshot(os.path.join(ARTIFACTS, "alice.png"))
        bob.save_screenshot(os.path.join(ARTIFACTS, "bob.png"))
        bob.set_window_size(390, 760)
        wait(bob, lambda d: not find(d, ".sidebar").is_displayed() and find(d, "#composer").is_displayed(), "the one-column layout of a phone")
        bob.save_screenshot(os.path.join(ARTIFACTS, "bob-phone.png"))
        bob.set_window_size(1180, 760)

        step("the access token is refreshed before it expires, and the page keeps working")
        before = session(bob)["access_token"]
        bob.execute_script("const s = JSON.parse(sessionStorage.getItem('parley.session')); s.expires_at = Date.now() + 61000; sessionStorage.setItem('parley.session', JSON.stringify(s))")
        bob.refresh()
        wait(bob, lambda d: session(d)["access_token"] != before and session(d)["expires_at"] > time.time() * 1000 + 600_000, "a new access token")
        wait_connected(bob, "the live connection")
        send(bob, "After the refresh")
        wait(alice, lambda d: delivered(d, "After the refresh"), "Bob's message after his refresh")

        step("Alice creates a public group with Bob; it fills up with history")
        find(alice, "#new-chat").click()
        find(alice, "#people-search").send_keys(f"Bob {run}")
        wait(alice, lambda d: any(f"Bob {run}" in t for t in texts(d, "#people-search-results li")), "Bob in the search results")
        next(b for b in alice.find_elements(By.CSS_SELECTOR, "#people-search-results li button") if b.text == "Add to group").click()
        wait(alice, lambda d: f"Bob {run}" in find(d, "#group-members").text, "Bob among the new group's members")
        find(alice, "#group-title").send_keys(f"Team {run}")
        find(alice, "#group-public").click()
        find(alice, "#create-group").click()
        wait(alice, lambda d: find(d, "#chat-title").text == f"Team {run}", "the new group open")
        group = re.search(r"#/chat/([0-9a-f-]{36})", alice.current_url).group(1)
        wait(bob, lambda d: any(f"Team {run}" in t for t in texts(d, "#chat-list .chat-title")), "the group in Bob's list")
        token = session(alice)["access_token"]
        for number in range(1, 71):
            api(g1, "POST", f"/v1/chats/{group}/messages", token, {"client_id": str(uuid_of(run, number)), "body": f"History {number}"})
        wait(alice, lambda d: delivered(d, "History 70"), "the history live at Alice")

        step("Alice mentions Bob in the group; Bob finds it under @me and by a search, and opens the group from a result")
        send(alice, f"Look here @Bob {run}")
        wait(alice, lambda d: delivered(d, f"Look here @Bob {run}"), "the mention acknowledged")
        find(bob, "#mentions-button").click()
        wait(bob, lambda d: any(f"Look here @Bob {run}" in t for t in texts(d, "#search-results li")), "the mention under @me")
        find(bob, "#message-search").send_keys("histo")
        wait(bob, lambda d: "History" in texts(d, "#search-results mark"), "search results with the matched word marked")
        assert not bob.find_elements(By.CSS_SELECTOR, "#search-results b, #search-results script"), "nothing but <mark> is markup"
        click(bob, "#search-results a.search-result")
        wait(bob, lambda d: find(d, "#chat-title").text == f"Team {run}", "the group opened from a search result")
        wait(bob, lambda d: d.find_elements(By.CSS_SELECTOR, "#messages article.mentions-me"), "the mention marked in the group")
        find(bob, "#message-search").send_keys(Keys.CONTROL, "a")
        find(bob, "#message-search").send_keys(Keys.BACKSPACE)
        wait(bob, lambda d: not find(d, "#search-results").is_displayed(), "the results closed with an empty search")

        step("Bob wants only mentions from the group and mutes it: stored for him, shown in his list")
        click(bob, "#details-button")
        wait(bob, lambda d: d.find_elements(By.ID, "notify-select") and d.find_elements(By.ID, "mute-button"), "the notification settings")
        Select(find(bob, "#notify-select")).select_by_value("mentions")
        bob_token = session(bob)["access_token"]
        wait(bob, lambda d: get_json(g2, f"/v1/chats/{group}", bob_token)["settings"]["notify"] == "mentions", "notify: mentions stored")
        click(bob, "#mute-button")
        wait(bob, lambda d: "🔕" in " ".join(texts(d, "#chat-list .chat-title")), "the muted group marked in Bob's list")
        assert get_json(g2, f"/v1/chats/{group}", bob_token)["settings"]["muted_until"], "muted_until stored"
        assert "🔕" not in " ".join(texts(alice, "#chat-list .chat-title")), "Alice's settings are her own"
        click(bob, "#details-button")

        step("Bob turns on notifications for this browser: the service worker registers, and the subscription goes to the server")
        wait(bob, lambda d: d.find_elements(By.ID, "push-toggle") and find(d, "#push-toggle").is_displayed(), "the notifications button")
        assert find(bob, "#push-toggle").get_attribute("data-state") == "off"
        click(bob, "#push-toggle")
        wait(bob, lambda d: d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "navigator.serviceWorker.getRegistration('/app/').then((r) => done(!!(r && (r.active || r.installing || r.waiting))), () => done(false));"),
            "the service worker registered for /app/")
        # Headless Chromium has a push service only with network access to it: either
        # the subscription reaches the server, or the page says why it could not.
        wait(bob, lambda d: find(d, "#push-toggle").get_attribute("data-state") == "on"
             or any("Could not turn notifications on" in t for t in texts(d, ".toast")), "push on, or the reason it is not")
        push_refusal = None
        if find(bob, "#push-toggle").get_attribute("data-state") == "on":
            bob_token = session(bob)["access_token"]
            count = subprocess.run(["psql", os.environ["PARLEY_TEST_DATABASE_URL"], "-Atqc",
                                    f"SELECT count(*) FROM push_subscriptions WHERE user_id = '{session(bob)['user']['id']}'"],
                                   check=True, capture_output=True, text=True).stdout.strip()
            assert count == "1", f"one subscription stored, got {count}"
            click(bob, "#push-toggle")
            wait(bob, lambda d: find(d, "#push-toggle").get_attribute("data-state") == "off", "push off again")
        else:
            push_refusal = next(t for t in texts(bob, ".toast") if "Could not turn notifications on" in t)
            print(f"  (this browser has no push service: {push_refusal})", file=sys.stderr)
            assert find(bob, "#push-toggle").get_attribute("data-state") == "off"

        step("a third user signs in with an emailed code and joins the group by its link")
        carol = browser("carol")
        carol.get(g1.url + "/")
        wait(carol, lambda d: d.find_elements(By.ID, "tab-code"), "the sign-in page")
        find(carol, "#tab-code").click()
        address = f"carol-{run}@example.test"
        find(carol, "#code-email").send_keys(address)
        asked = time.time() - 1
        find(carol, "#code-submit").click()
        wait(carol, lambda d: "outbox" in " ".join(texts(d, ".notice")), "the hint where the code went")
        code = code_from_outbox(outbox, address, asked)
        find(carol, "#code-code").send_keys(code)
        find(carol, "#code-submit").click()
        wait(carol, lambda d: d.find_elements(By.ID, "me-name") and find(d, "#me-name").text == f"carol-{run}", "Carol signed in")
        carol.get(f"{g1.url}/#join={group}")
        wait(carol, lambda d: d.find_elements(By.ID, "join-id") and group in find(d, "#join-id").get_attribute("value"), "the invite link filled in")
        find(carol, "#join-id").send_keys(Keys.ENTER)
        wait(carol, lambda d: d.find_elements(By.ID, "chat-title") and find(d, "#chat-title").text == f"Team {run}", "the group open at Carol")
        wait(carol, lambda d: delivered(d, "History 70") and not delivered(d, "History 1"), "the latest page")
        carol.execute_script("document.getElementById('messages').scrollTop = 0")
        wait(carol, lambda d: delivered(d, "History 1") and "The beginning of this chat" in find(d, "#messages").text, "older pages loaded on scroll")
        seqs = [int(x) for x in carol.execute_script("return [...document.querySelectorAll('#messages article[data-seq]')].map(a => a.dataset.seq)")]
        assert seqs == list(range(1, 72)), f"carol: seqs {seqs}"  # 70 of history and the mention
        send(carol, "Hi team")
        for driver in (alice, bob):
            if driver is bob:
                next(e for e in bob.find_elements(By.CSS_SELECTOR, "#chat-list .chat-item") if f"Team {run}" in e.text).click()
            wait(driver, lambda d: delivered(d, "Hi team"), "Carol's message in the group")
            wait(driver, lambda d: f"carol-{run}" in [e.text for e in d.find_elements(By.CSS_SELECTOR, "#messages article .sender")], "Carol's name on her message")
        alice.save_screenshot(os.path.join(ARTIFACTS, "alice-group.png"))

        step("a session ended elsewhere signs the page out")
        api(g1, "POST", "/v1/auth/logout", None, {"refresh_token": session(carol)["refresh_token"]})
        wait(carol, lambda d: d.find_elements(By.ID, "tab-code") and "session" in " ".join(texts(d, ".notice")), "the sign-in page with a notice")
        carol.refresh()
        wait(carol, lambda d: d.find_elements(By.ID, "tab-code"), "still signed out after a reload")

        step("signing out ends the session")
        find(alice, "#sign-out").click()
        wait(alice, lambda d: d.find_elements(By.ID, "tab-signin"), "the sign-in page")
        alice.refresh()
        wait(alice, lambda d: d.find_elements(By.ID, "tab-signin"), "still signed out after a reload")

        step("no page showed an error along the way")
        for driver in (alice, bob, carol):
            driver.execute_script("console.warn('parley-probe')")  # proves the log is read at all
            messages = [entry["message"] for entry in driver.get_log("browser")]
            assert any("parley-probe" in m for m in messages), f"{driver.label}: the browser log is not captured"
            shown = [m for m in messages if ("parley:" in m or "Uncaught" in m) and not (push_refusal and "Could not turn notifications on" in m)]
            assert not shown, f"{driver.label} showed errors or threw: {shown}"

        print(f"  web test: passed; screenshots in {ARTIFACTS}", file=sys.stderr)
    finally:
        for driver in (alice, bob, carol):
            if driver:
                driver.quit()
        if mailer:
            mailer.send_signal(signal.SIGTERM)
        g1.stop()
        g2.stop()
        if mailer:
            mailer.wait(10)


if __name__ == "__main__":
    main()
