// engram web UI: sign in, chats, streamed answers, memories. Plain DOM, no framework.
// Every piece of text from the server goes through textContent or renderMarkdown (which
// builds Text nodes), never innerHTML.
//
// First render: the server picks the screen (index.html comes with <html data-screen="app">
// when the request carries the session cookie, else "auth"), so the first paint needs no
// script. Only that screen's markup is live DOM; the other screen and the Memory page are
// <template>s (webgen), instantiated here when first shown (mount). The inline script at
// the end of index.html imports this module on the first paint and, signed in, just before
// that starts fetching /api/auth/me, the chat list and the messages of the last chat opened
// (its id is the "engram:chat" hint kept here in localStorage): window.engramBoot. Nothing
// slow runs before the first screen is complete (performance mark "engram:ready"): the
// socket.io bundle is loaded and the Intl formatters (30-100 ms of ICU set-up in a fresh
// renderer) are made after it.
import { renderMarkdown } from "./markdown.js";

// ---- REST: JSON in and out, the session rides on the HttpOnly `token` cookie --------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return json(fetch(path, init));
}

// The JSON body of a pending fetch; ApiError for a failed request or a non-2xx status.
async function json(pending) {
  let r;
  try {
    r = await pending;
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check your connection.");
  }
  let data = null;
  try {
    data = await r.json();
  } catch {
    data = null;
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.message) || `${r.status} ${r.statusText}`);
  return data;
}

const get = (p) => api("GET", p);
const post = (p, b) => api("POST", p, b ?? {});
const patch = (p, b) => api("PATCH", p, b);
const del = (p) => api("DELETE", p);

const booted = window.engramBoot || {};
// A request index.html started, once (later calls fetch anew).
function early(name) {
  const p = booted[name];
  booted[name] = undefined;
  return p;
}
const HINT = "engram:chat";
function hint(v) {
  try {
    if (v === null) localStorage.removeItem(HINT);
    else localStorage.setItem(HINT, v);
  } catch {
    /* storage disabled: every load starts on the sign-in screen until /api/auth/me answers */
  }
}

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const PAGE = 50;
const state = {
  me: null,
  chats: new Map(), // id -> {_id, title, lastActivity}
  chatId: null, // open chat
  oldest: null, // id of the oldest loaded message of the open chat
  hasMore: false,
  loadingOlder: false,
  streams: new Map(), // chatId -> {text, node, bubble, messageId, raf}
  generating: new Set(), // chats waiting for an answer asked from this tab
  socket: null,
  wasConnected: false,
  memCursor: null,
  mode: "login",
};

// ---- banners ----------------------------------------------------------------------------

const CODE_TEXT = {
  bad_request: "The message could not be sent.",
  not_found: "This chat no longer exists.",
  too_large: "That message is too long (the limit is 64 KiB).",
  rate_limited: "You are sending messages too quickly. Wait a moment and try again.",
  llm_unavailable: "The language model is unavailable right now. Your message was saved; try again in a moment.",
  internal: "Something went wrong on the server. Try again.",
};

function banner(text, { code = "", detail = "", kind = "error", timeout = 10000 } = {}) {
  const box = $("banners");
  for (const b of box.children) if (b.dataset.text === text + detail) b.remove();
  const b = el("div", `banner ${kind}`);
  b.dataset.text = text + detail;
  if (code) b.dataset.code = code;
  const msg = el("div", "msg");
  msg.append(el("strong", "", text));
  if (detail && detail !== text) msg.append(el("span", "", detail));
  const x = el("button", "", "×");
  x.type = "button";
  x.setAttribute("aria-label", "Dismiss");
  x.addEventListener("click", () => b.remove());
  b.append(msg, x);
  box.append(b);
  if (timeout) setTimeout(() => b.remove(), timeout);
  return b;
}

function codeBanner(code, error) {
  const text = CODE_TEXT[code] || "Something went wrong.";
  banner(text, { code: code || "error", detail: error && error !== text ? error : "" });
}

// ---- formatting -------------------------------------------------------------------------

