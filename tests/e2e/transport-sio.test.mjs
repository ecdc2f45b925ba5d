// The official socket.io-client 4.x against $ENGRAM_BUILD/echo-server: every transport,
// acks both ways, binary, namespaces, middleware refusal, maxPayload, rooms.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startBinary, waitFor, sleep } from "./lib/proc.mjs";

let srv;
const clients = [];

function connect(opts = {}, nsp = "/") {
  const s = io(srv.url + nsp, { forceNew: true, reconnection: false, timeout: 5000, ...opts });
  clients.push(s);
  return s;
}

// "disconnect" passes (reason, details): the reason.
const reasonOf = (r) => (Array.isArray(r) ? r[0] : r);

async function connected(s) {
  if (s.connected) return s;
  await Promise.race([
    waitFor(s, "connect"),
    waitFor(s, "connect_error").then((e) => {
      throw e;
    }),
  ]);
  return s;
}

before(async () => {
  srv = await startBinary("echo-server");
});

after(async () => {
  for (const c of clients) c.close();
  await srv.stop();
});

for (const [label, opts] of [
  ["websocket only", { transports: ["websocket"] }],
  ["polling only", { transports: ["polling"] }],
  ["polling then upgrade", { transports: ["polling", "websocket"] }],
]) {
  describe(label, () => {
    test("connects, gets auth, echoes message and acks", async () => {
      const s = connect({ ...opts, auth: { token: "abc", n: 1 } });
      const authP = waitFor(s, "auth");
      await connected(s);
      assert.match(s.id, /^[A-Za-z0-9_-]{20}$/);
      assert.deepEqual(await authP, { token: "abc", n: 1 });
      if (label === "polling then upgrade") {
        if (s.io.engine.transport.name !== "websocket") await waitFor(s.io.engine, "upgrade");
        assert.equal(s.io.engine.transport.name, "websocket");
      } else {
        assert.equal(s.io.engine.transport.name, opts.transports[0]);
      }
      const back = new Promise((r) => s.once("message-back", (...a) => r(a)));
      s.emit("message", 1, "2", { 3: [true] }, null);
      assert.deepEqual(await back, [1, "2", { 3: [true] }, null]);
      const ack = await s.timeout(2000).emitWithAck("message-with-ack", "x", [1, 2], { y: "z" });
      assert.equal(ack, "x"); // emitWithAck resolves with the first argument
      const many = await new Promise((r) => s.emit("message-with-ack", 1, 2, 3, (...a) => r(a)));
      assert.deepEqual(many, [1, 2, 3]);
      s.close();
    });

    test("binary both ways stays binary", async () => {
      const s = await connected(connect(opts));
      const buf = Buffer.from([0, 1, 2, 250, 255]);
      const back = new Promise((r) => s.once("message-back", (...a) => r(a)));
      s.emit("message", buf, { nested: [Buffer.from("hi")], n: 3 }, "text");
      const [b0, obj, txt] = await back;
      assert.ok(Buffer.isBuffer(b0), "binary comes back as a Buffer");
      assert.deepEqual([...b0], [...buf]);
      assert.ok(Buffer.isBuffer(obj.nested[0]));
      assert.equal(obj.nested[0].toString(), "hi");
      assert.equal(obj.n, 3);
      assert.equal(txt, "text");
      const acked = await new Promise((r) =>
        s.emit("message-with-ack", Buffer.alloc(70000, 7), (...a) => r(a))
      );
      assert.ok(Buffer.isBuffer(acked[0]));
      assert.equal(acked[0].length, 70000);
      assert.ok(acked[0].every((x) => x === 7));
      s.close();
    });

    test("server emits with an ack, and its ack timeout fires", async () => {
      const s = await connected(connect(opts));
      s.on("ack-request", (...args) => {
        const cb = args.pop();
        if (args[0] !== "ignore") cb("answer", ...args);
      });
      const resp = new Promise((r) => s.once("ack-response", (...a) => r(a)));
      s.emit("server-ack", 1000, "q", 42);
      assert.deepEqual(await resp, ["answer", "q", 42]);
      const timedOut = waitFor(s, "ack-timeout", 3000);
      const t0 = Date.now();
      s.emit("server-ack", 200, "ignore");
      assert.equal(await timedOut, 200);
      assert.ok(Date.now() - t0 >= 150, "timeout not early");
      s.close();
    });
  });
}

