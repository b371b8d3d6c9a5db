#!/usr/bin/env python3
"""Natter with python-socketio's synchronous client (socketio.Client).

    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt
    NATTER_URL=http://127.0.0.1:PORT .venv/bin/python client_test.py

Registers two users over the JSON API, opens a direct room, connects both with
auth={'token': ...} over the websocket transport, joins, sends, receives on the
other client, and checks that a connection without a token is refused with
connect_error "unauthorized" (shared/PROTOCOL.md section 3).

Prints one "ok N - what" line per check and ends with "N passed, 0 failed" or
"N passed, 1 failed"; exits non-zero on the first failure; never runs longer
than E2E_TIMEOUT_MS (default 60 s).
"""

import os
import random
import string
import sys
import threading
import time
import traceback

import requests
import socketio

BASE = os.environ.get("NATTER_URL", "").rstrip("/")
TIMEOUT_S = float(os.environ.get("E2E_TIMEOUT_MS", "60000")) / 1000
PASSWORD = "correct horse battery"
ACK_S = 5

passed = 0
_clients = []
_done = threading.Lock()


def _exit(code):
    """Print the closing line once and leave, without waiting for client threads."""
    if not _done.acquire(blocking=False):
        return
    for c in _clients:
        try:
            c.disconnect()
        except Exception:  # noqa: BLE001 - best effort
            pass
    print(f"{passed} passed, {0 if code == 0 else 1} failed", flush=True)
    os._exit(code)


def check(what, fn):
    global passed
    try:
        result = fn()
    except BaseException as e:  # noqa: BLE001 - report anything, then stop
        print(f"not ok {passed + 1} - {what}", flush=True)
        print(f"#   {type(e).__name__}: {e}", flush=True)
        here = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
        for f in here[1:]:
            print(f"#     at {os.path.basename(f.filename)}:{f.lineno} {f.line}", flush=True)
        _exit(1)
    passed += 1
    print(f"ok {passed} - {what}", flush=True)
    return result


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: expected {want!r}, got {got!r}")


