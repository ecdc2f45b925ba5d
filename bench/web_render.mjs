// web_render: how fast the web UI's first screen shows, read from the browser's own
// Performance API (not wall-clock around page.goto). Starts the real binary (SQLite, the
// built-in offline model) on a free port, registers a user with a few chats holding a few
// messages each, then drives Debian's headless Chromium through playwright-core for RUNS
// fresh page loads of `/` in four cases:
//
//   sign-in  cold   a new browser context per load (empty HTTP cache), signed out
//   sign-in  warm   new tabs of one context that loaded the page before (304 revalidation)
//   chat     cold   a new context per load with the user's cookie: `/` opens the most
//                   recent chat, its history rendered
//   chat     warm   new tabs of one signed-in context
//   (both)   same   the page loaded again in the tab that showed it (as a reload or a link
//                   to it: the browser keeps that tab's renderer process, while each new
//                   tab above starts one, ~50 ms of the floor on this machine; not for
//                   the floor: a data: URL always gets a new process)
//   floor    cold/warm  the same for a data: URL page of one line of text: the browser's
//                   own cost of a new tab's first paint on this machine (its "ready" is
//                   its first contentful paint)
//   form     cold/warm  the same for a data: URL page of the barest sign-in form (a
//                   heading, two labelled inputs and a button; no style, no script): what
//                   any sign-in screen costs the browser before its own style and script
//
// For each load it reads first-contentful-paint (paint timing) and the app's own
// `engram:ready` mark (web/app.js sets it once the usable screen is in the DOM: the
// sign-in form, or the chat list with the open chat's messages), both relative to the
// navigation start, and prints median and p90 of each case, plus one `RESULT` line.
// "Cold" is an empty HTTP cache, not a new user: a signed-in context also carries the
// session cookie (the server sends the page that paints the app at once) and the app's
// localStorage hint (the last chat opened, whose messages index.html fetches early).
// `--waterfall` also prints the resource timing of the last load of each case (where
// the time goes).
//
//   node bench/web_render.mjs [--runs 30] [--waterfall] [--trace DIR] [--cases floor,form,chat]
//                             [--trace-all] [--against BUILD_DIR]
// (--trace DIR: a Chrome trace of the last load of each case, DIR/<screen>-<cache>.json,
// for chrome://tracing or Perfetto, with the compositor's categories: commit, raster
// tasks, activation, draw; with --trace-all, of every load: DIR/<screen>-<cache>-<i>.json,
// e.g. to compare CPU time per phase, which a busy machine stretches less than wall time.
// --cases: only those screens, e.g. to trace one. --against: an
// A/B run: a second server from BUILD_DIR/engram (e.g. a build of main) gets the same
// user and chats, and its sign-in and chat cases, named "<screen>@B", are interleaved with
// this build's, load by load, in the same browser.)
// Every case, the floor included, is loaded the same way (goto until the network is idle,
// then the entries are read), so no script of Playwright's runs before its first paint.
//   env: ENGRAM_BUILD (default ./build), CHROMIUM (default /usr/bin/chromium)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";
import { startBinary, BUILD } from "../tests/e2e/lib/proc.mjs";
import { client } from "../tests/e2e/lib/app.mjs";

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const RUNS = +arg("runs", process.env.RUNS || 30);
const WATERFALL = process.argv.includes("--waterfall");
const TRACE = arg("trace", ""); // a folder: a Chrome trace of the last load of each case
const TRACE_ALL = process.argv.includes("--trace-all"); // ... of every load, <case>-<cache>-<i>.json
const TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline", "disabled-by-default-devtools.timeline.frame", "blink.user_timing", "loading", "v8.execute", "toplevel", "blink", "navigation", "cc", "viz", "benchmark"];
const ONLY = arg("cases", ""); // e.g. "floor,sign-in": only those screens
const AGAINST = arg("against", ""); // a build folder: its engram is case "<screen>@B"
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHATS = 4;
// The floor: what the browser alone needs to show a new tab with one line of text (no
// network, no script), to read the figures of a busy machine against.
const FLOOR = "data:text/html,<!doctype html><title>floor</title><p>engram floor: one line of text</p>";
// The form floor: the same for the barest sign-in form the browser can show.
const FORM_FLOOR =
  "data:text/html," +
  encodeURIComponent(
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>form floor</title><form method="post"><h1>engram</h1>' +
      '<label>Email <input name="email" type="email" autocomplete="email" required></label><br>' +
      '<label>Password <input name="password" type="password" autocomplete="current-password" required></label><br>' +
      '<button type="submit">Sign in</button></form>'
  );
const QUESTIONS = 3;

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const f1 = (x) => (x === undefined || x === null ? "-" : x.toFixed(1));

