"""The bytes of the chat events on the wire (python3-socketio's Engine.IO packet log): the
ack, ai-response-chunk, ai-response and the chat-message fan-out (seen by a second socket of
the same user) are written as JSON text by the server (no jansson tree), so check that each packet is exactly the canonical form of what it carries (keys in
the documented order, JSON.stringify's separators and escaping, reals in their shortest
round-trip form), with quotes, backslashes, control characters, non-ASCII and emoji in the
texts, a memory recalled into the answer, and both transports."""
import json
import logging
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from test_chat import EngramServerCase, http  # noqa: E402

import socketio  # noqa: E402


class PacketLog(logging.Handler):
    def __init__(self):
        super().__init__()
        self.packets = []

    def emit(self, record):
        if record.msg.startswith("Received packet") and len(record.args) == 2:
            if record.args[0] == "MESSAGE" and isinstance(record.args[1], str):
                self.packets.append(record.args[1])


def canonical(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class ChatWireTest(EngramServerCase):
    prefix = "engram-py-wire-"

    def test_event_bytes(self):
        for transport in ("websocket", "polling"):
            with self.subTest(transport=transport):
                self.run_transport(transport)

    def run_transport(self, transport):
        name = "wire" + transport
        status, headers, _ = http("POST", self.url + "/api/auth/register", {
            "email": name + "@example.org", "password": "py-password-" + name,
            "fullName": {"firstName": name, "lastName": "Py"}})
        self.assertEqual(status, 201)
        cookie = [c for c in headers.get_all("Set-Cookie") if c.startswith("token=")][0].split(";")[0]
        chats = []
        for title in ("A", "B"):
            status, _, body = http("POST", self.url + "/api/chat", {"title": title}, cookie)
            self.assertEqual(status, 201)
            chats.append(body["chat"]["_id"])
        log = PacketLog()
        elog = logging.getLogger("wire-" + transport)
        elog.setLevel(logging.INFO)
        elog.propagate = False
        elog.addHandler(log)
        log2 = PacketLog()
        elog2 = logging.getLogger("wire2-" + transport)
        elog2.setLevel(logging.INFO)
        elog2.propagate = False
        elog2.addHandler(log2)
        other = socketio.Client(reconnection=False, engineio_logger=elog2)
        fanned = threading.Semaphore(0)
        other.on("chat-message", lambda m: fanned.release())
        other.connect(self.url, headers={"Cookie": cookie}, transports=[transport], wait_timeout=10)
        sio = socketio.Client(reconnection=False, engineio_logger=elog)
        done = threading.Event()
        sio.on("ai-response", lambda r: done.set())
        sio.connect(self.url, headers={"Cookie": cookie}, transports=[transport], wait_timeout=10)
        fact = 'My "quoted" cat\\dog\tlikes\nsaffron \x01 caf\u00e9 \u2028 \U0001F600 (%s).' % transport
        try:
            for chat_id, content in ((chats[0], fact), (chats[1], "What does my cat\\dog like?")):
                done.clear()
                ack = sio.call("ai-message", {"chatId": chat_id, "content": content}, timeout=10)
                self.assertTrue(ack["ok"])
                self.assertTrue(done.wait(10), "no ai-response")
            for _ in range(4):  # both sides of both exchanges
                self.assertTrue(fanned.acquire(timeout=10), "no chat-message")
        finally:
            sio.disconnect()
            other.disconnect()
        fan = []
        for p in log2.packets:
            if p.startswith('2["chat-message'):
                args = json.loads(p[1:])
                self.assertEqual(p[1:], canonical(args), "not canonical: " + p)
                self.assertEqual(list(args[1].keys()), ["chat", "message"])
                self.assertEqual(list(args[1]["message"].keys()), ["id", "role", "content", "createdAt"])
                fan.append((args[1]["chat"], args[1]["message"]["role"], args[1]["message"]["content"]))
        self.assertEqual(len(fan), 4)
        self.assertIn((chats[0], "user", fact), fan)
        self.assertEqual([r for _, r, _ in fan], ["user", "model", "user", "model"])
        seen = {"ack": 0, "ai-response-chunk": 0, "ai-response": 0}
        memories = []
        for p in log.packets:
            if p.startswith("3"):
                i = p.index("[")
                args = json.loads(p[i:])
                self.assertEqual(p[i:], canonical(args))
                self.assertEqual(list(args[0].keys()), ["ok", "messageId"])
                seen["ack"] += 1
            elif p.startswith('2["ai-response'):
                args = json.loads(p[1:])
                self.assertEqual(p[1:], canonical(args), "not canonical: " + p)
                ev, payload = args[0], args[1]
                seen[ev] += 1
                if ev == "ai-response-chunk":
                    self.assertEqual(list(payload.keys()), ["chat", "messageId", "seq", "delta"])
                else:
                    self.assertEqual(list(payload.keys()), ["chat", "content", "messageId", "memories"])
                    for m in payload["memories"]:
                        self.assertEqual(list(m.keys()), ["id", "chatId", "role", "text", "score", "createdAt"])
                        self.assertIsInstance(m["score"], float)
                        memories.append(m["text"])
        self.assertEqual(seen["ack"], 2)
        self.assertEqual(seen["ai-response"], 2)
        self.assertGreater(seen["ai-response-chunk"], 0)
        self.assertIn(fact, memories)


if __name__ == "__main__":
    unittest.main()