describe("namespaces", () => {
  test("custom namespace has the same handlers", async () => {
    const s = connect({ transports: ["websocket"], auth: { who: "custom" } }, "/custom");
    const authP = waitFor(s, "auth");
    await connected(s);
    assert.deepEqual(await authP, { who: "custom" });
    const ack = await new Promise((r) => s.emit("message-with-ack", "c", (...a) => r(a)));
    assert.deepEqual(ack, ["c"]);
    s.close();
  });

  test("main and custom namespace share one connection", async () => {
    const a = connect({ transports: ["websocket"] }, "/");
    await connected(a);
    const b = a.io.socket("/custom");
    clients.push(b);
    b.connect();
    await connected(b);
    assert.equal(a.io.engine, b.io.engine);
    b.disconnect();
    const back = new Promise((r) => a.once("message-back", (...x) => r(x)));
    a.emit("message", "still here");
    assert.deepEqual(await back, ["still here"]);
    a.close();
  });

  test("unknown namespace gets connect_error 'Invalid namespace'", async () => {
    const s = connect({ transports: ["websocket"] }, "/nope");
    const err = await waitFor(s, "connect_error");
    assert.equal(err.message, "Invalid namespace");
    s.close();
  });

  test("middleware refusal reaches the client as connect_error with its message", async () => {
    for (const transports of [["websocket"], ["polling"]]) {
      const s = connect({ transports, auth: { token: "x" } }, "/refuse");
      const err = await waitFor(s, "connect_error");
      assert.equal(err.message, "refused by middleware");
      s.close();
    }
  });
});

describe("rooms and broadcast", () => {
  test("room broadcast and except-sender broadcast", async () => {
    const [a, b, c] = await Promise.all(
      [0, 1, 2].map(() => connected(connect({ transports: ["websocket"] })))
    );
    await new Promise((r) => a.emit("join", "r1", r));
    await new Promise((r) => b.emit("join", "r1", r));
    let cGot = false;
    c.on("room-message", () => (cGot = true));
    const pa = new Promise((r) => a.once("room-message", (...x) => r(x)));
    const pb = new Promise((r) => b.once("room-message", (...x) => r(x)));
    c.emit("to-room", "r1", "hello", Buffer.from([9]));
    const [ra, rb] = await Promise.all([pa, pb]);
    assert.equal(ra[0], "r1");
    assert.equal(ra[1], "hello");
    assert.deepEqual([...ra[2]], [9]);
    assert.deepEqual(rb.slice(0, 2), ["r1", "hello"]);
    await new Promise((r) => b.emit("leave", "r1", r));
    let bGot = false;
    b.on("room-message", () => (bGot = true));
    const pa2 = new Promise((r) => a.once("room-message", (...x) => r(x)));
    c.emit("to-room", "r1", "again");
    assert.deepEqual(await pa2, ["r1", "again"]);
    // to-others: everyone in the namespace except the sender.
    let aGotOwn = false;
    a.on("others-message", () => (aGotOwn = true));
    const pb3 = new Promise((r) => b.once("others-message", (...x) => r(x)));
    const pc3 = new Promise((r) => c.once("others-message", (...x) => r(x)));
    a.emit("to-others", 5);
    assert.deepEqual(await pb3, [5]);
    assert.deepEqual(await pc3, [5]);
    await sleep(100);
    assert.equal(cGot, false, "c was not in the room");
    assert.equal(bGot, false, "b left the room");
    assert.equal(aGotOwn, false, "sender excluded");
    for (const s of [a, b, c]) s.close();
  });

  test("server-side disconnect gives 'io server disconnect'", async () => {
    const s = await connected(connect({ transports: ["websocket"] }));
    const reason = waitFor(s, "disconnect");
    s.emit("disconnect-me");
    assert.equal(reasonOf(await reason), "io server disconnect");
  });
});

describe("limits", () => {
  test("a websocket message over maxPayload closes the connection", async () => {
    const s = await connected(connect({ transports: ["websocket"] }));
    const reason = waitFor(s, "disconnect");
    s.emit("message", "x".repeat(1000001));
    assert.match(reasonOf(await reason), /transport (close|error)/);
  });

  test("a polling POST over maxPayload closes the session", async () => {
    const s = await connected(connect({ transports: ["polling"] }));
    const reason = waitFor(s, "disconnect", 8000);
    s.emit("message", "y".repeat(1000001));
    assert.match(reasonOf(await reason), /transport (close|error)/);
  });

  test("the server still works after those", async () => {
    const s = await connected(connect({ transports: ["websocket"] }));
    const ack = await new Promise((r) => s.emit("message-with-ack", "ok", (...a) => r(a)));
    assert.deepEqual(ack, ["ok"]);
    s.close();
  });
});

describe("heartbeat", () => {
  test("the connection survives several ping intervals (300 ms)", async () => {
    for (const transports of [["websocket"], ["polling"]]) {
      const s = await connected(connect({ transports }));
      let disconnected = false;
      s.on("disconnect", () => (disconnected = true));
      let pings = 0;
      s.io.engine.on("ping", () => pings++);
      await sleep(1100);
      assert.equal(disconnected, false);
      assert.ok(pings >= 2, `got ${pings} pings`);
      s.close();
    }
  });
});
