// The engram binary's transport surface: /healthz and the Socket.IO "echo" event.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startBinary, waitFor } from "./lib/proc.mjs";

test("engram serves /healthz and echoes over Socket.IO", async (t) => {
  const srv = await startBinary("engram");
  try {
    const r = await fetch(`${srv.url}/healthz`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: "ok" });
    const s = io(srv.url, { transports: ["websocket"], reconnection: false });
    await waitFor(s, "connect");
    const ack = await s.timeout(2000).emitWithAck("echo", { hello: "world" });
    assert.deepEqual(ack, { hello: "world" });
    const back = waitFor(s, "echo");
    s.emit("echo", "no ack");
    assert.equal(await back, "no ack");
    s.close();
  } finally {
    await srv.stop();
  }
});
