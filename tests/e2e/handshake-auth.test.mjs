// Socket.IO handshake auth with the official socket.io-client: the three exact
// connect_error messages, the token sources (cookie, auth.token, Bearer), forged tokens
// (expired, alg none, another secret), a deleted user, and the Origin check.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, BUILD } from "./lib/proc.mjs";

const SECRET = "handshake-test-secret-0123456789abcdef";
let srv, dir, user;

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
function sign(payload, { secret = SECRET, header = { alg: "HS256", typ: "JWT" } } = {}) {
  const body = `${b64(header)}.${b64(payload)}`;
  if (secret === null) return `${body}.`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}
const now = () => Math.floor(Date.now() / 1000);

async function register(email) {
  const r = await fetch(srv.url + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: "handshake-pass", fullName: { firstName: "H", lastName: "S" } }),
  });
  assert.equal(r.status, 201);
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { id: (await r.json()).user._id, token: c.slice(6, c.indexOf(";")) };
}

// Connects and resolves "connected" or the connect_error message.
function attempt(opts, transports = ["websocket"]) {
  return new Promise((resolve) => {
    const s = io(srv.url, { transports, reconnection: false, timeout: 4000, ...opts });
    const done = (v) => {
      s.close();
      resolve(v);
    };
    s.once("connect", async () => {
      // Authenticated sockets can use the server: the diagnostic echo answers.
      try {
        const back = await s.timeout(2000).emitWithAck("echo", { ping: 1 });
        done(back && back.ping === 1 ? "connected" : "connected without echo");
      } catch {
        done("connected without echo");
      }
    });
    s.once("connect_error", (e) => done(e.message));
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-handshake-"));
  srv = await startBinary("engram", {
    env: {
      ENGRAM_DATA_DIR: dir,
      JWT_SECRET: SECRET,
      ENGRAM_ORIGINS: "http://allowed.example:8080",
      ENGRAM_LOG_LEVEL: "warn",
    },
  });
  user = await register("hs@example.com");
});

after(async () => {
  if (srv) await srv.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const NO_TOKEN = "Authentication error: No token provided";
const INVALID = "Authentication error: Invalid token";
const NOT_FOUND = "Authentication error: User not found";

test("no token: connect_error 'Authentication error: No token provided'", async () => {
  assert.equal(await attempt({}), NO_TOKEN);
  assert.equal(await attempt({}, ["polling"]), NO_TOKEN);
  assert.equal(await attempt({ auth: { token: "" } }), NO_TOKEN);
  assert.equal(await attempt({ extraHeaders: { cookie: "theme=dark" } }), NO_TOKEN);
});

test("token from the cookie, from auth.token and from Authorization: Bearer", async () => {
  assert.equal(await attempt({ extraHeaders: { cookie: `a=1; token=${user.token}` } }), "connected");
  assert.equal(await attempt({ extraHeaders: { cookie: `token=${user.token}` } }, ["polling"]), "connected");
  assert.equal(await attempt({ auth: { token: user.token } }), "connected");
  assert.equal(await attempt({ extraHeaders: { authorization: `Bearer ${user.token}` } }), "connected");
  // The cookie comes first: a bad cookie is not rescued by a good auth.token.
  assert.equal(await attempt({ extraHeaders: { cookie: "token=bad" }, auth: { token: user.token } }), INVALID);
  // auth.token comes before Bearer.
  assert.equal(await attempt({ auth: { token: "bad" }, extraHeaders: { authorization: `Bearer ${user.token}` } }), INVALID);
});

test("invalid tokens: garbage, expired, alg none, another secret, tampered, no id", async () => {
  const good = { id: user.id, iat: now(), exp: now() + 600 };
  const tokens = {
    garbage: "not-a-jwt",
    expired: sign({ id: user.id, iat: now() - 7200, exp: now() - 3600 }),
    algNone: sign(good, { secret: null, header: { alg: "none", typ: "JWT" } }),
    algNoneSigned: sign(good, { header: { alg: "none", typ: "JWT" } }),
    hs512: sign(good, { header: { alg: "HS512", typ: "JWT" } }),
    otherSecret: sign(good, { secret: "someone else's secret" }),
    tampered: (() => {
      const [h, , s] = sign(good).split(".");
      return `${h}.${b64({ ...good, id: "5f0000000000000000000abc" })}.${s}`;
    })(),
    noId: sign({ iat: now(), exp: now() + 600 }),
    noExp: sign({ id: user.id, iat: now() }),
  };
  for (const [name, token] of Object.entries(tokens)) {
    assert.equal(await attempt({ auth: { token } }), INVALID, name);
  }
  assert.equal(await attempt({ extraHeaders: { cookie: `token=${tokens.expired}` } }), INVALID);
  assert.equal(await attempt({ extraHeaders: { authorization: `Bearer ${tokens.algNone}` } }), INVALID);
  // A correctly signed token the server did not issue is fine (same secret, same shape).
  assert.equal(await attempt({ auth: { token: sign(good) } }), "connected");
});

test("user not found: a valid token for an id that is no user, and a deleted user", async (t) => {
  const ghost = sign({ id: "5f0000000000000000000001", iat: now(), exp: now() + 600 });
  assert.equal(await attempt({ auth: { token: ghost } }), NOT_FOUND);
  assert.equal(await attempt({ extraHeaders: { cookie: `token=${ghost}` } }, ["polling"]), NOT_FOUND);

  const doomed = await register("doomed@example.com");
  assert.equal(await attempt({ auth: { token: doomed.token } }), "connected");
  const env = { ...process.env, ENGRAM_DATA_DIR: dir, JWT_SECRET: SECRET };
  const del = spawnSync(path.join(BUILD, "engram"), ["user", "delete", "doomed@example.com"], { env, encoding: "utf8" });
  if (del.status !== 0) {
    t.diagnostic(`engram user delete unavailable: ${del.stderr}`);
    return;
  }
  assert.equal(await attempt({ auth: { token: doomed.token } }), NOT_FOUND);
});

test("Origin: a foreign page is refused, our own and allow-listed origins pass", async () => {
  const evil = await attempt({ extraHeaders: { origin: "http://evil.example", cookie: `token=${user.token}` } });
  assert.notEqual(evil, "connected");
  const evilPolling = await attempt({ extraHeaders: { origin: "http://evil.example", cookie: `token=${user.token}` } }, ["polling"]);
  assert.notEqual(evilPolling, "connected");
  const raw = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin: "http://evil.example" } });
  assert.equal(raw.status, 403);
  await raw.text();
  const own = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin: srv.url } });
  assert.equal(own.status, 200);
  await own.text();
  assert.equal(await attempt({ extraHeaders: { origin: srv.url, cookie: `token=${user.token}` } }), "connected");
  assert.equal(
    await attempt({ extraHeaders: { origin: "http://allowed.example:8080", cookie: `token=${user.token}` } }),
    "connected"
  );
});