// One load of `/` in a new tab of ctx (or again in the tab `keep`): the figures of the
// Performance API.
async function load(ctx, url, expect, tracePath, keep) {
  const page = keep || (await ctx.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  try {
    if (tracePath) await ctx.browser().startTracing(page, { path: tracePath, screenshots: false, categories: TRACE_CATEGORIES });
    // No script of ours runs in the page until the load is over (Playwright's polling of a
    // waitForFunction would compete with the page's own work): wait for the network to be
    // quiet for 500 ms, then read the figures. The same for the floor: with "load" instead,
    // Playwright injected its own script (~35 ms of main thread) into the floor page before
    // that page's first paint, so the floor was slower than the browser's real cost.
    await page.goto(url, { waitUntil: "networkidle" });
    await page.waitForFunction(
      (floor) =>
        (floor || performance.getEntriesByName("engram:ready").length > 0) &&
        performance.getEntriesByName("first-contentful-paint").length > 0,
      expect.screen === "floor",
      { timeout: 15000, polling: 100 }
    );
    const r = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      return {
        fcp: performance.getEntriesByName("first-contentful-paint")[0].startTime,
        ready: (performance.getEntriesByName("engram:ready")[0] || performance.getEntriesByName("first-contentful-paint")[0]).startTime,
        html: nav.responseEnd,
        dcl: nav.domContentLoadedEventEnd,
        screen: location.protocol === "data:" ? "floor" : { auth: "sign-in", app: "chat" }[document.documentElement.dataset.screen] || "none",
        msgs: document.querySelectorAll("#messages .msg").length,
        resources: performance.getEntriesByType("resource").map((e) => ({
          name: e.name.replace(location.origin, ""),
          start: e.startTime,
          end: e.responseEnd,
          status: e.responseStatus,
          size: e.transferSize,
        })),
      };
    });
    if (tracePath) await ctx.browser().stopTracing();
    if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
    if (r.screen !== expect.screen) throw new Error(`expected the ${expect.screen} screen, got ${r.screen}`);
    if (expect.screen === "chat" && r.msgs !== expect.msgs)
      throw new Error(`the open chat shows ${r.msgs} messages at engram:ready, expected ${expect.msgs}`);
    return r;
  } finally {
    if (!keep) await page.close();
  }
}

function waterfall(label, r) {
  console.log(`  waterfall, last ${label} load (ms from navigation start):`);
  console.log(`    ${"/ (document)".padEnd(34)} ${"0.0".padStart(7)} ${f1(r.html).padStart(7)}`);
  for (const e of r.resources)
    console.log(`    ${e.name.slice(0, 34).padEnd(34)} ${f1(e.start).padStart(7)} ${f1(e.end).padStart(7)}  ${e.status || ""} ${e.size ? e.size + " B" : "cache"}`);
  console.log(`    DOMContentLoaded ${f1(r.dcl)}, first contentful paint ${f1(r.fcp)}, engram:ready ${f1(r.ready)}`);
}

