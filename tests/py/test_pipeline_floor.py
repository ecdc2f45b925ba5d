"""bench/pipeline_floor (the pipeline benchmark's floor server) speaks engram's ai-message
contract, checked with python3-socketio (Debian), an independent client: the handshake's
JWT check, the ack, the streamed chunks and the final ai-response as engram shapes them,
the chat-message fan-out to the user's other sockets, the error answers, and at the store
and embed levels what reaches the SQLite store (escaped content decoded, idempotent
clientId, the hash embedder's model recorded with the memory)."""
import base64
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import socketio

BUILD = os.environ.get("ENGRAM_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
SECRET = "floor-test-secret-0123456789abcdef"
ANSWER = "Noted. I will remember that."  # what bench/fake_model streams


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(user_id, secret=SECRET):
    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"id": user_id, "iat": now, "exp": now + 3600}).encode())
    sig = hmac.new(secret.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64(sig)


def read_port(proc, prefix):
    line = proc.stdout.readline().strip()
    assert line.startswith(prefix), "unexpected first line %r" % line
    return int(line[len(prefix):])


class Client:
    """One Socket.IO connection that records what the server emits to it."""

    def __init__(self, url, user, cookie=False):
        self.sio = socketio.Client(reconnection=False)
        self.chunks, self.finals, self.fanout = [], [], []
        self.final_seen = threading.Event()
        self.sio.on("ai-response-chunk", self.chunks.append)
        self.sio.on("ai-response", self.on_final)
        self.sio.on("chat-message", self.fanout.append)
        tok = token(user)
        if cookie:
            self.sio.connect(url, headers={"Cookie": "token=" + tok}, transports=["websocket"],
                             wait_timeout=10)
        else:
            self.sio.connect(url, auth={"token": tok}, transports=["websocket"], wait_timeout=10)

    def on_final(self, r):
        self.finals.append(r)
        self.final_seen.set()

    def ask(self, payload):
        """Sends an ai-message with an ack; returns (ack, final ai-response)."""
        self.final_seen.clear()
        ack = self.sio.call("ai-message", payload, timeout=10)
        assert self.final_seen.wait(10), "no ai-response"
        return ack, self.finals[-1]

    def close(self):
        self.sio.disconnect()


class FloorCase(unittest.TestCase):
    level = "wire"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="engram-floor-")
        cls.db = os.path.join(cls.dir, "engram.db")
        pairs = os.path.join(cls.dir, "pairs")
        subprocess.run([os.path.join(BUILD, "chat_prefill"), "--db", cls.db, "--users", "2",
                        "--chats", "2", "--memories", "3", "--out", pairs], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(pairs) as f:
            rows = [l.split() for l in f.read().splitlines()]
        cls.user = rows[0][0]
        cls.chats = [c for u, c in rows if u == cls.user]
        cls.other_user = [u for u, _ in rows if u != cls.user][0]
        cls.fake = subprocess.Popen([os.path.join(BUILD, "fake_model"), "0"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        fport = read_port(cls.fake, "PORT=")
        env = dict(os.environ, JWT_SECRET=SECRET, ENGRAM_DB=cls.db, ENGRAM_DATA_DIR=cls.dir,
                   OPENAI_BASE_URL="http://127.0.0.1:%d/v1" % fport, ENGRAM_LOG_LEVEL="warn")
        cls.srv = subprocess.Popen([os.path.join(BUILD, "pipeline_floor"), "--level", cls.level,
                                    "--port", "0"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        cls.url = "http://127.0.0.1:%d" % read_port(cls.srv, "port ")

    @classmethod
    def tearDownClass(cls):
        cls.srv.terminate()
        _, err = cls.srv.communicate(timeout=15)
        cls.fake.terminate()
        cls.fake.wait(timeout=10)
        cls.fake.stdout.close()
        shutil.rmtree(cls.dir, ignore_errors=True)
        assert cls.srv.returncode == 0, "pipeline_floor exit %s: %s" % (cls.srv.returncode,
                                                                        err[-4000:])
        assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]

    def metric(self, name):
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(line.split()[1])
        return None

    def test_answer_shapes_and_fanout(self):
        a = Client(self.url, self.user)
        b = Client(self.url, self.user, cookie=True)  # the same user's second device
        o = Client(self.url, self.other_user)
        try:
            before = self.metric("engram_answers_total")
            chat = self.chats[0]
            ack, final = a.ask({"chatId": chat, "content": "Where did I put the kalo keys?"})
            self.assertEqual(set(ack), {"ok", "messageId"})
            self.assertTrue(ack["ok"])
            self.assertRegex(ack["messageId"], "^[0-9a-f]{24}$")
            self.assertEqual(list(final), ["chat", "content", "messageId", "memories"])
            self.assertEqual(final["chat"], chat)
            self.assertEqual(final["content"], ANSWER)
            self.assertEqual(final["memories"], [])
            self.assertRegex(final["messageId"], "^[0-9a-f]{24}$")
            self.assertNotEqual(final["messageId"], ack["messageId"])
            self.assertEqual([c["seq"] for c in a.chunks], list(range(len(a.chunks))))
            self.assertEqual("".join(c["delta"] for c in a.chunks), ANSWER)
            for c in a.chunks:
                self.assertEqual(list(c), ["chat", "messageId", "seq", "delta"])
                self.assertEqual((c["chat"], c["messageId"]), (chat, final["messageId"]))
            deadline = time.time() + 5
            while len(b.fanout) < 2 and time.time() < deadline:
                time.sleep(0.02)
            self.assertEqual([(m["chat"], m["message"]["role"], m["message"]["id"],
                               m["message"]["content"]) for m in b.fanout],
                             [(chat, "user", ack["messageId"], "Where did I put the kalo keys?"),
                              (chat, "model", final["messageId"], ANSWER)])
            self.assertRegex(b.fanout[0]["message"]["createdAt"],
                             r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(a.fanout, [])  # not to the sender
            self.assertEqual(o.fanout, [])  # nor to another user
            self.assertEqual(b.finals, [])
            self.assertEqual(self.metric("engram_answers_total"), before + 1)
        finally:
            a.close()
            b.close()
            o.close()

    def test_escaped_content_and_no_ack(self):
        a = Client(self.url, self.user)
        try:
            text = 'caf\u00e9 "quoted" back\\slash\nline \U0001F600 end'
            payload = json.dumps({"content": text, "chatId": self.chats[1], "x": [1, {"y": "}"}]})
            # json.dumps escapes the non-ASCII characters as \uXXXX (surrogate pair too).
            self.assertIn("\\ud83d\\ude00", payload)
            ack, final = a.ask(json.loads(payload))
            self.assertTrue(ack["ok"], ack)
            self.assertEqual(final["content"], ANSWER)
            # Without an ack: the answer still comes.
            a.final_seen.clear()
            a.sio.emit("ai-message", {"chatId": self.chats[1], "content": "no ack here"})
            self.assertTrue(a.final_seen.wait(10))
            self.assertEqual(a.finals[-1]["content"], ANSWER)
            if self.level != "wire":
                con = sqlite3.connect(self.db)
                rows = con.execute("SELECT content FROM messages WHERE id = ?",
                                   (ack["messageId"],)).fetchall()
                con.close()
                self.assertEqual(rows, [(text,)])
        finally:
            a.close()

    def test_errors(self):
        a = Client(self.url, self.user)
        try:
            cases = [
                ({"chatId": self.chats[0]}, "bad_request", "chatId and content are required"),
                ({"chatId": self.chats[0], "content": ""}, "bad_request",
                 "chatId and content are required"),
                ({"content": "hi"}, "bad_request", "chatId and content are required"),
                ({"chatId": 5, "content": "hi"}, "bad_request", "chatId and content are required"),
                ("just a string", "bad_request", "chatId and content are required"),
                ({"chatId": "nope", "content": "hi"}, "not_found", "Chat not found"),
                ({"chatId": self.chats[0], "content": "x" * 65537}, "too_large",
                 "Message too large (at most 65536 bytes)"),
                ({"chatId": self.chats[0], "content": "hi", "clientId": 7}, "bad_request",
                 "clientId must be a string of at most 128 bytes"),
                ({"chatId": self.chats[0], "content": "hi", "clientId": "c" * 129}, "bad_request",
                 "clientId must be a string of at most 128 bytes"),
            ]
            if self.level != "wire":  # a well-formed id of no chat of this user
                cases.append(({"chatId": "0123456789abcdef01234567", "content": "hi"},
                              "not_found", "Chat not found"))
            for payload, code, msg in cases:
                with self.subTest(payload=str(payload)[:80]):
                    ack, final = a.ask(payload)
                    self.assertEqual(ack, {"ok": False, "error": msg, "code": code})
                    chat = payload.get("chatId") if isinstance(payload, dict) else None
                    self.assertEqual(final, {"chat": chat if isinstance(chat, str) else "",
                                             "error": msg, "code": code})
        finally:
            a.close()

    def test_handshake_refusals(self):
        if self.level != "wire":
            self.skipTest("the handshake is the same at every level")
        for auth, msg in ((None, "Authentication error: No token provided"),
                          ({"token": "x.y.z"}, "Authentication error: Invalid token"),
                          ({"token": token(self.user, "another-secret-0123456789")},
                           "Authentication error: Invalid token")):
            with self.subTest(msg=msg, auth=auth):
                sio = socketio.Client(reconnection=False)
                errors = []
                sio.on("connect_error", errors.append)
                with self.assertRaises(socketio.exceptions.ConnectionError):
                    sio.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=2)
                self.assertEqual(errors, [{"message": msg}])


class FloorStoreTest(FloorCase):
    level = "store"

    def test_stored_and_idempotent(self):
        a = Client(self.url, self.user)
        try:
            chat = self.chats[0]
            ack, final = a.ask({"chatId": chat, "content": "remember the tulo", "clientId": "c-1"})
            self.assertTrue(ack["ok"])
            # The same clientId again: acked with the stored id, marked duplicate, not answered.
            a.final_seen.clear()
            again = a.sio.call("ai-message", {"chatId": chat, "content": "remember the tulo",
                                              "clientId": "c-1"}, timeout=10)
            self.assertEqual(again, {"ok": True, "messageId": ack["messageId"], "duplicate": True})
            self.assertFalse(a.final_seen.wait(0.3))
            con = sqlite3.connect(self.db)
            msgs = con.execute("SELECT id, role, content FROM messages WHERE id IN (?, ?)",
                               (ack["messageId"], final["messageId"])).fetchall()
            mems = con.execute("SELECT id, embed_model, dims FROM memories WHERE id IN (?, ?)",
                               (ack["messageId"], final["messageId"])).fetchall()
            con.close()
            self.assertEqual(sorted(msgs), sorted([(ack["messageId"], "user", "remember the tulo"),
                                                   (final["messageId"], "model", ANSWER)]))
            embedded = self.level == "embed"
            self.assertEqual(len(mems), 2)
            for _, model, dims in mems:
                self.assertEqual((model is not None, dims), (embedded, 768 if embedded else 0))
        finally:
            a.close()


class FloorEmbedTest(FloorStoreTest):
    level = "embed"


if __name__ == "__main__":
    unittest.main()