// The Intl formatters in the user's locale. The first Intl object of a page costs 30-100 ms
// (ICU set-up), so they are made after the first screen (see formatLater); until then
// times are written in English and rewritten once the formatters exist.
let fmts = null;
function formats() {
  fmts ??= {
    time: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }),
    date: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
    day: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" }),
  };
  return fmts;
}
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n) => String(n).padStart(2, "0");

function when(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const today = d.toDateString() === new Date().toDateString();
  if (fmts) return today ? fmts.time.format(d) : fmts.day.format(d);
  const h = d.getHours();
  return today ? `${two(h % 12 || 12)}:${two(d.getMinutes())} ${h < 12 ? "AM" : "PM"}` : `${MONTHS[d.getMonth()]} ${d.getDate()}`;
}

// A <time>: short text (the time today, else the day), the full date as its title; with
// `full`, the full date as its text.
function timeEl(iso, full = false) {
  const t = el("time");
  const d = new Date(iso || Date.now());
  if (!Number.isNaN(d.getTime())) {
    t.dateTime = d.toISOString();
    if (full) t.className = "full";
    fillTime(t);
  }
  return t;
}

function fillTime(t) {
  if (!fmts) {
    t.textContent = when(t.dateTime);
    return;
  }
  const d = new Date(t.dateTime);
  t.title = fmts.date.format(d);
  t.textContent = t.classList.contains("full") ? t.title : when(t.dateTime);
}

// After the first screen: make the formatters, then rewrite the times already shown.
function formatLater() {
  const run = () => {
    formats();
    for (const t of document.querySelectorAll("time[datetime]")) fillTime(t);
    renderChatList();
  };
  if (window.requestIdleCallback) requestIdleCallback(run, { timeout: 1000 });
  else setTimeout(run, 50);
}

function randomId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// ---- auth -------------------------------------------------------------------------------

function setMode(mode) {
  state.mode = mode;
  $("tab-login").setAttribute("aria-selected", String(mode === "login"));
  $("tab-register").setAttribute("aria-selected", String(mode === "register"));
  $("names").hidden = mode !== "register";
  $("auth-submit").textContent = mode === "login" ? "Sign in" : "Create account";
  $("password").autocomplete = mode === "login" ? "current-password" : "new-password";
  $("auth-error").hidden = true;
}

// The sign-in screen; atBoot: the page's first screen (no socket, no hint to clear yet:
// the storage is not touched before the first paint).
function showAuth({ atBoot = false } = {}) {
  state.me = null;
  booted.chats = booted.messages = undefined; // asked with a session that is gone
  state.streams.clear();
  state.generating.clear();
  state.wasConnected = false;
  if (state.socket) {
    state.socket.disconnect();
    state.socket = null;
  }
  if (!atBoot) hint(null);
  show("auth");
  ready();
  document.title = "Sign in – engram";
  $("email").focus();
}

function show(screen) {
  mount(screen);
  document.documentElement.dataset.screen = screen;
  if ($("app")) $("app").hidden = screen !== "app";
  if ($("auth")) $("auth").hidden = screen !== "auth";
}

// Instantiates the screen's template (index.html: the screen the page did not come with)
// or the Memory page's, once, and wires its controls. Returns the screen's element.
function mount(screen) {
  const id = { auth: "auth", app: "app", memory: "memory-view" }[screen];
  if (!$(id)) {
    const t = screen === "memory" ? $("memory-tpl") : document.querySelector(`template[data-screen="${screen}"]`);
    t.replaceWith(t.content);
  }
  if (!mounted.has(screen)) {
    mounted.add(screen);
    ({ auth: wireAuth, app: wireApp, memory: wireMemory })[screen]();
  }
  return $(id);
}
const mounted = new Set();

async function onAuthSubmit(ev) {
  ev.preventDefault();
  const err = $("auth-error");
  err.hidden = true;
  const email = $("email").value.trim();
  const password = $("password").value;
  const btn = $("auth-submit");
  btn.disabled = true;
  try {
    let r;
    if (state.mode === "register") {
      r = await post("/api/auth/register", {
        email,
        password,
        fullName: { firstName: $("first").value.trim(), lastName: $("last").value.trim() },
      });
    } else {
      r = await post("/api/auth/login", { email, password });
    }
    $("password").value = "";
    await start(r.user);
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    btn.disabled = false;
  }
}