// An engram server (the binary `bin`, relative to ENGRAM_BUILD) on its own data folder,
// with a user who has a few chats of a few questions and answers each.
async function server(bin) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-webbench-"));
  const srv = await startBinary(bin, {
    env: { ENGRAM_DATA_DIR: dir, JWT_SECRET: "web-render-bench-secret-0123456789abcdef", ENGRAM_LLM: "offline", ENGRAM_LOG_LEVEL: "warn" },
  });
  try {
    const app = client(() => srv.url);
    const user = await app.register("bench");
    const sock = await app.connect(user);
    let lastChat = "";
    for (let c = 0; c < CHATS; c++) {
      const chat = (lastChat = await app.newChat(user, `Chat ${c + 1}`));
      for (let q = 0; q < QUESTIONS; q++) await app.ask(sock, chat, `Question ${q + 1} of chat ${c + 1}: what about **markdown** and \`code\`?`);
    }
    sock.close();
    await new Promise((r) => setTimeout(r, 300)); // answers are stored just after ai-response
    return { srv, dir, url: srv.url, token: user.cookie.slice("token=".length), lastChat };
  } catch (e) {
    await srv.stop({ check: false });
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function main() {
  const servers = [await server("engram")];
  let browser;
  try {
    if (AGAINST) servers.push(await server(path.relative(BUILD, path.resolve(AGAINST, "engram"))));

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const opts = { viewport: { width: 1280, height: 800 }, colorScheme: "light" };
    // A signed-in browser has the session cookie and the app's localStorage hint (the
    // last chat opened, written by web/app.js); a cold context has them and nothing else.
    // (Cookies are not per port: each case has contexts of its own, with its server's.)
    const newCtx = (signedIn, s) =>
      browser.newContext({
        ...opts,
        storageState: signedIn
          ? {
              cookies: [{ name: "token", value: s.token, domain: "127.0.0.1", path: "/", expires: -1, httpOnly: true, secure: false, sameSite: "Lax" }],
              origins: [{ origin: s.url, localStorage: [{ name: "engram:chat", value: s.lastChat }] }],
            }
          : undefined,
      });
    const cases = [
      { name: "floor", signedIn: false, url: FLOOR, expect: { screen: "floor" } },
      { name: "form", signedIn: false, url: FORM_FLOOR, expect: { screen: "floor" } },
    ];
    for (const [k, s] of servers.entries()) {
      const tag = k ? "@B" : "";
      cases.push({ name: "sign-in" + tag, signedIn: false, s, expect: { screen: "sign-in" } });
      cases.push({ name: "chat" + tag, signedIn: true, s, expect: { screen: "chat", msgs: QUESTIONS * 2 } });
    }
    for (const c of cases) c.base = c.name.replace(/@B$/, "");
    const chosen = cases.filter((c) => !ONLY || ONLY.split(",").includes(c.base));
    const load0 = os.loadavg().map((x) => x.toFixed(2)).join(" ");
    let version = "";
    try {
      version = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      version = CHROMIUM;
    }
    console.log(`web_render: ${new Date().toISOString()}, ${os.cpus().length} cores, load average ${load0}, ${version}, ${RUNS} loads per case`);
    if (AGAINST) console.log(`A/B: "<screen>" is ${BUILD}/engram, "<screen>@B" is ${path.resolve(AGAINST, "engram")}`);
    // The cases are interleaved (one load of each in turn) so that a change of the
    // machine's load during the run weighs on all of them alike.
    const url = (c) => c.url || c.s.url + "/";
    const warmCtx = [], sameCtx = [], samePage = [], res = chosen.map(() => ({ cold: [], warm: [], same: [] }));
    for (const c of chosen) {
      // Warm-up: the first load of a fresh browser pays process start-up; not counted.
      const ctx0 = await newCtx(c.signedIn, c.s);
      await load(ctx0, url(c), c.expect);
      await ctx0.close();
      const ctx = await newCtx(c.signedIn, c.s);
      await load(ctx, url(c), c.expect); // fills the HTTP cache
      warmCtx.push(ctx);
      // its own context: an open tab of the site would let the new tabs of the warm case
      // reuse its renderer process (~30 ms less than a tab of a site with no open tab)
      const sctx = await newCtx(c.signedIn, c.s);
      samePage.push(c.url ? null : await sctx.newPage()); // a data: URL: no same-tab case
      sameCtx.push(sctx);
      if (samePage[samePage.length - 1]) await load(sctx, url(c), c.expect, undefined, samePage[samePage.length - 1]);
    }
    for (let i = 0; i < RUNS; i++) {
      for (const [k, c] of chosen.entries()) {
        const trace = (cache) =>
          TRACE && (TRACE_ALL || i === RUNS - 1) ? path.join(TRACE, `${c.name}-${cache}${TRACE_ALL ? "-" + i : ""}.json`) : undefined;
        const ctx = await newCtx(c.signedIn, c.s);
        res[k].cold.push(await load(ctx, url(c), c.expect, trace("cold")));
        await ctx.close();
        res[k].warm.push(await load(warmCtx[k], url(c), c.expect, trace("warm")));
        if (samePage[k]) res[k].same.push(await load(sameCtx[k], url(c), c.expect, trace("same"), samePage[k]));
      }
    }
    for (const ctx of [...warmCtx, ...sameCtx]) await ctx.close();
    const out = [];
    for (const [k, c] of chosen.entries()) {
      for (const cache of ["cold", "warm", "same"]) {
        const rs = res[k][cache];
        if (!rs.length) continue; // the floors, data: URLs, have no same-tab case
        const fcp = rs.map((r) => r.fcp), ready = rs.map((r) => r.ready);
        const row = { screen: c.name, cache, fcp50: pct(fcp, 50), fcp90: pct(fcp, 90), ready50: pct(ready, 50), ready90: pct(ready, 90), max: Math.max(...fcp, ...ready) };
        out.push(row);
        if (WATERFALL && !c.url) waterfall(`${c.name} ${cache}`, rs[rs.length - 1]);
        if (cache !== "cold" && rs.some((r) => r.resources.some((e) => e.size > 1000 && !e.name.startsWith("/api/") && !e.name.startsWith("/socket.io/?"))))
          console.log(`  note: a ${cache} ${c.name} load fetched a whole file again (no 304)`);
      }
    }
    console.log("");
    console.log("screen     cache   FCP p50   FCP p90   ready p50   ready p90   worst (ms)");
    for (const r of out)
      console.log(`${r.screen.padEnd(10)} ${r.cache.padEnd(6)} ${f1(r.fcp50).padStart(8)}  ${f1(r.fcp90).padStart(8)}  ${f1(r.ready50).padStart(10)}  ${f1(r.ready90).padStart(10)}  ${f1(r.max).padStart(10)}`);
    console.log(`load average after: ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
    console.log(
      "RESULT " +
        out.map((r) => `${r.screen}_${r.cache}_fcp_p50=${f1(r.fcp50)} ${r.screen}_${r.cache}_fcp_p90=${f1(r.fcp90)} ${r.screen}_${r.cache}_ready_p50=${f1(r.ready50)} ${r.screen}_${r.cache}_ready_p90=${f1(r.ready90)}`).join(" ")
    );
  } finally {
    if (browser) await browser.close();
    for (const s of servers) {
      await s.srv.stop();
      fs.rmSync(s.dir, { recursive: true, force: true });
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
