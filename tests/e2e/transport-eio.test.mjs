// The npm engine.io-client against $ENGRAM_BUILD/eio-echo (path /engine.io/), plus raw
// HTTP/WebSocket checks of the Engine.IO v4 wire rules and error answers.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import WebSocket from "ws";
import { startBinary, waitFor, sleep } from "./lib/proc.mjs";

let srv;
const open = [];

before(async () => {
  srv = await startBinary("eio-echo");
});
after(async () => {
  for (const s of open) s.close();
  await srv.stop();
});

// The next WebSocket message as a string (text) or Buffer (binary).
function nextMsg(ws, ms = 3000) {
  return waitFor(ws, "message", ms).then(([d, bin]) => (bin ? d : d.toString()));
}

function eio(opts) {
  const s = new Socket(srv.url, { path: "/engine.io/", ...opts });
  open.push(s);
  return s;
}

for (const [label, transports] of [
  ["websocket", ["websocket"]],
  ["polling", ["polling"]],
  ["polling+upgrade", ["polling", "websocket"]],
]) {
  test(`engine.io-client ${label}: text and binary echo`, async () => {
    const s = eio({ transports });
    const hs = await waitFor(s, "handshake");
    assert.match(hs.sid, /^[A-Za-z0-9_-]{20}$/);
    assert.equal(hs.pingInterval, 300);
    assert.equal(hs.pingTimeout, 200);
    assert.equal(hs.maxPayload, 1000000);
    if (label === "polling+upgrade") await waitFor(s, "upgrade");
    const msgs = [];
    const got = new Promise((r) =>
      s.on("message", (m) => {
        msgs.push(m);
        if (msgs.length === 4) r();
      })
    );
    s.send("hello");
    s.send("€ unicode ✓");
    s.send(Uint8Array.from([1, 2, 3, 0, 255]));
    s.send("x".repeat(100000));
    await got;
    assert.equal(msgs[0], "hello");
    assert.equal(msgs[1], "€ unicode ✓");
    assert.ok(typeof msgs[2] !== "string", "binary stays binary");
    assert.deepEqual([...new Uint8Array(msgs[2])], [1, 2, 3, 0, 255]);
    assert.equal(msgs[3].length, 100000);
    s.close();
  });
}

