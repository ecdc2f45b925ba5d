// REST accounts: register, login, logout, me, the login throttle and the Origin check,
// against the real engram binary with a temporary data folder and a free port.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startBinary } from "./lib/proc.mjs";

const SECRET = "rest-auth-test-secret-0123456789abcdef";
let srv, dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-rest-auth-"));
  srv = await startBinary("engram", {
    env: { ENGRAM_DATA_DIR: dir, JWT_SECRET: SECRET, ENGRAM_LOG_LEVEL: "warn" },
  });
});

after(async () => {
  if (srv) await srv.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function post(p, body, headers = {}) {
  return fetch(srv.url + p, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

function tokenOf(res) {
  const c = res.headers.getSetCookie().find((v) => v.startsWith("token="));
  assert.ok(c, "a token cookie is set");
  return c.slice(6, c.indexOf(";"));
}

function decode(jwt) {
  const [h, p] = jwt.split(".");
  return [JSON.parse(Buffer.from(h, "base64url")), JSON.parse(Buffer.from(p, "base64url"))];
}

async function errorOf(res, status) {
  assert.equal(res.status, status);
  assert.match(res.headers.get("content-type"), /application\/json/);
  const body = await res.json();
  assert.equal(typeof body.message, "string");
  assert.deepEqual(Object.keys(body), ["message"]);
  return body.message;
}

const alice = {
  email: "Alice@Example.com",
  password: "correct horse battery",
  fullName: { firstName: "Alice", lastName: "Liddell" },
};

test("register: 201 {user} with the session cookie", async () => {
  const r = await post("/api/auth/register", alice);
  assert.equal(r.status, 201);
  const { user } = await r.json();
  assert.match(user._id, /^[0-9a-f]{24}$/);
  assert.equal(user.email, "alice@example.com");
  assert.deepEqual(user.fullName, { firstName: "Alice", lastName: "Liddell" });
  assert.equal(user.password, undefined);
  assert.equal(user.password_hash, undefined);
  const cookie = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  assert.match(cookie, /; HttpOnly/);
  assert.match(cookie, /; SameSite=Lax/);
  assert.match(cookie, /; Path=\//);
  assert.match(cookie, /; Max-Age=604800/);
  assert.doesNotMatch(cookie, /Secure/);
  const [h, p] = decode(tokenOf(r));
  assert.equal(h.alg, "HS256");
  assert.equal(p.id, user._id);
  assert.equal(p.exp - p.iat, 604800);
  assert.ok(Math.abs(p.iat - Date.now() / 1000) < 60);
  // The cookie signs the user in.
  const me = await fetch(srv.url + "/api/auth/me", { headers: { cookie: `token=${tokenOf(r)}` } });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).user._id, user._id);
});

test("register: duplicate email (any case) is 409", async () => {
  const r = await post("/api/auth/register", { ...alice, email: "  ALICE@example.COM " });
  assert.match(await errorOf(r, 409), /exists/);
});

test("register: 400 for every missing or malformed field, 415, 413", async () => {
  const ok = { email: "bob@example.com", password: "12345678", fullName: { firstName: "B", lastName: "C" } };
  const cases = [
    [{ ...ok, email: undefined }, /email is required/],
    [{ ...ok, email: 12 }, /email must be a string/],
    [{ ...ok, email: "bob" }, /valid email/],
    [{ ...ok, password: undefined }, /password is required/],
    [{ ...ok, password: "1234567" }, /at least 8/],
    [{ ...ok, password: "x".repeat(129) }, /at most 128/],
    [{ ...ok, fullName: undefined }, /fullName is required/],
    [{ ...ok, fullName: "Bob C" }, /fullName must be an object/],
    [{ ...ok, fullName: { lastName: "C" } }, /fullName.firstName is required/],
    [{ ...ok, fullName: { firstName: "B" } }, /fullName.lastName is required/],
    [{ ...ok, fullName: { firstName: "B", lastName: 3 } }, /fullName.lastName must be a string/],
    [{ ...ok, fullName: { firstName: "x".repeat(101), lastName: "C" } }, /1 to 100/],
  ];
  for (const [body, re] of cases) {
    assert.match(await errorOf(await post("/api/auth/register", body), 400), re, JSON.stringify(body));
  }
  assert.match(await errorOf(await post("/api/auth/register", "{nope"), 400), /Invalid JSON/);
  assert.match(await errorOf(await post("/api/auth/register", "[1,2]"), 400), /JSON object/);
  assert.match(await errorOf(await post("/api/auth/register", ""), 400), /JSON object/);
  const textual = await post("/api/auth/register", JSON.stringify(ok), { "content-type": "text/plain" });
  assert.match(await errorOf(textual, 415), /application\/json/);
  const huge = await post("/api/auth/register", { ...ok, pad: "x".repeat(1100000) });
  assert.equal(huge.status, 413);
  // None of those created bob.
  const login = await post("/api/auth/login", { email: ok.email, password: ok.password });
  assert.equal(login.status, 401);
});

test("login: 200 {user} + cookie; one 401 message for unknown email and wrong password", async () => {
  const r = await post("/api/auth/login", { email: "alice@EXAMPLE.com", password: alice.password });
  assert.equal(r.status, 200);
  const { user } = await r.json();
  assert.equal(user.email, "alice@example.com");
  assert.equal(decode(tokenOf(r))[1].id, user._id);

  const wrong = await post("/api/auth/login", { email: "alice@example.com", password: "wrong password" });
  const unknown = await post("/api/auth/login", { email: "nobody@example.com", password: "wrong password" });
  const m1 = await errorOf(wrong, 401), m2 = await errorOf(unknown, 401);
  assert.equal(m1, "Invalid email or password");
  assert.equal(m2, m1);
  assert.equal(wrong.headers.getSetCookie().length, 0);

  // Same time: an unknown email still pays one argon2id verification.
  const time = async (email) => {
    const t = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await (await post("/api/auth/login", { email, password: "not the password" })).text();
      t.push(performance.now() - t0);
    }
    return t.sort((a, b) => a - b)[1];
  };
  const tWrong = await time("alice@example.com");
  const tUnknown = await time("nobody@example.com");
  assert.ok(tUnknown > tWrong * 0.25 && tWrong > tUnknown * 0.25, `wrong ${tWrong} ms, unknown ${tUnknown} ms`);

  assert.match(await errorOf(await post("/api/auth/login", { email: "a@b.co" }), 400), /required/);
  assert.match(await errorOf(await post("/api/auth/login", { email: 1, password: 2 }), 400), /strings/);
  assert.equal((await post("/api/auth/login", "x=1", { "content-type": "application/x-www-form-urlencoded" })).status, 415);
});

test("me: cookie or Bearer; 401 without, with garbage, or with a token of no user", async () => {
  const r = await post("/api/auth/login", { email: "alice@example.com", password: alice.password });
  const tok = tokenOf(r);
  const me = (headers) => fetch(srv.url + "/api/auth/me", { headers });
  const a = await me({ cookie: `other=1; token=${tok}` });
  assert.equal(a.status, 200);
  const { user } = await a.json();
  assert.equal(user.email, "alice@example.com");
  assert.deepEqual(Object.keys(user).sort(), ["_id", "createdAt", "email", "fullName"]);
  assert.equal((await me({ authorization: `Bearer ${tok}` })).status, 200);
  assert.match(await errorOf(await me({}), 401), /Unauthorized/);
  await errorOf(await me({ cookie: "token=abc.def.ghi" }), 401);
  await errorOf(await me({ authorization: `Basic ${tok}` }), 401);
  // A valid signature for an id that is no user's.
  const { createHmac } = await import("node:crypto");
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ id: "5f0000000000000000000001", iat: now, exp: now + 60 })}`;
  const ghost = `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
  await errorOf(await me({ cookie: `token=${ghost}` }), 401);
});

