/*
 * The HTTP/1.1 request parser, without sockets: every input is fed whole, byte by byte
 * and split at every position into two pieces, and each way must give the same golden
 * event log (consecutive chunks of one kind are joined, so the log does not depend on
 * how the bytes were cut).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "http/http_int.h"

struct logger {
  struct buf log;
  struct buf cur; /* chunks being joined */
  int cur_type;   /* -1 when none */
  struct buf name;
};

static void lg_init(struct logger *l) {
  buf_init(&l->log, 1 << 20);
  buf_init(&l->cur, 1 << 20);
  buf_init(&l->name, 1 << 16);
  l->cur_type = -1;
}

static void lg_free(struct logger *l) {
  buf_free(&l->log);
  buf_free(&l->cur);
  buf_free(&l->name);
}

static void lg_put(struct logger *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  assert_int_equal(buf_vprintf(&l->log, fmt, ap), 0);
  va_end(ap);
}

/* Flushes joined chunks of the current type when a different event comes. */
static void lg_flush(struct logger *l, int next_type) {
  if (l->cur_type == next_type)
    return;
  if (l->cur_type == HTTP_PEV_URL)
    lg_put(l, "url:%.*s\n", (int)l->cur.len, (char *)l->cur.data);
  else if (l->cur_type == HTTP_PEV_BODY)
    lg_put(l, "body:%.*s\n", (int)l->cur.len, (char *)l->cur.data);
  else if (l->cur_type == HTTP_PEV_HDR_NAME) {
    buf_reset(&l->name);
    assert_int_equal(buf_append(&l->name, l->cur.data, l->cur.len), 0);
  }
  if (l->cur_type != HTTP_PEV_HDR_VALUE || next_type != HTTP_PEV_HDR_END)
    buf_reset(&l->cur);
  l->cur_type = next_type;
}

static void lg_event(struct logger *l, const struct http_parser *p,
                     const struct http_pevent *ev) {
  switch (ev->type) {
  case HTTP_PEV_URL:
  case HTTP_PEV_BODY:
  case HTTP_PEV_HDR_NAME:
  case HTTP_PEV_HDR_VALUE:
    lg_flush(l, ev->type);
    assert_true(ev->len > 0);
    assert_int_equal(buf_append(&l->cur, ev->data, ev->len), 0);
    break;
  case HTTP_PEV_HDR_END: {
    size_t vlen = l->cur_type == HTTP_PEV_HDR_VALUE ? l->cur.len : 0;
    if (l->cur_type == HTTP_PEV_HDR_NAME)
      lg_flush(l, -1);
    assert_true(ev->trim <= vlen);
    lg_put(l, "hdr:%.*s=%.*s|\n", (int)l->name.len, (char *)l->name.data,
           (int)(vlen - ev->trim), (char *)l->cur.data);
    buf_reset(&l->cur);
    l->cur_type = -1;
    break;
  }
  case HTTP_PEV_HEAD_DONE:
    lg_flush(l, -1);
    lg_put(l, "head:%s 1.%d ka=%d up=%d cont=%d chunked=%d cl=%llu\n",
           http_method_name(p->method_id), p->version_minor, p->keep_alive, p->upgrade,
           p->expect_continue, p->chunked, (unsigned long long)p->content_length);
    break;
  case HTTP_PEV_MSG_DONE:
    lg_flush(l, -1);
    lg_put(l, "done\n");
    break;
  }
}

/* Feeds in pieces of the given sizes (the last piece takes the rest). */
static char *run(const char *in, size_t n, const size_t *pieces, size_t npieces,
                 size_t max_header, uint64_t max_body) {
  struct http_parser p;
  struct logger l;
  http_parser_init(&p, max_header, max_body);
  lg_init(&l);
  size_t off = 0;
  for (size_t k = 0; k <= npieces && off <= n; k++) {
    size_t len = k < npieces ? pieces[k] : n - off;
    if (len > n - off)
      len = n - off;
    /* copy the piece so reading past it is caught by ASan */
    uint8_t *piece = xmalloc(len ? len : 1);
    memcpy(piece, in + off, len);
    size_t pos = 0;
    for (;;) {
      struct http_pevent ev;
      size_t used = 99999;
      int rc = http_parser_feed(&p, piece + pos, len - pos, &used, &ev);
      assert_true(used <= len - pos);
      pos += used;
      if (rc == EG_EAGAIN) {
        assert_int_equal(pos, len);
        break;
      }
      if (rc < 0) {
        /* completed bodies are logged; partial URL/header chunks are dropped */
        if (l.cur_type == HTTP_PEV_BODY)
          lg_flush(&l, -1);
        buf_reset(&l.cur);
        l.cur_type = -1;
        lg_put(&l, "error:%d\n", p.status);
        /* sticky */
        size_t u2;
        assert_int_equal(http_parser_feed(&p, (const uint8_t *)"GET", 3, &u2, &ev), rc);
        free(piece);
        goto out;
      }
      lg_event(&l, &p, &ev);
    }
    free(piece);
    off += len;
    if (k == npieces)
      break;
  }
out:;
  lg_flush(&l, -1);
  size_t sl;
  char *s = buf_steal(&l.log, &sl);
  lg_free(&l);
  return s ? s : xstrdup("");
}