async function logout() {
  try {
    await post("/api/auth/logout");
  } catch {
    /* the cookie may be gone already */
  }
  state.chats.clear();
  state.chatId = null;
  location.hash = "";
  showAuth();
}

// The first screen is complete and usable: the sign-in form, or the chat list with the
// open chat's messages (or the Memory page, or the empty state). A performance mark for
// the browser test and bench/web_render.mjs; then the deferred work starts.
function ready() {
  if (performance.getEntriesByName("engram:ready").length) return;
  performance.mark("engram:ready");
  formatLater();
  // The tab's icon only now: the renderer decodes an SVG icon on its main thread (an
  // isolated SVG document: 3-18 ms in the traces), which competed with the first frame.
  const icon = el("link");
  icon.rel = "icon";
  icon.type = "image/svg+xml";
  icon.href = "/icon.svg";
  document.head.append(icon);
}

// ---- socket -----------------------------------------------------------------------------

// The official socket.io browser bundle, loaded after the first screen is shown (it is
// not needed to sign in, and parsing it would delay the first render).
let ioLoading = null;
function loadIo() {
  if (typeof window.io === "function") return Promise.resolve(window.io);
  ioLoading ??= new Promise((resolve, reject) => {
    const sc = document.createElement("script");
    sc.src = "/socket.io/socket.io.min.js";
    sc.onload = () => resolve(window.io);
    sc.onerror = () => {
      ioLoading = null;
      reject(new Error("socket.io client failed to load"));
    };
    document.head.append(sc);
  });
  return ioLoading;
}

async function connectSocket() {
  let io;
  try {
    io = await loadIo();
  } catch {
    banner("The real-time client failed to load. Reload the page.");
    return;
  }
  if (!state.me || state.socket) return;
  const s = io({ withCredentials: true });
  state.socket = s;
  s.on("connect", () => {
    document.body.dataset.socket = "connected"; // for tests and styles
    $("conn").hidden = true;
    if (state.wasConnected) resync();
    state.wasConnected = true;
  });
  s.on("disconnect", (reason) => {
    if (state.socket !== s) return;
    document.body.dataset.socket = "disconnected";
    $("conn").hidden = false;
    $("conn").textContent = "Reconnecting…";
    if (reason === "io server disconnect") s.connect();
  });
  s.on("connect_error", (e) => {
    if (state.socket !== s) return;
    if (/^Authentication error/.test(e.message)) {
      banner("Your session has ended. Sign in again.", { code: "auth" });
      showAuth();
      return;
    }
    $("conn").hidden = false;
    $("conn").textContent = "Reconnecting…";
    if (!s.active) setTimeout(() => state.socket === s && s.connect(), 2000);
  });
  s.on("ai-response-chunk", onChunk);
  s.on("ai-response", onResponse);
  s.on("chat-message", onChatMessage);
}

// After a reconnect: whatever streamed meanwhile is lost; the stored history is the truth.
async function resync() {
  for (const id of state.generating) finishStream(id);
  state.generating.clear();
  updateComposer();
  await loadChats();
  if (state.chatId) await openChat(state.chatId, { keepInput: true });
}

// ---- chats ------------------------------------------------------------------------------

function sortedChats() {
  const t = (c) => Date.parse(c.lastActivity) || 0;
  return [...state.chats.values()].sort((a, b) => t(b) - t(a) || b._id.localeCompare(a._id));
}

function renderChatList() {
  const ul = $("chat-list");
  if (!ul) return; // the app screen is not mounted yet
  const items = sortedChats().map((c) => {
    const li = el("li");
    const a = el("a");
    a.href = `#/chat/${c._id}`;
    a.dataset.id = c._id;
    a.append(el("span", "t", c.title || "Untitled"), el("span", "when", when(c.lastActivity)));
    if (c._id === state.chatId && !isMemoryRoute()) a.setAttribute("aria-current", "page");
    li.append(a);
    return li;
  });
  ul.replaceChildren(...items);
  $("no-chats").hidden = items.length > 0;
}

