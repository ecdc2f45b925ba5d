// The web UI's Markdown renderer (web/markdown.js) in headless Chromium, served by the
// real binary: golden outputs, XSS vectors, every prefix of a document (as it streams in),
// and random inputs. Invariants for every input: only the renderer's own tags appear, no
// event-handler attribute, no link whose target is not http(s)/mailto, and rendering
// never throws.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startBinary } from "./lib/proc.mjs";

let srv, dir, browser, page;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-md-"));
  srv = await startBinary("engram", { env: { ENGRAM_DATA_DIR: dir, ENGRAM_LOG_LEVEL: "warn" } });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage();
  await page.goto(srv.url + "/");
  await page.evaluate(async () => {
    const md = await import("/markdown.js");
    const ALLOWED = new Set(["P", "BR", "STRONG", "EM", "DEL", "CODE", "PRE", "A", "UL", "OL", "LI",
      "BLOCKQUOTE", "H1", "H2", "H3", "H4", "H5", "H6", "HR", "DIV", "SPAN", "BUTTON"]);
    window.__render = (src) => {
      const box = document.createElement("div");
      box.append(md.renderMarkdown(src));
      return box;
    };
    window.__html = (src) => window.__render(src).innerHTML;
    // Returns a list of violations of the invariants for src.
    window.__check = (src) => {
      const bad = [];
      let box;
      try {
        box = window.__render(src);
      } catch (e) {
        return [`threw ${e}`];
      }
      for (const e of box.querySelectorAll("*")) {
        if (!ALLOWED.has(e.tagName)) bad.push(`tag ${e.tagName}`);
        for (const a of e.attributes) {
          if (/^on/i.test(a.name) || a.name === "style" || a.name === "src") bad.push(`attr ${a.name}`);
        }
        if (e.tagName === "A" && !/^(https?:|mailto:)/.test(e.href)) bad.push(`href ${e.href}`);
      }
      return bad;
    };
  });
});

after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const html = (src) => page.evaluate((s) => window.__html(s), src);
const check = (src) => page.evaluate((s) => window.__check(s), src);

test("goldens", async () => {
  const cases = [
    ["hello", "<p>hello</p>"],
    ["a\nb\n\nc", "<p>a<br>b</p><p>c</p>"],
    ["**b** *i* ~~s~~ `c`", "<p><strong>b</strong> <em>i</em> <del>s</del> <code>c</code></p>"],
    ["# T\n## U", "<h1>T</h1><h2>U</h2>"],
    ["- a\n- b", "<ul><li>a</li><li>b</li></ul>"],
    ["3. x\n4. y", '<ol start="3"><li>x</li><li>y</li></ol>'],
    ["> q\n> r", "<blockquote><p>q<br>r</p></blockquote>"],
    ["---", "<hr>"],
    ["snake_case_name and __init__", "<p>snake_case_name and <strong>init</strong></p>"],
    ["a__b__c", "<p>a__b__c</p>"],
    ["<b>x</b>", "<p>&lt;b&gt;x&lt;/b&gt;</p>"],
    ["[site](https://example.com/a?b=1)", '<p><a href="https://example.com/a?b=1" target="_blank" rel="noopener noreferrer nofollow">site</a></p>'],
    ["see https://example.com.", '<p>see <a href="https://example.com/" target="_blank" rel="noopener noreferrer nofollow">https://example.com</a>.</p>'],
  ];
  for (const [src, want] of cases) assert.equal(await html(src), want, src);
  const code = await page.evaluate(() => {
    const b = window.__render("```python\nprint('<hi>')\n```\nafter");
    return { lang: b.querySelector(".code-head span").textContent, code: b.querySelector("pre code").textContent, p: b.querySelector("p").textContent };
  });
  assert.deepEqual(code, { lang: "python", code: "print('<hi>')", p: "after" });
  // an open fence while streaming is a code block up to the end
  assert.equal(await page.evaluate(() => window.__render("```\nlet a = 1;\nlet b").querySelector("pre code").textContent), "let a = 1;\nlet b");
});

test("XSS vectors render as text", async () => {
  const vectors = [
    `<img src=x onerror="alert(1)">`,
    `<script>alert(1)</script>`,
    `<svg onload=alert(1)>`,
    `[x](javascript:alert(1))`,
    `[x](JaVaScRiPt:alert(1))`,
    `[x]( javascript:alert(1) )`,
    `[x](java\tscript:alert(1))`,
    `[x](data:text/html,<script>alert(1)</script>)`,
    `[x](vbscript:msgbox(1))`,
    `[x](<javascript:alert(1)>)`,
    `[<img src=x onerror=alert(1)>](https://ok.example)`,
    "`<img src=x onerror=alert(1)>`",
    "```html\n<img src=x onerror=alert(1)>\n```",
    `> <iframe src="javascript:alert(1)"></iframe>`,
    `- <a href="javascript:alert(1)">x</a>`,
    `**<img src=x onerror=alert(1)>**`,
    `https://example.com/"onmouseover="alert(1)`,
  ];
  for (const v of vectors) assert.deepEqual(await check(v), [], v);
  const executed = await page.evaluate(async (vs) => {
    window.__pwned = 0;
    const host = document.createElement("div");
    document.body.append(host);
    for (const v of vs) host.append(window.__render(v.replaceAll("alert(1)", "window.__pwned++")));
    for (const a of host.querySelectorAll("a")) a.dispatchEvent(new MouseEvent("mouseover"));
    await new Promise((r) => setTimeout(r, 200));
    host.remove();
    return window.__pwned;
  }, vectors);
  assert.equal(executed, 0);
});

test("every prefix of a document (streaming) renders safely", async () => {
  const doc = "# Title\n\nSome **bold** and *it* text with `code` and a [link](https://x.example).\n\n" +
    "1. one\n2. two\n   continued\n\n- a\n- b\n\n> quote **in** quote\n\n```js\nconst s = '<img src=x onerror=alert(1)>';\n```\n\n" +
    "~~gone~~ <b>not html</b> https://example.org/path_(x) done\n---\nend";
  const bad = await page.evaluate((d) => {
    const out = [];
    for (let i = 0; i <= d.length; i++) {
      const b = window.__check(d.slice(0, i));
      if (b.length) out.push([i, b]);
    }
    return out;
  }, doc);
  assert.deepEqual(bad, []);
});

test("random inputs keep the invariants", async () => {
  const bad = await page.evaluate(() => {
    let seed = 12345;
    const rnd = (n) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const atoms = ["*", "**", "_", "__", "`", "```", "~~", "[", "]", "(", ")", "<", ">", "#", "# ", "- ", "1. ",
      "\n", "\n\n", " ", "a", "b", "http://x.y/", "https://", "javascript:", "mailto:a@b", "<img src=x onerror=1>",
      "\"", "'", "\\", "&amp;", "\t", "   ", "> ", "---", "é", "😀"];
    const out = [];
    for (let k = 0; k < 3000; k++) {
      let s = "";
      const n = 1 + rnd(30);
      for (let i = 0; i < n; i++) s += atoms[rnd(atoms.length)];
      const b = window.__check(s);
      if (b.length) out.push([s, b]);
      if (out.length > 5) break;
    }
    return out;
  });
  assert.deepEqual(bad, []);
});
