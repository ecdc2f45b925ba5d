"""The chat flow end to end with python3-socketio (Debian), a second, independent client:
register over REST, create two chats, tell a fact in one, ask in the other, check the
streamed answer, the recalled memory and what the fake model was sent."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import socketio

BUILD = os.environ.get("ENGRAM_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
SRC = os.environ.get("ENGRAM_SRC", os.path.join(os.path.dirname(__file__), "../.."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(what + " did not start")
            time.sleep(0.03)


def http(method, url, body=None, cookie=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if cookie:
        req.add_header("Cookie", cookie)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers, json.loads(r.read() or b"null")


class EngramServerCase(unittest.TestCase):
    """A real engram (Gemini provider) against the fake model server, for the whole class."""
    prefix = "engram-py-"

    @classmethod
    def setUpClass(cls):
        cls.fake = subprocess.Popen(["node", os.path.join(SRC, "tests/fakes/fake-llm.mjs"), "--port", "0",
                                     "--exit-on-stdin-close"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = cls.fake.stdout.readline().strip()
        assert line.startswith("PORT="), line
        cls.fake_url = "http://127.0.0.1:" + line[5:]
        cls.dir = tempfile.mkdtemp(prefix=cls.prefix)
        cls.port = free_port()
        env = dict(os.environ, PORT=str(cls.port), ENGRAM_DATA_DIR=cls.dir,
                   JWT_SECRET="python-test-secret-0123456789abcdef", ENGRAM_LLM="gemini",
                   GEMINI_API_KEY="test-key", ENGRAM_GEMINI_BASE_URL=cls.fake_url,
                   ENGRAM_LOG_LEVEL="warn")
        cls.srv = subprocess.Popen([os.path.join(BUILD, "engram")], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(cls.port, cls.srv, "engram")
        cls.url = "http://127.0.0.1:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.terminate()
        _, err = cls.srv.communicate(timeout=15)
        cls.fake.stdin.close()
        cls.fake.wait(timeout=10)
        shutil.rmtree(cls.dir, ignore_errors=True)
        err = err.decode(errors="replace")
        assert cls.srv.returncode == 0, "engram exit %s: %s" % (cls.srv.returncode, err[-4000:])
        assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]


class ChatFlowTest(EngramServerCase):
    prefix = "engram-py-chat-"

    def register(self, name):
        status, headers, body = http("POST", self.url + "/api/auth/register", {
            "email": name + "@example.org", "password": "py-password-" + name,
            "fullName": {"firstName": name, "lastName": "Py"}})
        self.assertEqual(status, 201)
        cookie = [c for c in headers.get_all("Set-Cookie") if c.startswith("token=")][0]
        return body["user"]["_id"], cookie.split(";")[0]

    def chat(self, cookie, title):
        status, _, body = http("POST", self.url + "/api/chat", {"title": title}, cookie)
        self.assertEqual(status, 201)
        return body["chat"]["_id"]

    def ask(self, sio, chat_id, content):
        done = threading.Event()
        got = {"chunks": [], "final": None}

        def on_chunk(c):
            if c["chat"] == chat_id:
                got["chunks"].append(c)

        def on_final(r):
            if r["chat"] == chat_id:
                got["final"] = r
                done.set()

        sio.on("ai-response-chunk", on_chunk)
        sio.on("ai-response", on_final)
        ack = sio.call("ai-message", {"chatId": chat_id, "content": content}, timeout=10)
        self.assertTrue(done.wait(10), "no ai-response")
        return ack, got

    def test_fact_recalled_across_chats_websocket_and_polling(self):
        for transports in (["websocket"], ["polling"]):
            with self.subTest(transports=transports):
                _, cookie = self.register("py" + transports[0])
                a = self.chat(cookie, "A")
                b = self.chat(cookie, "B")
                sio = socketio.Client(reconnection=False)
                sio.connect(self.url, headers={"Cookie": cookie}, transports=transports, wait_timeout=10)
                try:
                    fact = "My grandmother's recipe uses cardamom and saffron (%s)." % transports[0]
                    ack, got = self.ask(sio, a, fact)
                    self.assertTrue(ack["ok"])
                    self.assertEqual("".join(c["delta"] for c in got["chunks"]), got["final"]["content"])
                    ack, got = self.ask(sio, b, "Which spices does my grandmother's recipe use?")
                    texts = [m["text"] for m in got["final"]["memories"]]
                    self.assertIn(fact, texts)
                    # The fake Gemini received the memory in systemInstruction.
                    _, _, reqs = http("GET", self.fake_url + "/__requests")
                    last = [r for r in reqs if "GenerateContent" in r["path"] or "generateContent" in r["path"]][-1]
                    self.assertEqual(last["headers"]["x-goog-api-key"], "test-key")
                    sysi = "".join(p["text"] for p in last["body"]["systemInstruction"]["parts"])
                    self.assertIn("cardamom", sysi)
                    self.assertEqual(last["body"]["contents"][-1]["role"], "user")
                finally:
                    sio.disconnect()

    def test_refused_without_token(self):
        sio = socketio.Client(reconnection=False)
        errors = []
        sio.on("connect_error", lambda data: errors.append(data))
        with self.assertRaises(socketio.exceptions.ConnectionError):
            sio.connect(self.url, transports=["websocket"], wait_timeout=5)
        self.assertEqual(errors, [{"message": "Authentication error: No token provided"}])


if __name__ == "__main__":
    unittest.main()