function touchChat(id, iso) {
  const c = state.chats.get(id);
  if (!c) {
    loadChats();
    return;
  }
  c.lastActivity = iso || new Date().toISOString();
  renderChatList();
}

async function loadChats() {
  try {
    const pending = early("chats");
    const r = await (pending ? json(pending) : get("/api/chat?limit=200"));
    state.chats = new Map(r.chats.map((c) => [c._id, c]));
    renderChatList();
  } catch (e) {
    if (e.status === 401) return showAuth();
    banner("Your chats could not be loaded.", { detail: e.message });
  }
}

async function newChat() {
  try {
    const r = await post("/api/chat", { title: "New chat" });
    state.chats.set(r.chat._id, r.chat);
    renderChatList();
    location.hash = `#/chat/${r.chat._id}`;
    closeDrawer();
    $("input").focus();
  } catch (e) {
    banner("The chat could not be created.", { detail: e.message });
  }
}

async function renameChat(id, title) {
  try {
    const r = await patch(`/api/chat/${id}`, { title });
    state.chats.set(id, { ...state.chats.get(id), ...r.chat });
    renderChatList();
    if (id === state.chatId) setTitle(r.chat.title);
  } catch (e) {
    banner("The chat could not be renamed.", { detail: e.message });
  }
}

async function deleteChat() {
  const id = state.chatId;
  const c = state.chats.get(id);
  if (!id || !confirm(`Delete “${c ? c.title : "this chat"}” with its messages and memories?`)) return;
  try {
    await del(`/api/chat/${id}`);
    state.chats.delete(id);
    state.chatId = null;
    location.hash = "";
    renderChatList();
  } catch (e) {
    banner("The chat could not be deleted.", { detail: e.message });
  }
}

function setTitle(t) {
  $("chat-title").textContent = t;
  document.title = `${t} – engram`;
}

// ---- messages ---------------------------------------------------------------------------

function messageNode(m) {
  const role = m.role === "user" ? "user" : "model";
  const node = el("div", `msg ${role}`);
  if (m._id || m.id) node.dataset.id = m._id || m.id;
  const bubble = el("div", "bubble");
  if (role === "user") bubble.textContent = m.content;
  else bubble.append(renderMarkdown(m.content || ""));
  const meta = el("div", "meta");
  meta.append(timeEl(m.createdAt));
  if (m.cancelled) meta.append(el("span", "stopped", "stopped"));
  node.append(bubble, meta);
  return node;
}

function memoriesNode(mems) {
  const d = el("details", "used");
  const n = mems.length;
  d.append(el("summary", "", `Used ${n} ${n === 1 ? "memory" : "memories"}`));
  const ul = el("ul");
  for (const m of mems) {
    const li = el("li", "mem-card");
    const text = m.text.length > 400 ? m.text.slice(0, 400) + "…" : m.text;
    li.append(el("div", "mem-text", text));
    li.append(memMeta(m));
    ul.append(li);
  }
  d.append(ul);
  return d;
}

function memMeta(m) {
  const meta = el("div", "mem-meta");
  const chat = m.chatId ? state.chats.get(m.chatId) : null;
  if (m.chatId && chat) {
    const a = el("a", "mem-chat", chat.title);
    a.href = `#/chat/${m.chatId}`;
    meta.append(a);
  } else {
    meta.append(el("span", "mem-chat", m.chatId ? "a deleted chat" : "note"));
  }
  if (m.role) meta.append(el("span", "", m.role === "user" ? "you said" : m.role === "model" ? "engram said" : m.role));
  formats();
  meta.append(timeEl(m.createdAt, true));
  if (typeof m.score === "number" && m.score > 0) meta.append(el("span", "", `relevance ${Math.round(m.score * 100) / 100}`));
  return meta;
}

