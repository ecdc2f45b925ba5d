/*
 * webgen: compiles the web UI files into a C source for src/web (build step, see
 * cmake/web.cmake). Usage:
 *
 *   webgen <out.c> </url-path>=<file> ...
 *
 * For each file it writes the bytes, a gzip copy (only when it is smaller), the
 * Content-Type (from the extension) and a strong ETag (FNV-1a 64 of the bytes), and one
 * table `web__assets[]` of struct web_asset (src/web/web_int.h). The output is written to
 * <out.c>.tmp and renamed, so a failed run never leaves half a file. Exit status 1 with a
 * message naming the file on any error (missing file, unknown extension).
 *
 * Inline blocks: in .html files, the content of every bare `<script>...</script>` and
 * `<style>...</style>` (no attributes) is hashed (SHA-256, base64) into the strings
 * `web__csp_script` and `web__csp_style` (" 'sha256-...'" per block), which src/web adds
 * to the script-src and style-src of its Content-Security-Policy: the policy stays strict
 * (no 'unsafe-inline') while the page may carry its critical boot script and CSS inline.
 * A `<script` or `<style` with attributes inside an .html file is refused (it would be
 * blocked by the policy at run time), except `<script type="module" src=...>` and other
 * tags with a src.
 *
 * Inlined style sheets: in .html files, `<link rel="stylesheet" href="/x.css" inline>`
 * (exactly so) is replaced by `<style>` + the bytes of the file given for /x.css + `</style>`
 * before hashing, so the first paint needs no second request; /x.css is served too.
 *
 * Versioned script URLs: in .js and .html files, a quoted reference to a .js asset,
 * "/x.js" (or "./x.js" for one at the root), becomes "/x.js?v=<its ETag's 16 hex>", the
 * files being taken in dependency order (a file's tag covers the versions it names). src/web
 * serves a request whose v= matches as immutable (cached for a year without revalidation);
 * a new binary changes the URL. Unversioned requests keep Cache-Control: no-cache.
 *
 * Signed-in variants: an .html file whose <html> tag holds `data-screen="auth"`
 * (index.html) gets a second asset, path "<path>?signed-in", the same bytes with
 * that one attribute set to `data-screen="app"` (its own gzip copy and ETag; the inline
 * blocks, hence the CSP hashes, are unchanged). src/web serves it to a request carrying the
 * session cookie, so the page paints the right screen without running a script first.
 *
 * Screen templates: each screen of such a file is written inside
 * `<template data-screen="auth">` or `<template data-screen="app">` (exactly so; templates
 * may nest). Each variant unwraps its own screen's template (the open tag and its matching
 * `</template>` removed: the markup is live DOM) and keeps the other screen's as a template,
 * which the browser parses but neither styles, lays out nor hands to its autofill agents;
 * web/app.js instantiates it when it first shows that screen. A screen template that is
 * missing or unclosed is an error.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const struct {
  const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".json", "application/json; charset=utf-8"},
    {".webmanifest", "application/manifest+json"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *type_of(const char *path) {
  const char *dot = strrchr(path, '.');
  if (dot == NULL)
    return NULL;
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strcmp(dot, types[i].ext) == 0)
      return types[i].type;
  return NULL;
}

static unsigned char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  unsigned char *p = malloc(cap);
  for (;;) {
    if (p == NULL)
      break;
    size_t got = fread(p + n, 1, cap - n, f);
    n += got;
    if (n < cap)
      break;
    cap *= 2;
    unsigned char *q = realloc(p, cap);
    if (q == NULL) {
      free(p);
      p = NULL;
    } else {
      p = q;
    }
  }
  if (p != NULL && ferror(f)) {
    free(p);
    p = NULL;
  }
  fclose(f);
  *len = n;
  return p;
}

/* gzip (RFC 1952) of p at level 9, deterministic (mtime 0). NULL on failure. */
static unsigned char *gzip_of(const unsigned char *p, size_t n, size_t *out_len) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  uLong cap = deflateBound(&z, (uLong)n) + 32;
  unsigned char *out = malloc(cap);
  if (out == NULL) {
    deflateEnd(&z);
    return NULL;
  }
  z.next_in = (Bytef *)p;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  *out_len = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(out);
    return NULL;
  }
  return out;
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* Appends " 'sha256-<base64>'" of p[0..n) to the string *acc (malloc'd). 0 or -1. */
static int add_hash(char **acc, const unsigned char *p, size_t n) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1)
    return -1;
  unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  EVP_EncodeBlock(b64, md, (int)mdlen);
  size_t old = *acc ? strlen(*acc) : 0, add = strlen((char *)b64) + 11;
  char *q = realloc(*acc, old + add + 1);
  if (q == NULL)
    return -1;
  snprintf(q + old, add + 1, " 'sha256-%s'", (char *)b64);
  *acc = q;
  return 0;
}

