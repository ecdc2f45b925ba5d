// The Socket.IO protocol test suite (socket.io-protocol's test-suite.js, EIO=4), raw
// frames over WebSocket and raw HTTP polling against $ENGRAM_BUILD/echo-server.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startBinary, waitFor, sleep } from "./lib/proc.mjs";

let srv, URL, WS_URL;
const sockets = [];

before(async () => {
  srv = await startBinary("echo-server");
  URL = srv.url;
  WS_URL = URL.replace("http", "ws");
});
after(async () => {
  for (const s of sockets) s.terminate();
  await srv.stop();
});

// A WebSocket with a queue of received messages (text as strings, binary as Buffers).
function open(qs = "EIO=4&transport=websocket") {
  const ws = new WebSocket(`${WS_URL}/socket.io/?${qs}`);
  sockets.push(ws);
  ws.queue = [];
  ws.waiters = [];
  ws.closed = new Promise((r) => ws.on("close", r));
  ws.on("error", () => {});
  ws.on("message", (d, bin) => {
    const m = bin ? d : d.toString();
    const w = ws.waiters.shift();
    if (w) w(m);
    else ws.queue.push(m);
  });
  ws.next = (ms = 3000) =>
    ws.queue.length
      ? Promise.resolve(ws.queue.shift())
      : new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error("no message")), ms);
          ws.waiters.push((m) => {
            clearTimeout(t);
            resolve(m);
          });
        });
  // The next message that is not a ping (pings answered).
  ws.nextNonPing = async (ms = 3000) => {
    for (;;) {
      const m = await ws.next(ms);
      if (m === "2") {
        ws.send("3");
        continue;
      }
      return m;
    }
  };
  return ws;
}

async function sioConnection() {
  const ws = open();
  await ws.next(); // Engine.IO handshake
  ws.send("40");
  await ws.nextNonPing(); // Socket.IO handshake
  await ws.nextNonPing(); // "auth"
  return ws;
}

describe("connect", () => {
  test("main namespace", async () => {
    const ws = open();
    assert.equal((await ws.next())[0], "0");
    ws.send("40");
    const data = await ws.nextNonPing();
    assert.ok(data.startsWith("40"));
    const hs = JSON.parse(data.slice(2));
    assert.deepEqual(Object.keys(hs), ["sid"]);
    assert.match(hs.sid, /^[A-Za-z0-9_-]{20}$/);
    assert.equal(await ws.nextNonPing(), '42["auth",{}]');
  });

  test("main namespace with a payload", async () => {
    const ws = open();
    await ws.next();
    ws.send('40{"token":"123"}');
    assert.ok((await ws.nextNonPing()).startsWith("40{"));
    assert.equal(await ws.nextNonPing(), '42["auth",{"token":"123"}]');
  });

  test("custom namespace, with and without payload", async () => {
    const ws = open();
    await ws.next();
    ws.send("40/custom,");
    const data = await ws.nextNonPing();
    assert.ok(data.startsWith("40/custom,"));
    assert.deepEqual(Object.keys(JSON.parse(data.slice(10))), ["sid"]);
    assert.equal(await ws.nextNonPing(), '42/custom,["auth",{}]');
    const ws2 = open();
    await ws2.next();
    ws2.send('40/custom,{"token":"abc"}');
    assert.ok((await ws2.nextNonPing()).startsWith("40/custom,"));
    assert.equal(await ws2.nextNonPing(), '42/custom,["auth",{"token":"abc"}]');
  });

  test("unknown namespace", async () => {
    const ws = open();
    await ws.next();
    ws.send("40/random");
    assert.equal(await ws.nextNonPing(), '44/random,{"message":"Invalid namespace"}');
  });

  test("invalid handshake closes", async () => {
    const ws = open();
    await ws.next();
    ws.send("4abc");
    await ws.closed;
  });

  test("no CONNECT within connectTimeout (1000 ms) closes", async () => {
    const ws = open();
    await ws.next();
    const t0 = Date.now();
    const pinger = setInterval(() => {
      while (ws.queue.length) if (ws.queue.shift() === "2") ws.send("3");
    }, 20);
    await ws.closed;
    clearInterval(pinger);
    const dt = Date.now() - t0;
    assert.ok(dt >= 900 && dt < 2500, `closed after ${dt} ms`);
  });
});

describe("disconnect", () => {
  test("from the main namespace: the connection stays (next is a ping)", async () => {
    const ws = await sioConnection();
    ws.send("41");
    assert.equal(await ws.next(), "2");
  });

  test("connect then disconnect from a custom namespace", async () => {
    const ws = await sioConnection();
    ws.send("40/custom");
    await ws.nextNonPing();
    await ws.nextNonPing();
    ws.send("41/custom");
    ws.send('42["message","message to main namespace",1,2]');
    assert.equal(await ws.nextNonPing(), '42["message-back","message to main namespace",1,2]');
  });

  test("an event for a namespace not joined closes", async () => {
    const ws = await sioConnection();
    ws.send('42/custom,["message"]');
    await ws.closed;
  });
});

describe("messages", () => {
  test("plain text", async () => {
    const ws = await sioConnection();
    ws.send('42["message",1,"2",{"3":[true]}]');
    assert.equal(await ws.nextNonPing(), '42["message-back",1,"2",{"3":[true]}]');
  });

  test("binary attachments", async () => {
    const ws = await sioConnection();
    ws.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    ws.send(Uint8Array.from([1, 2, 3]));
    ws.send(Uint8Array.from([4, 5, 6]));
    assert.equal(
      await ws.nextNonPing(),
      '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    );
    assert.deepEqual([...(await ws.nextNonPing())], [1, 2, 3]);
    assert.deepEqual([...(await ws.nextNonPing())], [4, 5, 6]);
  });

  test("plain text with an ack", async () => {
    const ws = await sioConnection();
    ws.send('42456["message-with-ack",1,"2",{"3":[false]}]');
    assert.equal(await ws.nextNonPing(), '43456[1,"2",{"3":[false]}]');
  });

  test("binary with an ack", async () => {
    const ws = await sioConnection();
    ws.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    ws.send(Uint8Array.from([1, 2, 3]));
    ws.send(Uint8Array.from([4, 5, 6]));
    assert.equal(
      await ws.nextNonPing(),
      '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    );
    assert.deepEqual([...(await ws.nextNonPing())], [1, 2, 3]);
    assert.deepEqual([...(await ws.nextNonPing())], [4, 5, 6]);
  });

  test("a text packet while attachments are expected closes", async () => {
    const ws = await sioConnection();
    ws.send('451-["message",{"_placeholder":true,"num":0}]');
    ws.send('42["message"]');
    await ws.closed;
  });
});

describe("polling", () => {
  test("CONNECT and an event over raw long-polling", async () => {
    const r = await fetch(`${URL}/socket.io/?EIO=4&transport=polling`);
    const { sid } = JSON.parse((await r.text()).slice(1));
    const u = `${URL}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    const p = await fetch(u, { method: "POST", body: '40{"x":1}\x1e42["message","hi"]' });
    assert.equal(await p.text(), "ok");
    await sleep(20);
    const g = await fetch(u);
    const packets = (await g.text()).split("\x1e");
    assert.ok(packets[0].startsWith("40{\"sid\":"));
    assert.deepEqual(packets.slice(1), ['42["auth",{"x":1}]', '42["message-back","hi"]']);
  });
});