struct golden {
  const char *in;
  const char *log;
  size_t max_header, max_body;
};

static void check(const struct golden *g) {
  size_t n = strlen(g->in);
  size_t mh = g->max_header ? g->max_header : 16384;
  size_t mb = g->max_body ? g->max_body : 1 << 20;
  char *whole = run(g->in, n, NULL, 0, mh, mb);
  if (strcmp(whole, g->log) != 0) {
    fprintf(stderr, "input: %s\nexpected:\n%s\ngot:\n%s\n", g->in, g->log, whole);
    fail();
  }
  free(whole);
  /* byte by byte */
  size_t *ones = xmalloc((n + 1) * sizeof *ones);
  for (size_t i = 0; i <= n; i++)
    ones[i] = 1;
  char *bytes = run(g->in, n, ones, n, mh, mb);
  if (strcmp(bytes, g->log) != 0) {
    fprintf(stderr, "byte by byte: %s\nexpected:\n%s\ngot:\n%s\n", g->in, g->log, bytes);
    fail();
  }
  free(bytes);
  free(ones);
  /* every split into two */
  for (size_t cut = 0; cut <= n; cut++) {
    char *s = run(g->in, n, &cut, 1, mh, mb);
    if (strcmp(s, g->log) != 0) {
      fprintf(stderr, "split at %zu: %s\nexpected:\n%s\ngot:\n%s\n", cut, g->in, g->log, s);
      fail();
    }
    free(s);
  }
}

static const struct golden goldens[] = {
    {"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
     "url:/index.html?a=1\nhdr:Host=example.com|\nhdr:Accept=*/*|\n"
     "head:GET 1.1 ka=1 up=0 cont=0 chunked=0 cl=0\ndone\n"},
    {"POST /api/chat HTTP/1.1\r\nContent-Length: 11\r\nContent-Type: application/json\r\n"
     "\r\n{\"a\":\"bcd\"}",
     "url:/api/chat\nhdr:Content-Length=11|\nhdr:Content-Type=application/json|\n"
     "head:POST 1.1 ka=1 up=0 cont=0 chunked=0 cl=11\nbody:{\"a\":\"bcd\"}\ndone\n"},
    {"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n"
     "6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
     "url:/c\nhdr:Transfer-Encoding=chunked|\n"
     "head:POST 1.1 ka=1 up=0 cont=0 chunked=1 cl=0\nbody:hello world\ndone\n"},
    /* pipelined */
    {"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n",
     "url:/a\nhead:GET 1.1 ka=1 up=0 cont=0 chunked=0 cl=0\ndone\n"
     "url:/b\nhdr:Connection=close|\nhead:GET 1.1 ka=0 up=0 cont=0 chunked=0 cl=0\ndone\n"},
    {"GET / HTTP/1.0\r\n\r\n", "url:/\nhead:GET 1.0 ka=0 up=0 cont=0 chunked=0 cl=0\ndone\n"},
    {"HEAD / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
     "url:/\nhdr:Connection=Keep-Alive|\nhead:HEAD 1.0 ka=1 up=0 cont=0 chunked=0 cl=0\n"
     "done\n"},
    {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x85",
     "url:/ws\nhdr:Upgrade=websocket|\nhdr:Connection=keep-alive, Upgrade|\n"
     "hdr:Sec-WebSocket-Key=dGhlIHNhbXBsZSBub25jZQ==|\n"
     "head:GET 1.1 ka=1 up=1 cont=0 chunked=0 cl=0\ndone\nerror:400\n"},
    /* whitespace trimming, empty value, bare LF */
    {"GET / HTTP/1.1\nX-A:   a  b \t \nX-Empty:\nX-Sp:   \n\n",
     "url:/\nhdr:X-A=a  b|\nhdr:X-Empty=|\nhdr:X-Sp=|\n"
     "head:GET 1.1 ka=1 up=0 cont=0 chunked=0 cl=0\ndone\n"},
    /* leading empty lines are skipped */
    {"\r\n\r\nDELETE /x/1 HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
     "url:/x/1\nhdr:Expect=100-continue|\nhead:DELETE 1.1 ka=1 up=0 cont=0 chunked=0 cl=0\n"
     "done\n"},
    {"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
     "url:/u\nhdr:Expect=100-continue|\nhdr:Content-Length=2|\n"
     "head:PUT 1.1 ka=1 up=0 cont=1 chunked=0 cl=2\nbody:ok\ndone\n"},
    {"OPTIONS * HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
     "url:*\nhdr:Content-Length=0|\nhdr:Content-Length=0|\n"
     "head:OPTIONS 1.1 ka=1 up=0 cont=0 chunked=0 cl=0\ndone\n"},
    /* errors */
    {"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", "url:/\nhdr:X=a|\nerror:400\n"},
    {"GET / HTTP/1.1\r\nX : a\r\n\r\n", "url:/\nerror:400\n"},
    {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
     "url:/\nhdr:Content-Length=3|\nhdr:Transfer-Encoding=chunked|\nerror:400\n"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     "url:/\nhdr:Transfer-Encoding=gzip, chunked|\nerror:501\n"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
     "url:/\nhdr:Transfer-Encoding=chunked, identity|\nerror:501\n"},
    {"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", "url:/\nerror:400\n"},
    {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", "url:/\nerror:400\n"},
    {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", "url:/\nerror:400\n"},
    {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     "url:/\nhdr:Content-Length=1|\nerror:400\n"},
    {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
     "url:/\nerror:400\n"},
    {"BREW /pot HTTP/1.1\r\n\r\n", "error:501\n"},
    {"get / HTTP/1.1\r\n\r\n", "error:501\n"},
    {"G(T / HTTP/1.1\r\n\r\n", "error:400\n"},
    {"GET / HTTP/2.0\r\n\r\n", "error:505\n"},
    {"GET / HTTP/1.1x\r\n\r\n", "error:400\n"},
    {"GET / HTXP/1.1\r\n\r\n", "error:400\n"},
    {"GET /\r\n\r\n", "error:400\n"},
    {"GET  / HTTP/1.1\r\n\r\n", "error:400\n"},
    {"GET /a\x01 HTTP/1.1\r\n\r\n", "error:400\n"},
    {"GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", "url:/\nerror:400\n"},
    {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "url:/\nerror:400\n"},
    {"GET / HTTP/1.1\r\n: a\r\n\r\n", "error:400\n"},
    {"POST / HTTP/1.1\r\nContent-Length: 20\r\n\r\n", "url:/\nhdr:Content-Length=20|\nerror:413\n",
     0, 10},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     "url:/\nhdr:Transfer-Encoding=chunked|\nhead:POST 1.1 ka=1 up=0 cont=0 chunked=1 cl=0\n"
     "body:hello\nerror:413\n",
     0, 10},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     "url:/\nhdr:Transfer-Encoding=chunked|\nhead:POST 1.1 ka=1 up=0 cont=0 chunked=1 cl=0\n"
     "error:400\n"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
     "url:/\nhdr:Transfer-Encoding=chunked|\nhead:POST 1.1 ka=1 up=0 cont=0 chunked=1 cl=0\n"
     "body:abc\nerror:400\n"},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
     "url:/\nhdr:Transfer-Encoding=chunked|\nhead:POST 1.1 ka=1 up=0 cont=0 chunked=1 cl=0\n"
     "error:413\n"},
    {"GET / HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
     "url:/\nerror:431\n", 48, 0},
    {"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
     "error:414\n", 32, 0},
};