def wait_for(pred, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def api(method, path, body=None, token=None):
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    r = requests.request(method, f"{BASE}/api/v1{path}", json=body, headers=headers, timeout=15)
    try:
        data = r.json() if r.content else None
    except ValueError:
        data = r.text
    return r.status_code, data


def register_and_login(username, email):
    status, body = api("POST", "/users", {"username": username, "email": email, "password": PASSWORD})
    expect_eq(status, 201, f"POST /api/v1/users {username} status ({body!r})")
    expect(isinstance(body.get("id"), str), f"user id must be a string: {body!r}")
    user = dict(body, email=email)
    status, body = api("POST", "/sessions", {"email": email, "password": PASSWORD})
    expect_eq(status, 201, f"POST /api/v1/sessions {email} status ({body!r})")
    expect(isinstance(body.get("token"), str), f"token must be a string: {body!r}")
    user["token"] = body["token"]
    return user


class Peer:
    """One socketio.Client plus what it received."""

    def __init__(self, token=None):
        self.sio = socketio.Client(reconnection=False, request_timeout=10)
        _clients.append(self.sio)
        self.token = token
        self.messages = []
        self.joined = []
        self.connect_errors = []
        self.sio.on("message", lambda m: self.messages.append(m))
        self.sio.on("joined-chat", lambda j: self.joined.append(j))
        self.sio.on("connect_error", lambda data=None: self.connect_errors.append(data))

    def connect(self):
        self.sio.connect(
            BASE,
            auth={"token": self.token} if self.token else None,
            transports=["websocket"],
            socketio_path="socket.io",
            wait_timeout=8,
        )

    def call(self, event, payload):
        return self.sio.call(event, payload, timeout=ACK_S)


def main():
    if not BASE:
        print("not ok 1 - NATTER_URL is not set (e.g. NATTER_URL=http://127.0.0.1:43121)", flush=True)
        _exit(2)
    try:
        from importlib.metadata import version
        ver = version("python-socketio")
    except Exception:  # noqa: BLE001
        ver = "?"
    print(f"# python-socketio {ver} against {BASE}", flush=True)

    # Global watchdog: never hang.
    def on_timeout():
        print(f"not ok {passed + 1} - global timeout: did not finish within {TIMEOUT_S:.0f} s", flush=True)
        _exit(1)

    watchdog = threading.Timer(TIMEOUT_S, on_timeout)
    watchdog.daemon = True
    watchdog.start()

    tag = f"{int(time.time()):x}{''.join(random.choices(string.ascii_lowercase + string.digits, k=5))}"
    users = {}

    def register():
        for n in ("alice", "bob", "carol"):
            users[n] = register_and_login(f"py{n}_{tag}", f"py{n}.{tag}@example.test")

    check("register and log in three users over the JSON API", register)
    alice, bob, carol = users["alice"], users["bob"], users["carol"]

    room = {}

    def open_chat():
        status, body = api("POST", "/chats", {"email": bob["email"]}, alice["token"])
        expect_eq(status, 201, f"POST /api/v1/chats status ({body!r})")
        expect(isinstance(body.get("room_id"), str), f"room_id must be a string: {body!r}")
        room["rid"] = body["room_id"]

    check("POST /api/v1/chats {email} opens a direct room", open_chat)
    rid = room["rid"]

    def refused(token):
        p = Peer(token)
        try:
            p.connect()
        except socketio.exceptions.ConnectionError:
            pass
        else:
            p.sio.disconnect()
            raise AssertionError("the connection was accepted; expected connect_error 'unauthorized'")
        wait_for(lambda: p.connect_errors, "the connect_error event", timeout=3)
        err = p.connect_errors[0]
        msg = err.get("message") if isinstance(err, dict) else err
        expect_eq(msg, "unauthorized", f"connect_error data {err!r}")
        expect(not p.sio.connected, "client must not be connected")

    check("connect without a token -> connect_error 'unauthorized'", lambda: refused(None))
    check("connect with a bad token -> connect_error 'unauthorized'", lambda: refused(f"bogus-{tag}"))

    a, b, c = Peer(alice["token"]), Peer(bob["token"]), Peer(carol["token"])

    def connect_all():
        for p in (a, b, c):
            p.connect()
            expect(p.sio.connected, "client connected")
            expect_eq(p.sio.transport(), "websocket", "transport")

    check("connect with auth={'token': ...} over websocket", connect_all)

    def join():
        expect_eq(a.call("join-chat", {"rid": rid}), {"ok": True, "rid": rid, "last_seq": 0}, "alice join-chat ack")
        expect_eq(b.call("join-chat", {"rid": rid}), {"ok": True, "rid": rid, "last_seq": 0}, "bob join-chat ack")
        expect_eq(c.call("join-chat", {"rid": rid}), {"error": {"code": "not_member"}}, "non-member join-chat ack")

    check("join-chat ack {ok: True, rid, last_seq: 0}; a non-member gets not_member", join)

    def joined_event():
        wait_for(lambda: any(j.get("user_id") == bob["id"] for j in a.joined), f"joined-chat for bob at alice (got {a.joined!r})")
        j = next(j for j in a.joined if j.get("user_id") == bob["id"])
        expect_eq(j, {"rid": rid, "user_id": bob["id"], "username": bob["username"],
                      "msg": f"{bob['username']} is now online."}, "joined-chat payload")

    check("joined-chat 'NAME is now online.' reaches the room", joined_event)

    sent = {}

    def send():
        text = f"hello from python {tag}"
        ack = a.call("outgoing", {"rid": rid, "message": text, "client_id": f"py-{tag}",
                                  "sender_id": bob["id"], "sender_username": "mallory", "timestamp": 1})
        expect(isinstance(ack, dict) and ack.get("ok") is True, f"outgoing ack: {ack!r}")
        m = ack["message"]
        expect(isinstance(m.get("id"), str), f"Message.id must be a string: {m!r}")
        expect_eq(m.get("rid"), rid, "Message.rid")
        expect_eq(m.get("seq"), 1, "Message.seq")
        expect_eq(m.get("sender_id"), alice["id"], "Message.sender_id (server-decided)")
        expect_eq(m.get("sender_username"), alice["username"], "Message.sender_username (server-decided)")
        expect_eq(m.get("message"), text, "Message.message")
        expect_eq(m.get("client_id"), f"py-{tag}", "Message.client_id")
        ts = m.get("timestamp")
        expect(isinstance(ts, (int, float)) and abs(ts - time.time()) < 120,
               f"Message.timestamp must be the server's time in Unix seconds, got {ts!r}")
        sent["m1"] = m

    check("outgoing (forged sender/timestamp ignored) -> ack {ok: True, message}", send)

    def receive():
        wait_for(lambda: b.messages, "bob to receive the message")
        expect_eq(b.messages[0], sent["m1"], "message received by bob")
        time.sleep(0.3)
        expect_eq(a.messages, [], "the sending client must not get its own message")

    check("the other client receives 'message'; the sender does not", receive)

    def reply():
        ack = b.call("outgoing", {"rid": rid, "message": f"hi back {tag}"})
        expect(isinstance(ack, dict) and ack.get("ok") is True, f"outgoing ack: {ack!r}")
        expect_eq(ack["message"]["seq"], 2, "seq")
        expect_eq(ack["message"]["sender_id"], bob["id"], "sender_id")
        wait_for(lambda: a.messages, "alice to receive the reply")
        expect_eq(a.messages[0], ack["message"], "message received by alice")
        expect_eq(len(b.messages), 1, "bob must not get his own reply")

    check("reply the other way is received live", reply)

    def resend():
        before = len(b.messages)
        ack = a.call("outgoing", {"rid": rid, "message": f"hello from python {tag}", "client_id": f"py-{tag}"})
        expect_eq(ack, {"ok": True, "message": sent["m1"]}, "resend ack")
        time.sleep(0.4)
        expect_eq(len(b.messages), before, "resend must not be broadcast again")

    check("resend with the same client_id returns the stored message, no second broadcast", resend)

    def refusals():
        expect_eq(a.call("outgoing", {"rid": rid, "message": "   "}), {"error": {"code": "empty"}}, "empty")
        expect_eq(c.call("outgoing", {"rid": rid, "message": "let me in"}), {"error": {"code": "not_member"}}, "not_member")

    check("outgoing refusals: empty / not_member", refusals)

    def sync():
        ack = b.call("sync", {"rid": rid, "after_seq": 0})
        expect(isinstance(ack, dict) and ack.get("ok") is True, f"sync ack: {ack!r}")
        expect_eq([m["seq"] for m in ack["messages"]], [1, 2], "sync seqs")
        expect_eq(ack["messages"][0], sent["m1"], "sync message 1")

    check("sync {after_seq: 0} returns the room's messages in order", sync)

    watchdog.cancel()
    _exit(0)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        _exit(1)