const list = () => $("messages");
const nearBottom = () => list().scrollHeight - list().scrollTop - list().clientHeight < 120;
const scrollDown = () => (list().scrollTop = list().scrollHeight);

function appendMessage(m, { force = false } = {}) {
  const stick = force || nearBottom();
  $("empty").hidden = true;
  const node = messageNode(m);
  list().append(node);
  if (stick) scrollDown();
  return node;
}

function hasMessage(id) {
  return id && list().querySelector(`.msg[data-id="${CSS.escape(id)}"]`) !== null;
}

async function openChat(id, { keepInput = false } = {}) {
  const c = state.chats.get(id);
  if (!c) {
    await loadChats();
    if (!state.chats.has(id)) {
      banner(CODE_TEXT.not_found, { code: "not_found" });
      location.hash = "";
      return;
    }
  }
  const changed = state.chatId !== id;
  state.chatId = id;
  setTitle(state.chats.get(id).title);
  $("rename-chat").hidden = $("delete-chat").hidden = false;
  renderChatList();
  if (changed && !keepInput) $("input").value = "";
  updateComposer();
  hint(id);
  let r;
  try {
    const pre = early("messages");
    r = await (pre && pre.id === id ? json(pre.r) : get(`/api/chat/messages/${id}?limit=${PAGE}`));
  } catch (e) {
    if (e.status === 401) return showAuth();
    banner("The messages could not be loaded.", { detail: e.message });
    return;
  }
  if (state.chatId !== id) return;
  const nodes = r.messages.map(messageNode);
  const empty = $("empty");
  list().replaceChildren(empty, ...nodes);
  empty.hidden = nodes.length > 0;
  state.oldest = r.messages.length ? r.messages[0]._id : null;
  state.hasMore = r.messages.length === PAGE;
  const s = state.streams.get(id);
  if (s && state.generating.has(id)) attachStream(id, s);
  scrollDown();
  if (matchMedia("(min-width: 761px)").matches) $("input").focus();
}

async function loadOlder() {
  if (!state.hasMore || state.loadingOlder || !state.oldest) return;
  state.loadingOlder = true;
  const id = state.chatId;
  try {
    const r = await get(`/api/chat/messages/${id}?limit=${PAGE}&before=${state.oldest}`);
    if (state.chatId !== id) return;
    const box = list();
    const before = box.scrollHeight;
    const first = $("empty").nextSibling;
    for (const m of r.messages) if (!hasMessage(m._id)) box.insertBefore(messageNode(m), first);
    box.scrollTop += box.scrollHeight - before;
    state.oldest = r.messages.length ? r.messages[0]._id : state.oldest;
    state.hasMore = r.messages.length === PAGE;
  } catch (e) {
    banner("Older messages could not be loaded.", { detail: e.message });
  } finally {
    state.loadingOlder = false;
  }
}

// ---- sending and streaming --------------------------------------------------------------

function updateComposer() {
  const open = !!state.chatId && !isMemoryRoute();
  const busy = open && state.generating.has(state.chatId);
  $("input").disabled = !open;
  $("send").disabled = !open || busy;
  $("stop").hidden = !busy;
}

function autosize() {
  const t = $("input");
  t.style.height = "auto";
  t.style.height = Math.min(t.scrollHeight + 2, window.innerHeight * 0.4) + "px";
}

