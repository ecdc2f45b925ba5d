// 500 concurrent socket.io-client connections to one echo-server, each doing acked round
// trips at the same time, then a broadcast reaching all of them. @serial
// One Node process drives all clients, so it answers pings late under this load: the
// server runs with the default heartbeat (25 s / 20 s) instead of the reference 300 ms.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startBinary, waitFor } from "./lib/proc.mjs";

const N = 500;

test(`${N} concurrent clients`, async () => {
  const srv = await startBinary("echo-server", {
    env: { PING_INTERVAL: "25000", PING_TIMEOUT: "20000", CONNECT_TIMEOUT: "45000" },
  });
  const socks = [];
  try {
    for (let i = 0; i < N; i++) {
      socks.push(io(srv.url, { transports: ["websocket"], forceNew: true, reconnection: false, timeout: 20000 }));
    }
    await Promise.all(socks.map((s) => waitFor(s, "connect", 20000)));
    assert.equal(new Set(socks.map((s) => s.id)).size, N, "socket ids are unique");
    for (let round = 0; round < 3; round++) {
      const acks = await Promise.all(
        socks.map((s, i) => s.timeout(20000).emitWithAck("message-with-ack", { i, round }))
      );
      acks.forEach((a, i) => assert.deepEqual(a, { i, round }));
    }
    // Every socket joins one room; one emit reaches all of them (encode once, fan out).
    await Promise.all(socks.map((s) => s.timeout(20000).emitWithAck("join", "all")));
    const got = Promise.all(socks.map((s) => waitFor(s, "room-message", 20000)));
    socks[0].emit("to-room", "all", "fanout");
    const res = await got;
    assert.equal(res.length, N);
    assert.deepEqual(res[N - 1], ["all", "fanout"]);
  } finally {
    for (const s of socks) s.close();
    await srv.stop();
  }
});
