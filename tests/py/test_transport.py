"""python3-socketio (Debian) against $ENGRAM_BUILD/echo-server: websocket, polling,
acks, binary, namespaces and middleware refusal, with a second, independent client
implementation."""
import os
import socket
import subprocess
import threading
import time
import unittest

import socketio

BUILD = os.environ.get("ENGRAM_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EchoServer:
    def __init__(self):
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port))
        self.proc = subprocess.Popen([os.path.join(BUILD, "echo-server")], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("echo-server did not start")
                time.sleep(0.03)
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, err.decode(errors="replace")


class TransportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = EchoServer()

    @classmethod
    def tearDownClass(cls):
        code, err = cls.srv.stop()
        assert code == 0, "echo-server exit %s: %s" % (code, err[-4000:])
        assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]

    def roundtrip(self, transports, namespace="/"):
        sio = socketio.Client(reconnection=False)
        got = {}
        ev = threading.Event()
        auth_ev = threading.Event()

        @sio.on("message-back", namespace=namespace)
        def on_back(*args):
            got["back"] = list(args)
            ev.set()

        @sio.on("auth", namespace=namespace)
        def on_auth(data):
            got["auth"] = data
            auth_ev.set()

        sio.connect(self.srv.url, transports=transports, namespaces=[namespace],
                    auth={"token": "py"}, wait_timeout=5)
        try:
            self.assertTrue(auth_ev.wait(5))
            self.assertEqual(got["auth"], {"token": "py"})
            sio.emit("message", ("a", 1, {"b": [True, None]}), namespace=namespace)
            self.assertTrue(ev.wait(5))
            self.assertEqual(got["back"], ["a", 1, {"b": [True, None]}])
            ack = sio.call("message-with-ack", ("x", 2), namespace=namespace, timeout=5)
            # python-socketio returns a tuple when the ack carries several values
            self.assertEqual(list(ack), ["x", 2])
            blob = bytes(range(256)) * 10
            ack = sio.call("message-with-ack", blob, namespace=namespace, timeout=5)
            self.assertEqual(ack, blob)
        finally:
            sio.disconnect()

    def test_websocket(self):
        self.roundtrip(["websocket"])

    def test_polling(self):
        self.roundtrip(["polling"])

    def test_polling_upgrade(self):
        self.roundtrip(["polling", "websocket"])

    def test_custom_namespace(self):
        self.roundtrip(["websocket"], namespace="/custom")

    def test_refused_by_middleware(self):
        sio = socketio.Client(reconnection=False)
        errors = []
        done = threading.Event()

        @sio.on("connect_error", namespace="/refuse")
        def on_err(data):
            errors.append(data)
            done.set()

        try:
            sio.connect(self.srv.url, transports=["websocket"], namespaces=["/refuse"],
                        wait_timeout=3)
        except socketio.exceptions.ConnectionError:
            pass
        self.assertTrue(done.wait(5))
        msg = errors[0]["message"] if isinstance(errors[0], dict) else errors[0]
        self.assertEqual(msg, "refused by middleware")
        sio.disconnect()


if __name__ == "__main__":
    unittest.main()