function send() {
  const chatId = state.chatId;
  const input = $("input");
  const content = input.value;
  if (!chatId || !content.trim() || state.generating.has(chatId)) return;
  if (!state.socket) {
    banner("Still connecting to the server. Try again in a moment.", { kind: "warn", timeout: 4000 });
    return;
  }
  input.value = "";
  autosize();
  const node = appendMessage({ role: "user", content, createdAt: new Date().toISOString() }, { force: true });
  node.classList.add("pending");
  state.generating.add(chatId);
  updateComposer();
  const chat = state.chats.get(chatId);
  if (chat && chat.title === "New chat") renameChat(chatId, content.trim().replace(/\s+/g, " ").slice(0, 60));
  const s = { text: "", node: null, bubble: null, messageId: null, raf: 0, seq: -1 };
  state.streams.set(chatId, s);
  showTyping(chatId, s);
  state.socket.timeout(30000).emit("ai-message", { chatId, content, clientId: randomId() }, (err, ack) => {
    if (err || !ack || !ack.ok) {
      node.classList.remove("pending");
      node.classList.add("failed");
      // Not stored: give the text back so nothing typed is lost.
      if (!input.value) {
        input.value = content;
        autosize();
      }
      if (err) banner("The server did not confirm your message. It will be retried when you send again.", { code: "timeout" });
      else codeBanner(ack && ack.code, ack && ack.error);
      finishStream(chatId, true);
      return;
    }
    node.classList.remove("pending");
    node.dataset.id = ack.messageId;
    touchChat(chatId);
  });
}

function showTyping(chatId, s) {
  if (chatId !== state.chatId) return;
  const node = appendMessage({ role: "model", content: "" }, { force: true });
  node.classList.add("streaming");
  s.node = node;
  s.bubble = node.querySelector(".bubble");
  const dots = el("span", "typing");
  dots.setAttribute("aria-label", "engram is thinking");
  dots.append(el("i"), el("i"), el("i"));
  s.bubble.append(dots);
}

function attachStream(chatId, s) {
  if (!s.node || !s.node.isConnected) {
    showTyping(chatId, s);
    if (s.text) paintStream(s);
  }
}

function paintStream(s) {
  s.raf = 0;
  if (!s.bubble) return;
  const stick = nearBottom();
  s.bubble.replaceChildren(renderMarkdown(s.text));
  s.bubble.classList.add("cursor");
  if (stick) scrollDown();
}

function onChunk(c) {
  if (!c || typeof c.delta !== "string") return;
  let s = state.streams.get(c.chat);
  if (!s) {
    s = { text: "", node: null, bubble: null, messageId: c.messageId, raf: 0, seq: -1 };
    state.streams.set(c.chat, s);
  }
  if (typeof c.seq === "number") {
    if (c.seq <= s.seq) return; // duplicate
    s.seq = c.seq;
  }
  s.text += c.delta;
  s.messageId = c.messageId;
  if (c.chat === state.chatId && !isMemoryRoute()) {
    if (!s.node || !s.node.isConnected) attachStream(c.chat, s);
    if (s.node) s.node.dataset.id = c.messageId;
    if (!s.raf) s.raf = requestAnimationFrame(() => paintStream(s));
  }
}

function finishStream(chatId, drop = false) {
  const s = state.streams.get(chatId);
  state.streams.delete(chatId);
  state.generating.delete(chatId);
  if (s) {
    if (s.raf) cancelAnimationFrame(s.raf);
    if (s.node && (drop || !s.text)) s.node.remove();
  }
  updateComposer();
  return s;
}

function onResponse(r) {
  if (!r) return;
  const chatId = r.chat;
  const s = state.streams.get(chatId);
  if (r.error || r.code) {
    finishStream(chatId, true);
    codeBanner(r.code, r.error);
    if (chatId === state.chatId && !isMemoryRoute()) {
      const lastMsg = [...list().querySelectorAll(".msg")].pop();
      if (lastMsg && lastMsg.classList.contains("user")) {
        const meta = lastMsg.querySelector(".meta");
        if (!meta.querySelector(".unanswered")) meta.append(el("span", "unanswered", "not answered"));
      }
    }
    return;
  }
  finishStream(chatId);
  touchChat(chatId);
  if (chatId !== state.chatId || isMemoryRoute()) return;
  const m = { _id: r.messageId, role: "model", content: r.content, createdAt: new Date().toISOString(), cancelled: !!r.cancelled };
  const stick = nearBottom();
  const node = messageNode(m);
  if (Array.isArray(r.memories) && r.memories.length) node.append(memoriesNode(r.memories));
  const old = (s && s.node && s.node.isConnected && s.node) || (r.messageId && list().querySelector(`.msg[data-id="${CSS.escape(r.messageId)}"]`));
  if (old) old.replaceWith(node);
  else list().append(node);
  $("empty").hidden = true;
  if (stick) scrollDown();
}

