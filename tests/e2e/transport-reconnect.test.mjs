// socket.io-client reconnects on its own after the echo-server restarts on the same port.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startBinary, waitFor } from "./lib/proc.mjs";

for (const transports of [["websocket"], ["polling", "websocket"]]) {
  test(`reconnection after a server restart (${transports.join("+")})`, async () => {
    let srv = await startBinary("echo-server");
    const port = srv.port;
    const s = io(srv.url, { transports, reconnectionDelay: 50, reconnectionDelayMax: 200, timeout: 2000 });
    try {
      await waitFor(s, "connect");
      const firstId = s.id;
      const gone = waitFor(s, "disconnect", 5000);
      await srv.stop();
      const r = await gone;
      // The reference test server pings every 300 ms with a 200 ms timeout: a server slow to
      // go away (the sanitizer build) may be noticed by the missing ping first.
      assert.match(Array.isArray(r) ? r[0] : r, /transport (close|error)|ping timeout/);
      srv = await startBinary("echo-server", { port });
      // The client retries every 200 ms: it may be back before startBinary returns.
      if (!s.connected) await waitFor(s, "connect", 10000);
      assert.ok(s.connected);
      assert.notEqual(s.id, firstId);
      const ack = await s.timeout(2000).emitWithAck("message-with-ack", "again");
      assert.equal(ack, "again");
    } finally {
      s.close();
      await srv.stop();
    }
  });
}
