// The engram binary's transport surface: /healthz and the Socket.IO "echo" event (acked,
// and emitted back without an ack) over websocket and polling, for a signed-in user.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, waitFor } from "./lib/proc.mjs";

test("engram serves /healthz and echoes over Socket.IO", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-transport-"));
  const srv = await startBinary("engram", {
    env: { ENGRAM_DATA_DIR: dir, JWT_SECRET: "transport-test-secret-0123456789", ENGRAM_LOG_LEVEL: "warn" },
  });
  try {
    const r = await fetch(`${srv.url}/healthz`);
    assert.equal(r.status, 200);
    assert.equal((await r.json()).status, "ok");
    const reg = await fetch(`${srv.url}/api/auth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "t@example.com", password: "transport-pass", fullName: { firstName: "T", lastName: "P" } }),
    });
    assert.equal(reg.status, 201);
    const c = reg.headers.getSetCookie().find((v) => v.startsWith("token="));
    const token = c.slice(6, c.indexOf(";"));
    for (const transports of [["websocket"], ["polling"]]) {
      const s = io(srv.url, { transports, reconnection: false, auth: { token } });
      await waitFor(s, "connect");
      const ack = await s.timeout(2000).emitWithAck("echo", { hello: "world", n: [1, 2] });
      assert.deepEqual(ack, { hello: "world", n: [1, 2] });
      const back = waitFor(s, "echo");
      s.emit("echo", "no ack");
      assert.equal(await back, "no ack");
      s.close();
    }
  } finally {
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