// Another tab or device of this user wrote or got an answer.
function onChatMessage(ev) {
  if (!ev || !ev.message) return;
  const m = ev.message;
  touchChat(ev.chat, m.createdAt);
  if (ev.chat !== state.chatId || isMemoryRoute()) return;
  if (hasMessage(m.id) || (state.streams.get(ev.chat)?.messageId === m.id)) return;
  appendMessage({ ...m, _id: m.id });
}

// ---- memory page ------------------------------------------------------------------------

function memoryCard(m) {
  const li = el("li", "mem-card");
  li.dataset.id = m.id;
  const body = el("div");
  body.append(el("div", "mem-text", m.text), memMeta(m));
  const b = el("button", "danger", "Delete");
  b.type = "button";
  b.setAttribute("aria-label", `Delete memory: ${m.text.slice(0, 60)}`);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await del(`/api/memory/${m.id}`);
      li.remove();
      $("memory-status").textContent = "Memory deleted.";
    } catch (e) {
      b.disabled = false;
      banner("The memory could not be deleted.", { detail: e.message });
    }
  });
  li.append(body, b);
  return li;
}

function memoryError(e) {
  $("memory-status").textContent =
    e.status === 404 ? "The memory API is not enabled on this server." : `Memories could not be loaded: ${e.message}`;
}

async function loadMemories({ more = false } = {}) {
  const q = $("memory-q").value.trim();
  const ul = $("memory-list");
  if (!more) {
    ul.replaceChildren();
    state.memCursor = null;
  }
  $("memory-status").textContent = "Loading…";
  try {
    let url;
    if (q) url = `/api/memory?q=${encodeURIComponent(q)}&k=20`;
    else url = `/api/memory?limit=${PAGE}` + (state.memCursor ? `&before=${state.memCursor}` : "");
    const r = await get(url);
    // A search lists what matched: results scored 0 share nothing with the query.
    if (q) r.memories = r.memories.filter((m) => typeof m.score !== "number" || m.score > 0);
    for (const m of r.memories) ul.append(memoryCard(m));
    const n = ul.children.length;
    $("memory-status").textContent = q
      ? `${r.memories.length} ${r.memories.length === 1 ? "memory matches" : "memories match"} “${q}”.`
      : n ? `${n} ${n === 1 ? "memory" : "memories"}, newest first.` : "Nothing remembered yet.";
    state.memCursor = r.memories.length ? r.memories[r.memories.length - 1].id : null;
    $("memory-more").hidden = !!q || r.memories.length < PAGE;
  } catch (e) {
    if (e.status === 401) return showAuth();
    memoryError(e);
  }
}

async function addNote(ev) {
  ev.preventDefault();
  const t = $("note-text");
  const text = t.value.trim();
  if (!text) return;
  try {
    await post("/api/memory", { text });
    t.value = "";
    $("memory-q").value = "";
    await loadMemories();
  } catch (e) {
    banner("The note could not be saved.", { detail: e.message });
  }
}

async function forgetAll() {
  if (!confirm("Forget everything engram remembers about you? Your chats stay; their memories go.")) return;
  try {
    const r = await del("/api/memory");
    await loadMemories();
    $("memory-status").textContent = `Forgot ${r.deleted ?? "all"} memories.`;
  } catch (e) {
    banner("Memories could not be deleted.", { detail: e.message });
  }
}

// ---- routing and layout -----------------------------------------------------------------

const isMemoryRoute = () => location.hash === "#/memory";

function closeDrawer() {
  $("app").classList.remove("drawer");
  $("scrim").hidden = true;
}