static const unsigned char *find(const unsigned char *p, const unsigned char *end,
                                 const char *needle) {
  size_t nl = strlen(needle);
  for (; p + nl <= end; p++)
    if (memcmp(p, needle, nl) == 0)
      return p;
  return NULL;
}

/* Hashes the inline <script> and <style> blocks of an HTML file (see the top). 0, or -1
   with a message (an unclosed block, or an inline block with attributes). */
static int hash_inline(const char *file, const unsigned char *p, size_t n, char **scripts,
                       char **styles) {
  static const struct {
    const char *open, *bare, *close;
    int is_script;
  } kinds[] = {{"<script", "<script>", "</script>", 1}, {"<style", "<style>", "</style>", 0}};
  for (size_t k = 0; k < 2; k++) {
    const unsigned char *at = p, *end = p + n;
    while ((at = find(at, end, kinds[k].open)) != NULL) {
      const unsigned char *gt = find(at, end, ">");
      if (gt == NULL)
        break;
      if ((size_t)(gt + 1 - at) != strlen(kinds[k].bare)) {
        /* a tag with attributes: fine when it loads a file */
        if (kinds[k].is_script && find(at, gt, " src=") != NULL) {
          at = gt;
          continue;
        }
        fprintf(stderr,
                "webgen: %s: inline %s with attributes (the CSP hashes bare ones only)\n", file,
                kinds[k].open);
        return -1;
      }
      const unsigned char *body = gt + 1, *close = find(body, end, kinds[k].close);
      if (close == NULL) {
        fprintf(stderr, "webgen: %s: %s without %s\n", file, kinds[k].bare, kinds[k].close);
        return -1;
      }
      if (add_hash(kinds[k].is_script ? scripts : styles, body, (size_t)(close - body)) != 0)
        return -1;
      at = close;
    }
  }
  return 0;
}

/* Replaces each `<link rel="stylesheet" href="/x.css" inline>` of the HTML p[0..*n) with
   the style sheet inline (see the top); args are the /path=file arguments. The new buffer
   (p is freed), or NULL with a message. */
static unsigned char *inline_css(const char *file, unsigned char *p, size_t *n, int nargs,
                                 char **args) {
  static const char open[] = "<link rel=\"stylesheet\" href=\"", close[] = "\" inline>";
  const unsigned char *at;
  size_t from = 0;
  while ((at = find(p + from, p + *n, open)) != NULL) {
    const unsigned char *href = at + strlen(open), *end = find(href, p + *n, "\"");
    if (end == NULL)
      break;
    if (find(end, p + *n, close) != end) { /* a link without `inline`: kept */
      from = (size_t)(end - p);
      continue;
    }
    const char *css = NULL;
    size_t hl = (size_t)(end - href);
    for (int i = 0; i < nargs; i++) {
      const char *eq = strchr(args[i], '=');
      if (eq != NULL && (size_t)(eq - args[i]) == hl && memcmp(args[i], href, hl) == 0)
        css = eq + 1;
    }
    if (css == NULL) {
      fprintf(stderr, "webgen: %s: inline style sheet %.*s is not among the files\n", file,
              (int)hl, (const char *)href);
      free(p);
      return NULL;
    }
    size_t cn = 0;
    unsigned char *c = read_all(css, &cn);
    if (c == NULL) {
      fprintf(stderr, "webgen: cannot read %s: %s\n", css, strerror(errno));
      free(p);
      return NULL;
    }
    size_t pre = (size_t)(at - p), post = *n - (size_t)(end + strlen(close) - p);
    size_t nn = pre + 8 + cn + 8 + post;
    unsigned char *q = malloc(nn);
    if (q == NULL) {
      free(c);
      free(p);
      return NULL;
    }
    memcpy(q, p, pre);
    memcpy(q + pre, "<style>\n", 8);
    memcpy(q + pre + 8, c, cn);
    memcpy(q + pre + 8 + cn, "</style>", 8);
    memcpy(q + pre + 16 + cn, end + strlen(close), post);
    free(c);
    free(p);
    p = q;
    *n = nn;
    from = pre + 16 + cn;
  }
  return p;
}

