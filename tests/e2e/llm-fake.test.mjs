// The fake model server (tests/fakes/fake-llm.mjs) checked against the published wire
// formats in PROVIDER-CONTRACTS.md, so that tests built on it test the real contract:
// paths, auth errors, SSE framing (Gemini CRLF without [DONE], OpenAI LF with [DONE] and
// the include_usage chunk), error envelopes, Retry-After, embeddings shapes and limits,
// the control endpoints. Node only: needs no build.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startFakeLlm, fakeEmbed } from "../fakes/fake-llm.mjs";

let fake;
const G = (m, method) => `${fake.url}/v1beta/models/${m}:${method}`;
const post = (url, body, headers = {}) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
const script = (queue) => post(fake.url + "/__script", { queue });
const KEY = { "x-goog-api-key": "test-key" };
const gemBody = { contents: [{ role: "user", parts: [{ text: "hello fake" }] }] };
const oaBody = (extra = {}) => ({ model: "fake-model", messages: [{ role: "system", content: "S" }, { role: "user", content: "hello fake" }], ...extra });

function sseEvents(text) {
  // Minimal WHATWG split for assertions: events end at a blank line (CRLF, LF or CR).
  return text.split(/\r\n\r\n|\n\n|\r\r/).filter((e) => e.length).map((e) => e.replace(/^data: /, ""));
}

before(async () => {
  fake = await startFakeLlm();
});
after(async () => {
  await fake.close();
});

test("gemini stream: CRLF SSE, whole responses, finishReason on the last, no [DONE]", async () => {
  await post(fake.url + "/__reset", {});
  const r = await post(G("gemini-2.5-flash", "streamGenerateContent?alt=sse"), gemBody, KEY);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/event-stream/);
  const text = await r.text();
  assert.ok(text.includes("\r\n\r\n"));
  assert.ok(!text.includes("[DONE]"));
  const evs = sseEvents(text).map((e) => JSON.parse(e));
  assert.ok(evs.length >= 2);
  assert.equal(evs.map((e) => e.candidates[0].content.parts.map((p) => p.text).join("")).join(""), "You said: hello fake");
  assert.equal(evs.at(-1).candidates[0].finishReason, "STOP");
  assert.ok(evs.slice(0, -1).every((e) => e.candidates[0].finishReason === undefined));
  assert.equal(evs.at(-1).candidates[0].content.role, "model");
  assert.ok(evs.at(-1).usageMetadata.totalTokenCount > 0);
  const reqs = await (await fetch(fake.url + "/__requests")).json();
  assert.equal(reqs.length, 1);
  assert.equal(reqs[0].path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
  assert.equal(reqs[0].query.alt, "sse");
  assert.equal(reqs[0].headers["x-goog-api-key"], "test-key");
  assert.deepEqual(reqs[0].body, gemBody);
});

test("gemini without alt=sse streams a JSON array; generateContent is one object", async () => {
  const arr = await (await post(G("gemini-2.5-flash", "streamGenerateContent"), gemBody, KEY)).json();
  assert.ok(Array.isArray(arr) && arr.length >= 2);
  const one = await (await post(G("gemini-2.5-flash", "generateContent"), gemBody, KEY)).json();
  assert.equal(one.candidates[0].content.parts[0].text, "You said: hello fake");
  assert.equal(one.candidates[0].finishReason, "STOP");
});

test("gemini auth and model errors use the Google envelope", async () => {
  let r = await post(G("gemini-2.5-flash", "generateContent"), gemBody);
  assert.equal(r.status, 403);
  assert.equal((await r.json()).error.status, "PERMISSION_DENIED");
  r = await post(G("gemini-2.5-flash", "generateContent"), gemBody, { "x-goog-api-key": "invalid-key" });
  assert.equal(r.status, 400);
  const e = (await r.json()).error;
  assert.equal(e.status, "INVALID_ARGUMENT");
  assert.equal(e.details[0].reason, "API_KEY_INVALID");
  r = await post(G("missing-model", "generateContent"), gemBody, KEY);
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.status, "NOT_FOUND");
  // ?key= is accepted too
  r = await post(G("gemini-2.5-flash", "generateContent") + "?key=k", gemBody);
  assert.equal(r.status, 200);
});

