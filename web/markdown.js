// A small Markdown renderer that builds DOM nodes directly: text only ever becomes Text
// nodes, so no HTML from a model or a user can reach the page (no innerHTML anywhere).
// Supports paragraphs (single newlines kept), headings, fenced code blocks (also while
// still open during streaming), lists, block quotes, rules, `code`, **bold**, *italic*,
// ~~strike~~, [links](https://...) and bare URLs. Links keep only http:, https: and
// mailto: targets and open in a new tab without referrer.

const el = (tag, cls) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
};

export function safeUrl(raw) {
  try {
    const u = new URL(raw, location.href);
    return ["http:", "https:", "mailto:"].includes(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}

const INLINE =
  /(`+)([\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|(?<![\p{L}\p{N}_])__(?=\S)([\s\S]*?\S)__(?![\p{L}\p{N}_])|\*(?=[^\s*])([^*]*?[^\s*])\*|~~(?=\S)([\s\S]*?\S)~~|\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?\s*\)|(https?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]}])/u;

export function renderInline(text, parent) {
  while (text) {
    const m = INLINE.exec(text);
    if (!m) {
      parent.append(text);
      return;
    }
    if (m.index) parent.append(text.slice(0, m.index));
    if (m[1]) {
      const c = el("code");
      c.textContent = m[2].replace(/^ (.*) $/, "$1");
      parent.append(c);
    } else if (m[3] || m[4]) {
      const b = el("strong");
      renderInline(m[3] || m[4], b);
      parent.append(b);
    } else if (m[5]) {
      const i = el("em");
      renderInline(m[5], i);
      parent.append(i);
    } else if (m[6]) {
      const s = el("del");
      renderInline(m[6], s);
      parent.append(s);
    } else if (m[7]) {
      const href = safeUrl(m[8]);
      if (href) {
        const a = el("a");
        a.href = href;
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        renderInline(m[7], a);
        parent.append(a);
      } else {
        renderInline(m[7], parent);
      }
    } else if (m[9]) {
      const href = safeUrl(m[9]);
      if (href) {
        const a = el("a");
        a.href = href;
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        a.textContent = m[9];
        parent.append(a);
      } else {
        parent.append(m[9]);
      }
    }
    text = text.slice(m.index + m[0].length);
  }
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;

function codeBlock(lang, code) {
  const wrap = el("div", "code");
  const head = el("div", "code-head");
  const label = el("span");
  label.textContent = lang || "code";
  const copy = el("button");
  copy.type = "button";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy code");
  copy.addEventListener("click", () => {
    navigator.clipboard?.writeText(code).then(
      () => (copy.textContent = "Copied"),
      () => (copy.textContent = "Copy failed")
    );
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  });
  head.append(label, copy);
  const pre = el("pre");
  const c = el("code");
  if (lang) c.dataset.lang = lang;
  c.textContent = code;
  pre.append(c);
  wrap.append(head, pre);
  return wrap;
}

function paragraph(lines) {
  const p = el("p");
  lines.forEach((l, i) => {
    if (i) p.append(el("br"));
    renderInline(l, p);
  });
  return p;
}

// Renders src into a DocumentFragment.
export function renderMarkdown(src) {
  const out = document.createDocumentFragment();
  const lines = String(src).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) out.append(paragraph(para));
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flush();
      const fence = m[1];
      const body = [];
      i++;
      const closes = (l) => {
        const c = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(l);
        return c && c[1][0] === fence[0] && c[1].length >= fence.length;
      };
      while (i < lines.length && !closes(lines[i])) body.push(lines[i++]);
      i++; // the closing fence (or past the end while streaming)
      out.append(codeBlock(m[2], body.join("\n")));
      continue;
    }
    if (!line.trim()) {
      flush();
      i++;
      continue;
    }
    if ((m = HEADING.exec(line))) {
      flush();
      const h = el("h" + m[1].length);
      renderInline(m[2], h);
      out.append(h);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      flush();
      out.append(el("hr"));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      flush();
      const body = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        body.push(m[1]);
        i++;
      }
      const q = el("blockquote");
      q.append(renderMarkdown(body.join("\n")));
      out.append(q);
      continue;
    }
    if ((m = ITEM.exec(line))) {
      flush();
      const ordered = /\d/.test(m[2]);
      const list = el(ordered ? "ol" : "ul");
      if (ordered && parseInt(m[2], 10) !== 1) list.start = parseInt(m[2], 10);
      let item = null;
      while (i < lines.length) {
        const l = lines[i];
        const im = ITEM.exec(l);
        if (im && /\d/.test(im[2]) === ordered) {
          item = [im[3]];
          const li = el("li");
          list.append(li);
          li._lines = item;
        } else if (item && l.trim() && /^\s+/.test(l) && !FENCE.test(l)) {
          item.push(l.trim());
        } else {
          break;
        }
        i++;
      }
      for (const li of list.children) {
        li._lines.forEach((l, k) => {
          if (k) li.append(el("br"));
          renderInline(l, li);
        });
        delete li._lines;
      }
      out.append(list);
      continue;
    }
    para.push(line);
    i++;
  }
  flush();
  return out;
}