static void emit_bytes(FILE *o, const char *name, const unsigned char *p, size_t n) {
  fprintf(o, "static const uint8_t %s[%zu] = {", name, n ? n : 1);
  for (size_t i = 0; i < n; i++)
    fprintf(o, "%s%u,", i % 24 == 0 ? "\n  " : "", p[i]);
  if (n == 0)
    fputs("0", o);
  fputs("\n};\n", o);
}

/* Replaces every needle in *p[0..*n) by repl (a new buffer; *p freed). 0 or -1. */
static int replace_all(unsigned char **p, size_t *n, const char *needle, const char *repl) {
  size_t nl = strlen(needle), rl = strlen(repl), count = 0;
  for (const unsigned char *at = *p; (at = find(at, *p + *n, needle)) != NULL; at += nl)
    count++;
  if (count == 0)
    return 0;
  size_t nn = *n + count * rl - count * nl;
  unsigned char *q = malloc(nn ? nn : 1), *w = q;
  if (q == NULL)
    return -1;
  const unsigned char *r = *p, *at;
  while ((at = find(r, *p + *n, needle)) != NULL) {
    memcpy(w, r, (size_t)(at - r));
    w += at - r;
    memcpy(w, repl, rl);
    w += rl;
    r = at + nl;
  }
  memcpy(w, r, (size_t)(*p + *n - r));
  free(*p);
  *p = q;
  *n = nn;
  return 0;
}

struct file {
  const char *path; /* "/app.js" (NUL-terminated copy) */
  const char *file;
  unsigned char *p;
  size_t n;
  uint64_t tag;
  int final; /* its references are versioned, its tag is known */
};

/* The two ways f may name the script g: "/x.js" and, from a script, "./x.js". */
static void ref_forms(const struct file *g, char abs[512], char rel[512]) {
  snprintf(abs, 512, "\"%s\"", g->path);
  rel[0] = '\0';
  if (strchr(g->path + 1, '/') == NULL)
    snprintf(rel, 512, "\"./%s\"", g->path + 1);
}