test("gemini scripted 429 carries RetryInfo, Retry-After when asked", async () => {
  await script([{ type: "rate_limit", retryDelay: "26s", retryAfter: 3 }]);
  const r = await post(G("gemini-2.5-flash", "streamGenerateContent?alt=sse"), gemBody, KEY);
  assert.equal(r.status, 429);
  assert.equal(r.headers.get("retry-after"), "3");
  const e = (await r.json()).error;
  assert.equal(e.code, 429);
  assert.equal(e.status, "RESOURCE_EXHAUSTED");
  assert.equal(e.details.find((d) => d["@type"].endsWith("RetryInfo")).retryDelay, "26s");
});

test("gemini blocked prompt, safety finish, mid-stream error and truncation", async () => {
  await script([{ type: "blocked" }]);
  let evs = sseEvents(await (await post(G("m", "streamGenerateContent?alt=sse"), gemBody, KEY)).text()).map(JSON.parse);
  assert.equal(evs.length, 1);
  assert.equal(evs[0].candidates, undefined);
  assert.equal(evs[0].promptFeedback.blockReason, "SAFETY");
  await script([{ type: "safety" }]);
  evs = sseEvents(await (await post(G("m", "streamGenerateContent?alt=sse"), gemBody, KEY)).text()).map(JSON.parse);
  assert.equal(evs[0].candidates[0].finishReason, "SAFETY");
  assert.equal(evs[0].candidates[0].content, undefined);
  await script([{ type: "midstream_error", text: "a b c" }]);
  evs = sseEvents(await (await post(G("m", "streamGenerateContent?alt=sse"), gemBody, KEY)).text()).map(JSON.parse);
  assert.equal(evs.at(-1).error.status, "UNAVAILABLE");
  assert.ok(evs[0].candidates[0].content.parts[0].text.length > 0);
  await script([{ type: "truncate", text: "a b c" }]);
  const r = await post(G("m", "streamGenerateContent?alt=sse"), gemBody, KEY);
  await assert.rejects(r.text()); // the chunked body never terminates
});

test("gemini embeddings: embedContent, batchEmbedContents, dimensions, batch limit", async () => {
  let r = await post(G("gemini-embedding-001", "embedContent"), { model: "models/gemini-embedding-001", content: { parts: [{ text: "red apple" }] }, taskType: "RETRIEVAL_DOCUMENT", outputDimensionality: 768 }, KEY);
  const one = await r.json();
  assert.equal(one.embedding.values.length, 768);
  assert.deepEqual(one.embedding.values, fakeEmbed("red apple", 768));
  const reqs = (n, model = "models/gemini-embedding-001") =>
    Array.from({ length: n }, (_, i) => ({ model, content: { parts: [{ text: `t${i}` }] }, outputDimensionality: 768 }));
  r = await post(G("gemini-embedding-001", "batchEmbedContents"), { requests: reqs(3) }, KEY);
  const b = await r.json();
  assert.equal(b.embeddings.length, 3);
  assert.deepEqual(b.embeddings[2].values, fakeEmbed("t2", 768));
  r = await post(G("gemini-embedding-001", "batchEmbedContents"), { requests: reqs(101) }, KEY);
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /at most 100 requests can be in one batch/);
  r = await post(G("gemini-embedding-001", "batchEmbedContents"), { requests: reqs(1, "models/other") }, KEY);
  assert.equal(r.status, 400);
  // texts that share words are closer than texts that do not
  const cos = (a, c) => a.reduce((s, x, i) => s + x * c[i], 0) / Math.hypot(...a) / Math.hypot(...c);
  const v = (t) => fakeEmbed(t, 768);
  assert.ok(cos(v("my dog rex"), v("rex the dog")) > cos(v("my dog rex"), v("violin lessons lisbon")));
});

test("openai stream: LF SSE, role chunk, usage chunk with empty choices, [DONE]", async () => {
  await post(fake.url + "/__reset", {});
  const r = await post(fake.url + "/v1/chat/completions", oaBody({ stream: true, stream_options: { include_usage: true } }), { authorization: "Bearer sk-x" });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/event-stream/);
  const text = await r.text();
  assert.ok(!text.includes("\r"));
  const evs = sseEvents(text);
  assert.equal(evs.at(-1), "[DONE]");
  const chunks = evs.slice(0, -1).map(JSON.parse);
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id));
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.ok(usage.usage.total_tokens > 0);
  assert.equal(chunks.at(-2).choices[0].finish_reason, "stop");
  assert.deepEqual(chunks.at(-2).choices[0].delta, {});
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content || "").join(""), "You said: hello fake");
  const reqs = await (await fetch(fake.url + "/__requests")).json();
  assert.equal(reqs[0].headers.authorization, "Bearer sk-x");
  assert.equal(reqs[0].body.stream, true);
});