describe("wire rules (raw HTTP)", () => {
  const q = (extra) => `${srv.url}/engine.io/?${extra}`;
  async function handshake() {
    const r = await fetch(q("EIO=4&transport=polling"));
    assert.equal(r.status, 200);
    const t = await r.text();
    assert.equal(t[0], "0");
    return JSON.parse(t.slice(1));
  }

  test("handshake fields", async () => {
    const h = await handshake();
    assert.deepEqual(Object.keys(h).sort(), ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
    assert.deepEqual(h.upgrades, ["websocket"]);
  });

  test("error answers match the reference server", async () => {
    const cases = [
      [q("EIO=4&transport=abc"), "GET", 400, 0, "Transport unknown"],
      [q("EIO=4"), "GET", 400, 0, "Transport unknown"],
      [q("EIO=4&transport=polling&sid=doesnotexist"), "GET", 400, 1, "Session ID unknown"],
      [q("EIO=4&transport=polling"), "POST", 400, 2, "Bad handshake method"],
      [q("EIO=4&transport=polling"), "PUT", 400, 2, "Bad handshake method"],
      [q("EIO=4&transport=websocket"), "GET", 400, 3, "Bad request"],
      [q("EIO=3&transport=polling"), "GET", 400, 5, "Unsupported protocol version"],
      [q("transport=polling"), "GET", 400, 5, "Unsupported protocol version"],
    ];
    for (const [url, method, status, code, message] of cases) {
      const r = await fetch(url, { method, body: method === "GET" ? undefined : "" });
      assert.equal(r.status, status, `${method} ${url}`);
      assert.deepEqual(await r.json(), { code, message }, `${method} ${url}`);
    }
  });

  test("allow_request refuses a handshake with 403 code 4 and its message", async () => {
    const r = await fetch(q("EIO=4&transport=polling"), { headers: { origin: "http://forbidden.example" } });
    assert.equal(r.status, 403);
    assert.deepEqual(await r.json(), { code: 4, message: "Origin not allowed" });
    const ok = await fetch(q("EIO=4&transport=polling"), { headers: { origin: "http://fine.example" } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("access-control-allow-origin"), "*");
  });

  test("ping from the server, pong from the client, over polling", async () => {
    const { sid } = await handshake();
    for (let i = 0; i < 3; i++) {
      const r = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
      assert.equal(r.status, 200);
      assert.equal(await r.text(), "2");
      const p = await fetch(q(`EIO=4&transport=polling&sid=${sid}`), { method: "POST", body: "3" });
      assert.equal(p.status, 200);
      assert.equal(await p.text(), "ok");
    }
  });

  test("no pong: session closed after pingInterval + pingTimeout", async () => {
    const { sid } = await handshake();
    await sleep(300 + 200 + 150);
    const r = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(r.status, 400);
    assert.deepEqual(await r.json(), { code: 1, message: "Session ID unknown" });
  });

  test("payload: several packets, base64 binary, echo order", async () => {
    const { sid } = await handshake();
    const p = await fetch(q(`EIO=4&transport=polling&sid=${sid}`), {
      method: "POST",
      body: "4hello\x1e4€\x1ebAQIDBA==",
    });
    assert.equal(p.status, 200);
    const r = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(await r.text(), "4hello\x1e4€\x1ebAQIDBA==");
    assert.match(r.headers.get("content-type"), /text\/plain/);
  });

  test("client close packet ends a pending poll with noop and kills the session", async () => {
    const { sid } = await handshake();
    const [poll, post] = await Promise.all([
      fetch(q(`EIO=4&transport=polling&sid=${sid}`)),
      sleep(50).then(() => fetch(q(`EIO=4&transport=polling&sid=${sid}`), { method: "POST", body: "1" })),
    ]);
    assert.equal(post.status, 200);
    assert.equal(poll.status, 200);
    assert.equal(await poll.text(), "6");
    const r = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(r.status, 400);
  });

  test("two concurrent GET polls close the session with an error", async () => {
    const { sid } = await handshake();
    const first = fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    await sleep(50);
    const second = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(second.status, 400);
    const f = await first;
    assert.equal(f.status, 200);
    assert.equal(await f.text(), "1"); // the session is closed: close packet
    const r = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(r.status, 400);
  });

  test("POST body over maxPayload gets 413 and closes the session", async () => {
    const { sid } = await handshake();
    const r = await fetch(q(`EIO=4&transport=polling&sid=${sid}`), {
      method: "POST",
      body: "4" + "z".repeat(1000001),
    });
    assert.equal(r.status, 413);
    const g = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(g.status, 400);
  });

  test("polling to websocket upgrade with probe, noop to the pending GET", async () => {
    const { sid } = await handshake();
    const pending = fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    await sleep(30);
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
    await waitFor(ws, "open");
    const msgs = [];
    ws.on("message", (d, bin) => msgs.push(bin ? d : d.toString()));
    ws.send("2probe");
    while (!msgs.includes("3probe")) await sleep(10);
    const r = await pending;
    assert.equal(await r.text(), "6");
    ws.send("5");
    ws.send("4after upgrade");
    while (!msgs.includes("4after upgrade")) await sleep(10);
    // The session is on websocket now: polling it is a bad request.
    const g = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(g.status, 400);
    // A second websocket on the same sid is refused.
    const ws2 = new WebSocket(`ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
    ws2.on("error", () => {});
    await waitFor(ws2, "close");
    ws.close();
  });

  test("a bad probe aborts the upgrade; the session stays on polling", async () => {
    const { sid } = await handshake();
    const url = `ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket&sid=${sid}`;
    const ws = new WebSocket(url);
    ws.on("error", () => {});
    await waitFor(ws, "open");
    // A second upgrade attempt while one runs is closed at once.
    const ws2 = new WebSocket(url);
    ws2.on("error", () => {});
    await waitFor(ws2, "close");
    ws.send("4not a probe");
    await waitFor(ws, "close");
    const p = await fetch(q(`EIO=4&transport=polling&sid=${sid}`), { method: "POST", body: "4still polling" });
    assert.equal(p.status, 200);
    const r = await fetch(q(`EIO=4&transport=polling&sid=${sid}`));
    assert.equal(await r.text(), "4still polling");
  });

  test("websocket: handshake without upgrades, heartbeat, close packet", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket`);
    const first = await nextMsg(ws);
    const h = JSON.parse(first.slice(1));
    assert.deepEqual(h.upgrades, []);
    for (let i = 0; i < 2; i++) {
      const m = await nextMsg(ws, 2000);
      assert.equal(m, "2");
      ws.send("3");
    }
    ws.send("1");
    await waitFor(ws, "close");
  });

  test("websocket without pong is closed by ping timeout", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket`);
    const t0 = Date.now();
    await waitFor(ws, "close", 3000);
    const dt = Date.now() - t0;
    assert.ok(dt >= 450 && dt < 1500, `closed after ${dt} ms`);
  });

  test("websocket message over maxPayload closes the connection", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket`);
    await nextMsg(ws);
    ws.on("error", () => {});
    ws.send("4" + "q".repeat(1000001));
    await waitFor(ws, "close", 3000);
  });
});