test("logout: clears the cookie", async () => {
  const r = await post("/api/auth/logout", "");
  assert.equal(r.status, 200);
  assert.equal(typeof (await r.json()).message, "string");
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  assert.match(c, /^token=;/);
  assert.match(c, /Max-Age=0/);
  assert.match(c, /HttpOnly/);
});

test("state changes from a foreign Origin are refused (403); our own origin is fine", async () => {
  const body = { email: "alice@example.com", password: alice.password };
  const evil = await post("/api/auth/login", body, { origin: "http://evil.example" });
  assert.match(await errorOf(evil, 403), /Origin/);
  const own = await post("/api/auth/login", body, { origin: srv.url.replace("127.0.0.1", "127.0.0.1") });
  assert.equal(own.status, 200);
  const nullOrigin = await post("/api/auth/logout", "", { origin: "null" });
  assert.equal(nullOrigin.status, 403);
});

test("a burst of logins is queued, not dropped, and the loop stays responsive", async () => {
  const body = { email: "alice@example.com", password: alice.password };
  const t0 = performance.now();
  const logins = Array.from({ length: 12 }, () => post("/api/auth/login", body));
  // While the hashes run (two at a time), a request with no hashing is answered at once.
  const health = await fetch(srv.url + "/healthz");
  const healthMs = performance.now() - t0;
  assert.equal(health.status, 200);
  const codes = await Promise.all(logins.map(async (p) => (await p).status));
  const allMs = performance.now() - t0;
  assert.deepEqual(codes, Array(12).fill(200));
  assert.ok(healthMs < allMs, `healthz ${healthMs} ms, logins ${allMs} ms`);
});