async function route() {
  if (!state.me) return;
  const memory = isMemoryRoute();
  $("chat-view").hidden = memory;
  if (memory) mount("memory").hidden = false;
  else if ($("memory-view")) $("memory-view").hidden = true;
  if (memory) $("memory-link").setAttribute("aria-current", "page");
  else $("memory-link").removeAttribute("aria-current");
  closeDrawer();
  if (memory) {
    document.title = "Memory – engram";
    renderChatList();
    updateComposer();
    await loadMemories();
    return;
  }
  const m = /^#\/chat\/([0-9a-f]{24})$/.exec(location.hash);
  if (m) return openChat(m[1]);
  const first = sortedChats()[0];
  if (first) {
    history.replaceState(null, "", `#/chat/${first._id}`); // no hashchange: opened here
    return openChat(first._id);
  }
  hint("");
  state.chatId = null;
  setTitle("engram");
  $("rename-chat").hidden = $("delete-chat").hidden = true;
  list().replaceChildren($("empty"));
  $("empty").hidden = false;
  updateComposer();
}

async function start(user) {
  state.me = user;
  if (document.documentElement.dataset.screen !== "app") hint(""); // signed in: app first next time
  show("app");
  const n = user.fullName ? `${user.fullName.firstName || ""} ${user.fullName.lastName || ""}`.trim() : "";
  $("me-name").textContent = n || user.email;
  $("me-name").title = user.email;
  try {
    await loadChats();
    await route();
  } finally {
    ready();
    setTimeout(connectSocket, 0);
  }
}

// The sign-in screen's controls. The inline script of index.html held a submit made before
// this module was in (not posted as a form): its listener goes, the submit is made now.
function wireAuth() {
  $("tab-login").addEventListener("click", () => setMode("login"));
  $("tab-register").addEventListener("click", () => setMode("register"));
  const form = $("auth-form");
  form.addEventListener("submit", onAuthSubmit);
  if (booted.held) form.removeEventListener("submit", booted.held);
  booted.held = undefined;
  setMode("login");
  if (booted.submitted) {
    booted.submitted = false;
    form.requestSubmit();
  }
}

// Opens the chat list drawer (narrow screens).
function openDrawer() {
  $("app").classList.add("drawer");
  $("scrim").hidden = false;
}

// The app screen's controls (the chat list, the conversation); the Memory page has its own.
function wireApp() {
  $("logout").addEventListener("click", logout);
  $("new-chat").addEventListener("click", newChat);
  $("rename-chat").addEventListener("click", () => {
    const c = state.chats.get(state.chatId);
    const t = c && prompt("Rename chat", c.title);
    if (t && t.trim()) renameChat(state.chatId, t.trim());
  });
  $("delete-chat").addEventListener("click", deleteChat);
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  const input = $("input");
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    } else if (e.key === "Escape" && state.generating.has(state.chatId)) {
      stop();
    }
  });
  input.addEventListener("input", autosize);
  $("stop").addEventListener("click", stop);
  list().addEventListener("scroll", () => {
    if (list().scrollTop < 80) loadOlder();
  });
  $("chat-view").querySelector(".menu").addEventListener("click", openDrawer);
  $("scrim").addEventListener("click", closeDrawer);
  $("chat-list").addEventListener("click", closeDrawer);
}

function wireMemory() {
  $("memory-search").addEventListener("submit", (e) => {
    e.preventDefault();
    loadMemories();
  });
  $("memory-note").addEventListener("submit", addNote);
  $("memory-more").addEventListener("click", () => loadMemories({ more: true }));
  $("forget-all").addEventListener("click", forgetAll);
  $("memory-view").querySelector(".menu").addEventListener("click", openDrawer);
}

function stop() {
  if (state.chatId && state.socket) state.socket.emit("ai-cancel", { chatId: state.chatId });
}

async function boot() {
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && $("app")) closeDrawer();
  });
  // No session cookie came with the page (the server chose the sign-in screen): nothing to
  // ask the server, the form is ready.
  if (document.documentElement.dataset.screen !== "app") {
    showAuth({ atBoot: true });
    return;
  }
  let r;
  try {
    const pending = early("me");
    r = await (pending ? json(pending) : get("/api/auth/me"));
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) banner("The server cannot be reached.", { detail: e.message });
    if (!state.me && document.documentElement.dataset.screen !== "auth") showAuth();
    return;
  }
  await start(r.user);
}

boot();
export { api };