static int names(const struct file *f, const struct file *g) {
  char abs[512], rel[512];
  ref_forms(g, abs, rel);
  return find(f->p, f->p + f->n, abs) != NULL ||
         (rel[0] && find(f->p, f->p + f->n, rel) != NULL);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Versioned script URLs (see the top): in dependency order, each .js/.html file gets its
   references to .js assets rewritten to "/x.js?v=<tag>", then its own tag. 0, or -1 with
   a message (a cycle). */
static int version_refs(struct file *fs, int nf) {
  for (int i = 0; i < nf; i++) {
    fs[i].final = !(ends_with(fs[i].path, ".js") || ends_with(fs[i].path, ".html"));
    if (fs[i].final)
      fs[i].tag = fnv1a(fs[i].p, fs[i].n);
  }
  for (int pass = 0; pass <= nf; pass++) {
    int left = 0;
    for (int i = 0; i < nf; i++) {
      if (fs[i].final)
        continue;
      int ready = 1;
      for (int j = 0; j < nf && ready; j++)
        if (j != i && ends_with(fs[j].path, ".js") && !fs[j].final && names(&fs[i], &fs[j]))
          ready = 0;
      if (!ready) {
        left++;
        continue;
      }
      for (int j = 0; j < nf; j++) {
        if (j == i || !ends_with(fs[j].path, ".js"))
          continue;
        char abs[512], rel[512], repl[600];
        ref_forms(&fs[j], abs, rel);
        snprintf(repl, sizeof repl, "\"%s?v=%016llx\"", fs[j].path,
                 (unsigned long long)fs[j].tag);
        if (replace_all(&fs[i].p, &fs[i].n, abs, repl) != 0 ||
            (rel[0] && replace_all(&fs[i].p, &fs[i].n, rel, repl) != 0))
          return -1;
      }
      fs[i].tag = fnv1a(fs[i].p, fs[i].n);
      fs[i].final = 1;
    }
    if (left == 0)
      return 0;
  }
  fprintf(stderr, "webgen: the scripts of web/ name each other in a cycle\n");
  return -1;
}

static const char screen_auth[] = "data-screen=\"auth\"", screen_app[] = "data-screen=\"app\"";

/* Removes the tags of the screen template `<template data-screen="<screen>">` (see the top)
   from *p[0..*n), keeping its content. 0, or -1 with a message (missing or unclosed). */
static int unwrap_screen(const char *file, unsigned char *p, size_t *n, const char *screen) {
  char open[64];
  snprintf(open, sizeof open, "<template data-screen=\"%s\">", screen);
  static const char any[] = "<template", close[] = "</template>";
  unsigned char *end = p + *n, *at = (unsigned char *)find(p, end, open);
  if (at == NULL) {
    fprintf(stderr, "webgen: %s: no %s\n", file, open);
    return -1;
  }
  size_t ol = strlen(open), cl = strlen(close);
  const unsigned char *scan = at + ol, *c = NULL;
  for (int depth = 1; depth > 0;) {
    const unsigned char *o = find(scan, end, any);
    c = find(scan, end, close);
    if (c == NULL) {
      fprintf(stderr, "webgen: %s: %s without %s\n", file, open, close);
      return -1;
    }
    if (o != NULL && o < c) {
      depth++;
      scan = o + strlen(any);
    } else {
      depth--;
      scan = c + cl;
    }
  }
  /* [at, at+ol) and [c, c+cl) go; the bytes between and after move up */
  size_t body = (size_t)(c - (at + ol)), tail = (size_t)(end - (c + cl));
  memmove(at, at + ol, body);
  memmove(at + body, c + cl, tail);
  *n -= ol + cl;
  return 0;
}

/* The signed-in variant of the HTML file f (see the top) into *v, or v->p NULL when its
   <html> tag has no `data-screen="auth"`. 0, or -1 (out of memory). The app's screen
   template is still wrapped: see unwrap_screens. */
static int signed_in_variant(const struct file *f, struct file *v) {
  memset(v, 0, sizeof *v);
  const unsigned char *end = f->p + f->n, *tag = find(f->p, end, "<html"), *gt, *at;
  if (tag == NULL || (gt = find(tag, end, ">")) == NULL ||
      (at = find(tag, gt, screen_auth)) == NULL)
    return 0;
  size_t al = strlen(screen_auth), pl = strlen(screen_app);
  size_t pre = (size_t)(at - f->p), post = f->n - pre - al, plen = strlen(f->path);
  char *path = malloc(plen + sizeof "?signed-in");
  unsigned char *q = malloc(pre + pl + post);
  if (path == NULL || q == NULL) {
    free(path);
    free(q);
    return -1;
  }
  memcpy(path, f->path, plen);
  memcpy(path + plen, "?signed-in", sizeof "?signed-in");
  memcpy(q, f->p, pre);
  memcpy(q + pre, screen_app, pl);
  memcpy(q + pre + pl, at + al, post);
  *v = (struct file){path, f->file, q, pre + pl + post, 0, 1};
  v->tag = fnv1a(v->p, v->n);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: webgen <out.c> </path>=<file> ...\n");
    return 1;
  }
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
  int nfiles = argc - 2, status = 0;
  struct file *fs = calloc((size_t)nfiles, sizeof *fs);
  char *scripts = NULL, *styles = NULL;
  /* 1. read every file (style sheets inlined into HTML) */
  for (int i = 0; i < nfiles && status == 0; i++) {
    const char *arg = argv[i + 2];
    const char *eq = strchr(arg, '=');
    if (arg[0] != '/' || eq == NULL) {
      fprintf(stderr, "webgen: bad argument %s (want /path=file)\n", arg);
      status = 1;
      break;
    }
    fs[i].path = strndup(arg, (size_t)(eq - arg));
    fs[i].file = eq + 1;
    if (type_of(fs[i].file) == NULL) {
      fprintf(stderr, "webgen: %s: unknown file type (add it to cmake/webgen.c)\n", fs[i].file);
      status = 1;
      break;
    }
    fs[i].p = read_all(fs[i].file, &fs[i].n);
    if (fs[i].p == NULL) {
      fprintf(stderr, "webgen: cannot read %s: %s\n", fs[i].file, strerror(errno));
      status = 1;
      break;
    }
    if (ends_with(fs[i].file, ".html")) {
      fs[i].p = inline_css(fs[i].file, fs[i].p, &fs[i].n, nfiles, argv + 2);
      if (fs[i].p == NULL)
        status = 1;
    }
  }
  /* 2. versioned script URLs, then the hashes of the final inline blocks */
  if (status == 0 && version_refs(fs, nfiles) != 0)
    status = 1;
  for (int i = 0; i < nfiles && status == 0; i++)
    if (ends_with(fs[i].file, ".html") &&
        hash_inline(fs[i].file, fs[i].p, fs[i].n, &scripts, &styles) != 0)
      status = 1;
  /* 2b. signed-in variants of the HTML files, appended to the table */
  for (int i = 0, n0 = nfiles; i < n0 && status == 0; i++) {
    struct file v;
    if (!ends_with(fs[i].file, ".html"))
      continue;
    if (signed_in_variant(&fs[i], &v) != 0) {
      status = 1;
    } else if (v.p != NULL) {
      struct file *more = realloc(fs, (size_t)(nfiles + 1) * sizeof *fs);
      if (more == NULL) {
        free((char *)v.path);
        free(v.p);
        status = 1;
      } else {
        fs = more;
        fs[nfiles++] = v;
      }
    }
  }
  /* 2c. screen templates: each variant's own screen live (see the top) */
  for (int i = 0; i < nfiles && status == 0; i++) {
    if (!ends_with(fs[i].file, ".html"))
      continue;
    const unsigned char *tag = find(fs[i].p, fs[i].p + fs[i].n, "<html"), *gt;
    if (tag == NULL || (gt = find(tag, fs[i].p + fs[i].n, ">")) == NULL)
      continue;
    const char *screen = find(tag, gt, screen_auth) != NULL  ? "auth"
                         : find(tag, gt, screen_app) != NULL ? "app"
                                                             : NULL;
    if (screen == NULL)
      continue;
    if (unwrap_screen(fs[i].file, fs[i].p, &fs[i].n, screen) != 0)
      status = 1;
    fs[i].tag = fnv1a(fs[i].p, fs[i].n);
  }
  /* 3. the C source */
  FILE *o = status == 0 ? fopen(tmp, "w") : NULL;
  if (status == 0 && o == NULL) {
    fprintf(stderr, "webgen: cannot write %s: %s\n", tmp, strerror(errno));
    status = 1;
  }
  if (status == 0) {
    fputs("/* Generated by cmake/webgen.c from web/: do not edit. */\n"
          "#include \"web/web_int.h\"\n\n",
          o);
    size_t *gzl = calloc((size_t)nfiles, sizeof *gzl);
    for (int i = 0; i < nfiles; i++) {
      char name[32];
      snprintf(name, sizeof name, "f%d", i);
      emit_bytes(o, name, fs[i].p, fs[i].n);
      size_t gn = 0;
      unsigned char *gz = gzip_of(fs[i].p, fs[i].n, &gn);
      if (gz != NULL && gn + 64 < fs[i].n) {
        snprintf(name, sizeof name, "g%d", i);
        emit_bytes(o, name, gz, gn);
        gzl[i] = gn;
      }
      free(gz);
    }
    fprintf(o, "\nconst struct web_asset web__assets[] = {\n");
    for (int i = 0; i < nfiles; i++) {
      fprintf(o, "  {\"%s\", \"%s\", f%d, %zu, ", fs[i].path, type_of(fs[i].file), i, fs[i].n);
      if (gzl[i])
        fprintf(o, "g%d, %zu, ", i, gzl[i]);
      else
        fprintf(o, "NULL, 0, ");
      fprintf(o, "\"\\\"%016llx\\\"\"},\n", (unsigned long long)fs[i].tag);
    }
    fprintf(o, "};\nconst size_t web__nassets = %d;\n", nfiles);
    fprintf(o, "const char web__csp_script[] = \"%s\";\n", scripts ? scripts : "");
    fprintf(o, "const char web__csp_style[] = \"%s\";\n", styles ? styles : "");
    free(gzl);
    if (fclose(o) != 0) {
      fprintf(stderr, "webgen: cannot write %s\n", tmp);
      status = 1;
    }
  }
  for (int i = 0; i < nfiles; i++) {
    free((char *)fs[i].path);
    free(fs[i].p);
  }
  free(fs);
  free(scripts);
  free(styles);
  if (status == 0 && rename(tmp, argv[1]) != 0) {
    fprintf(stderr, "webgen: cannot rename %s: %s\n", tmp, strerror(errno));
    status = 1;
  }
  if (status != 0)
    remove(tmp);
  return status;
}
