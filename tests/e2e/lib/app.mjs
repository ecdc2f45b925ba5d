// Shared helpers for end-to-end tests that drive the engram application: REST calls with
// the session cookie, sign-up/sign-in, chats, a Socket.IO connection and one ai-message
// round trip. `client(url)` takes a function giving the server's current URL, so a test
// that restarts the server keeps using the same helpers.
//
//   import { client, waitUntil } from "./lib/app.mjs";
//   const { call, register, newChat, connect, ask } = client(() => srv.url);
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { sleep } from "./proc.mjs";

// Polls fn until it returns something truthy (returned), or throws after ms.
export async function waitUntil(what, fn, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

export function client(url) {
  const withCookie = async (path, body, status) => {
    const r = await fetch(url() + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    assert.equal(r.status, status, `${path}: ${r.status}`);
    const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
    return { id: (await r.json()).user._id, cookie: c.slice(0, c.indexOf(";")) };
  };
  const self = {
    // {status, body} of a JSON request as `user` (null: signed out).
    async call(user, method, path, body) {
      const headers = {};
      if (user) headers.cookie = user.cookie;
      if (body !== undefined) headers["content-type"] = "application/json";
      const r = await fetch(url() + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : null };
    },
    // A new account <name>@example.com (password <name>-password-1): {id, cookie}.
    register: (name) =>
      withCookie("/api/auth/register", { email: `${name}@example.com`, password: `${name}-password-1`, fullName: { firstName: name, lastName: "Test" } }, 201),
    login: (name) => withCookie("/api/auth/login", { email: `${name}@example.com`, password: `${name}-password-1` }, 200),
    async newChat(user, title) {
      const r = await self.call(user, "POST", "/api/chat", { title });
      assert.equal(r.status, 201);
      return r.body.chat._id;
    },
    connect(user) {
      const s = io(url(), { transports: ["websocket"], extraHeaders: { cookie: user.cookie }, reconnection: false, forceNew: true });
      return new Promise((resolve, reject) => {
        s.once("connect", () => resolve(s));
        s.once("connect_error", reject);
      });
    },
    // Sends one ai-message, checks it is acked ok: {ack, response} (the final ai-response).
    async ask(sock, chatId, content) {
      const final = new Promise((resolve) => {
        const h = (r) => {
          if (r.chat !== chatId) return;
          sock.off("ai-response", h);
          resolve(r);
        };
        sock.on("ai-response", h);
      });
      const ack = await sock.timeout(15000).emitWithAck("ai-message", { chatId, content });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      return { ack, response: await final };
    },
  };
  return self;
}