test("login throttle: 10 failures lock the account (429 + Retry-After), others unaffected", async () => {
  const carol = { email: "carol@example.com", password: "carol's password", fullName: { firstName: "Carol", lastName: "D" } };
  assert.equal((await post("/api/auth/register", carol)).status, 201);
  for (let i = 0; i < 10; i++) {
    const r = await post("/api/auth/login", { email: carol.email, password: `bad guess ${i}` });
    assert.equal(r.status, 401, `attempt ${i}`);
  }
  const locked = await post("/api/auth/login", { email: "CAROL@example.com", password: carol.password });
  assert.match(await errorOf(locked, 429), /Too many/);
  const ra = Number(locked.headers.get("retry-after"));
  assert.ok(Number.isInteger(ra) && ra > 0 && ra <= 900, `Retry-After ${ra}`);
  // Another account from the same address still signs in.
  const r = await post("/api/auth/login", { email: "alice@example.com", password: alice.password });
  assert.equal(r.status, 200);
});

test("ENGRAM_COOKIE_SECURE adds Secure; ENGRAM_TOKEN_TTL sets Max-Age and exp", async () => {
  const d2 = fs.mkdtempSync(path.join(os.tmpdir(), "engram-rest-auth-secure-"));
  const s2 = await startBinary("engram", {
    env: { ENGRAM_DATA_DIR: d2, JWT_SECRET: SECRET, ENGRAM_COOKIE_SECURE: "1", ENGRAM_TOKEN_TTL: "3600", ENGRAM_LOG_LEVEL: "warn" },
  });
  try {
    const r = await fetch(s2.url + "/api/auth/register", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...alice, email: "secure@example.com" }),
    });
    assert.equal(r.status, 201);
    const cookie = r.headers.getSetCookie().find((v) => v.startsWith("token="));
    assert.match(cookie, /; Secure/);
    assert.match(cookie, /; Max-Age=3600/);
    const [, p] = decode(tokenOf(r));
    assert.equal(p.exp - p.iat, 3600);
  } finally {
    await s2.stop();
    fs.rmSync(d2, { recursive: true, force: true });
  }
});

test("without JWT_SECRET a random secret is kept in the data folder (0600) across restarts", async () => {
  const d3 = fs.mkdtempSync(path.join(os.tmpdir(), "engram-rest-auth-secret-"));
  const env = { ENGRAM_DATA_DIR: d3, JWT_SECRET: "", JWT_SECRETE: "", ENGRAM_LOG_LEVEL: "warn" };
  let s3 = await startBinary("engram", { env });
  try {
    const r = await fetch(s3.url + "/api/auth/register", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...alice, email: "kept@example.com" }),
    });
    assert.equal(r.status, 201);
    const tok = tokenOf(r);
    const st = fs.statSync(path.join(d3, "jwt.secret"));
    assert.equal(st.mode & 0o777, 0o600);
    assert.match(fs.readFileSync(path.join(d3, "jwt.secret"), "utf8"), /^[0-9a-f]{64}\n$/);
    await s3.stop();
    s3 = await startBinary("engram", { env });
    const me = await fetch(s3.url + "/api/auth/me", { headers: { cookie: `token=${tok}` } });
    assert.equal(me.status, 200, "the token survives a restart");
  } finally {
    await s3.stop();
    fs.rmSync(d3, { recursive: true, force: true });
  }
});

test("unknown API paths are 404 and wrong methods 405, both as {message}", async () => {
  await errorOf(await fetch(srv.url + "/api/nope"), 404);
  await errorOf(await fetch(srv.url + "/api/auth/nope", { method: "POST" }), 404);
  const r = await fetch(srv.url + "/api/auth/login");
  await errorOf(r, 405);
  assert.match(r.headers.get("allow") || "", /POST/);
});