test("openai dialects, errors and embeddings", async () => {
  await script([{ type: "stream", dialect: "vllm" }, { type: "midstream_error", dialect: "vllm" }]);
  let evs = sseEvents(await (await post(fake.url + "/v1/chat/completions", oaBody({ stream: true }))).text());
  assert.equal(JSON.parse(evs.at(-2)).choices[0].delta.content, "");
  evs = sseEvents(await (await post(fake.url + "/v1/chat/completions", oaBody({ stream: true }))).text());
  assert.equal(evs.at(-1), "[DONE]"); // vLLM sends [DONE] after an error
  assert.ok(JSON.parse(evs.at(-2)).error);
  await script([{ type: "stream", dialect: "llamacpp", keepalive: 1 }]);
  const raw = await (await post(fake.url + "/v1/chat/completions", oaBody({ stream: true }))).text();
  assert.ok(raw.startsWith(":\n\n"));
  await script([{ type: "rate_limit", quota: true }, { type: "rate_limit", retryAfterMs: 150 }]);
  let r = await post(fake.url + "/v1/chat/completions", oaBody());
  assert.equal(r.status, 429);
  assert.equal((await r.json()).error.code, "insufficient_quota");
  r = await post(fake.url + "/v1/chat/completions", oaBody());
  assert.equal(r.headers.get("retry-after-ms"), "150");
  assert.equal((await r.json()).error.code, "rate_limit_exceeded");
  r = await post(fake.url + "/v1/chat/completions", { model: "missing-model", messages: [] });
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, "model_not_found");
  r = await post(fake.url + "/v1/chat/completions", oaBody());
  const one = await r.json();
  assert.equal(one.object, "chat.completion");
  assert.equal(one.choices[0].message.content, "You said: hello fake");
  r = await post(fake.url + "/v1/embeddings", { model: "e", input: ["a b", "c"] });
  const emb = await r.json();
  assert.equal(emb.object, "list");
  assert.deepEqual(emb.data.map((d) => d.index), [0, 1]);
  assert.equal(emb.data[0].embedding.length, 768);
  r = await post(fake.url + "/v1/embeddings", { model: "e", input: ["ok", ""] });
  assert.equal(r.status, 400);
});

test("scripted behaviours: unmatched ones are for generation only, match targets embeddings", async () => {
  await post(fake.url + "/__reset", {});
  await script([{ type: "status", status: 500 }, { type: "rate_limit", match: "embed", retryAfter: 1 }, { type: "status", status: 503, match: ":batchEmbedContents" }]);
  // The embedding call skips the unmatched 500 and takes the 429 meant for it.
  let r = await post(fake.url + "/v1/embeddings", { model: "e", input: "x" });
  assert.equal(r.status, 429);
  assert.equal(r.headers.get("retry-after"), "1");
  r = await post(G("gemini-embedding-001", "batchEmbedContents"), { requests: [] }, KEY);
  assert.equal(r.status, 503);
  assert.equal((await r.json()).error.status, "UNAVAILABLE");
  r = await post(fake.url + "/v1/embeddings", { model: "e", input: "x" });
  assert.equal(r.status, 200);
  // The chat call gets the 500.
  r = await post(fake.url + "/v1/chat/completions", oaBody());
  assert.equal(r.status, 500);
  assert.equal((await r.json()).error.type, "server_error");
  await script([{ type: "stream", shuffle: true, match: "embed" }]);
  const emb = await (await post(fake.url + "/v1/embeddings", { model: "e", input: ["a", "b"] })).json();
  assert.deepEqual(emb.data.map((d) => d.index), [1, 0]);
});

test("runs as a program: prints PORT=<n>, exits when stdin closes", async () => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const child = spawn(process.execPath, [path.join(here, "../fakes/fake-llm.mjs"), "--exit-on-stdin-close"], { stdio: ["pipe", "pipe", "inherit"] });
  const line = await new Promise((resolve) => child.stdout.once("data", (d) => resolve(String(d))));
  const port = Number(/^PORT=(\d+)\n$/.exec(line)[1]);
  assert.ok(port > 0);
  const h = await (await fetch(`http://127.0.0.1:${port}/__health`)).json();
  assert.deepEqual(h, { ok: true });
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  child.stdin.end();
  assert.equal(await exited, 0);
});