static void test_goldens(void **state) {
  (void)state;
  for (size_t i = 0; i < EG_ARRAY_LEN(goldens); i++)
    check(&goldens[i]);
}

/* 101 headers -> 431 regardless of size. */
static void test_too_many_headers(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(buf_append_str(&b, "GET / HTTP/1.1\r\n"), 0);
  for (int i = 0; i < 101; i++)
    assert_int_equal(buf_printf(&b, "X-%d: v\r\n", i), 0);
  assert_int_equal(buf_append_str(&b, "\r\n"), 0);
  char *s = run((char *)b.data, b.len, NULL, 0, 1 << 20, 1 << 20);
  assert_non_null(strstr(s, "error:431\n"));
  assert_null(strstr(s, "head:"));
  free(s);
  buf_free(&b);
}

/* A large body in one buffer comes out as one chunk; after it the next request parses. */
static void test_large_body_and_reuse(void **state) {
  (void)state;
  size_t n = 100000;
  struct buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(buf_printf(&b, "POST / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n), 0);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(buf_append_byte(&b, (uint8_t)('a' + i % 26)), 0);
  assert_int_equal(buf_append_str(&b, "GET /next HTTP/1.1\r\n\r\n"), 0);
  struct http_parser p;
  http_parser_init(&p, 16384, 1 << 20);
  size_t pos = 0, bodies = 0, body_len = 0, dones = 0;
  for (;;) {
    struct http_pevent ev;
    size_t used;
    int rc = http_parser_feed(&p, b.data + pos, b.len - pos, &used, &ev);
    pos += used;
    if (rc == EG_EAGAIN)
      break;
    assert_int_equal(rc, 0);
    if (ev.type == HTTP_PEV_BODY) {
      bodies++;
      body_len += ev.len;
    }
    if (ev.type == HTTP_PEV_MSG_DONE)
      dones++;
  }
  assert_int_equal(bodies, 1);
  assert_int_equal(body_len, n);
  assert_int_equal(dones, 2);
  buf_free(&b);
}

static void test_pct_decode(void **state) {
  (void)state;
  char out[64];
  size_t n = http__pct_decode("/a%20b%2Fc%zz%4", 15, out, false);
  assert_int_equal(n, 11);
  assert_memory_equal(out, "/a b/c%zz%4", 11);
  n = http__pct_decode("a+b%2B", 6, out, true);
  assert_int_equal(n, 4);
  assert_memory_equal(out, "a b+", 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_goldens),
      cmocka_unit_test(test_too_many_headers),
      cmocka_unit_test(test_large_body_and_reuse),
      cmocka_unit_test(test_pct_decode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
