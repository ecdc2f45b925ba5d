/*
 * The incremental HTTP/1.1 request parser. See http_int.h for the events and states.
 *
 * Every byte is looked at once. Runs of URL, header and body bytes are reported as one
 * event per run found in the fed buffer, so a request that arrives whole costs a few
 * events, and one that arrives byte by byte costs one event per byte of those parts.
 * Semantic headers (Content-Length, Transfer-Encoding, Connection, Upgrade, Expect) are
 * recognised while their names stream past (a small inline copy of the name) and their
 * values are tokenised on the fly, so nothing needs the whole head in memory.
 */
#include <string.h>

#include "http/http_int.h"

enum {
  S_START,
  S_METHOD,
  S_URL,
  S_VER,
  S_REQ_LF,
  S_HDR_START,
  S_HDR_NAME,
  S_HDR_OWS,
  S_HDR_VALUE,
  S_HDR_LF,
  S_HEAD_LF,
  S_MSG_PENDING,
  S_BODY_CL,
  S_CHUNK_SIZE,
  S_CHUNK_EXT,
  S_CHUNK_SIZE_LF,
  S_CHUNK_DATA,
  S_CHUNK_CR,
  S_CHUNK_LF,
  S_TRAILER,
  S_TRAILER_LINE,
  S_TRAILER_LF,
  S_ERROR,
};

enum { H_OTHER, H_CL, H_TE, H_CONN, H_UPGRADE, H_EXPECT };

#define MAX_CHUNK_EXT 1024
#define FALLTHROUGH __attribute__((fallthrough))

/* tchar per RFC 9110 5.6.2 */
static const uint8_t tchar_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1,  ['|'] = 1,
    ['~'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,  ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1,  ['C'] = 1,
    ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,  ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,  ['Q'] = 1,
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,  ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,  ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,  ['s'] = 1,
    ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1,  ['z'] = 1,
};

static bool is_tchar(uint8_t c) { return tchar_tab[c] != 0; }
/* Request-target bytes: visible ASCII (no SP, no CTL). */
static bool is_url_char(uint8_t c) { return c > 0x20 && c < 0x7f; }
/* Header value bytes: VCHAR, obs-text, SP, HT. */
static bool is_value_char(uint8_t c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }
static uint8_t lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c; }

void http_parser_init(struct http_parser *p, size_t max_header, uint64_t max_body) {
  memset(p, 0, sizeof *p);
  p->max_header = max_header;
  p->max_body = max_body;
  p->state = S_START;
}

/* Resets the per-request fields, keeping the configuration. */
static void reset_request(struct http_parser *p) {
  size_t mh = p->max_header;
  uint64_t mb = p->max_body;
  http_parser_init(p, mh, mb);
}

bool http_parser_msg_pending(const struct http_parser *p) {
  return p->state == S_MSG_PENDING;
}

static int fail(struct http_parser *p, int status, int err) {
  p->state = S_ERROR;
  p->status = status;
  p->err = err;
  return err;
}

enum http_method http__method_from(const char *s, size_t n) {
  static const char *const names[] = {NULL,     "GET",    "HEAD",    "POST",    "PUT",
                                      "DELETE", "PATCH",  "OPTIONS", "CONNECT", "TRACE"};
  for (size_t i = 1; i < EG_ARRAY_LEN(names); i++)
    if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
      return (enum http_method)i;
  return HTTP_METHOD_UNKNOWN;
}

static void classify_header(struct http_parser *p) {
  static const struct {
    const char *name;
    uint8_t kind;
  } known[] = {{"content-length", H_CL},
               {"transfer-encoding", H_TE},
               {"connection", H_CONN},
               {"upgrade", H_UPGRADE},
               {"expect", H_EXPECT}};
  p->hkind = H_OTHER;
  if (p->hname_len >= sizeof p->hname)
    return; /* longer than any we know */
  for (size_t i = 0; i < EG_ARRAY_LEN(known); i++)
    if (strlen(known[i].name) == p->hname_len &&
        memcmp(known[i].name, p->hname, p->hname_len) == 0)
      p->hkind = known[i].kind;
}

static bool tok_is(const struct http_parser *p, const char *s) {
  return !p->tok_long && strlen(s) == p->tok_len && memcmp(s, p->tok, p->tok_len) == 0;
}

/* A token of a list-valued header ended (at ',' or at the end of the value). */
static void end_token(struct http_parser *p) {
  if (p->tok_len == 0 && !p->tok_long)
    return; /* empty list element */
  switch (p->hkind) {
  case H_TE:
    if (tok_is(p, "chunked")) {
      p->te_chunked_last = true;
    } else {
      p->te_other = true;
      p->te_chunked_last = false;
    }
    break;
  case H_CONN:
    if (tok_is(p, "close"))
      p->conn_close = true;
    else if (tok_is(p, "keep-alive"))
      p->conn_ka = true;
    else if (tok_is(p, "upgrade"))
      p->conn_upgrade = true;
    break;
  case H_UPGRADE:
    p->upgrade = true;
    break;
  case H_EXPECT:
    if (tok_is(p, "100-continue"))
      p->expect_continue = true;
    break;
  default:
    break;
  }
  p->tok_len = 0;
  p->tok_long = false;
}

/* One byte of a semantic header's value (already past leading OWS). Returns 0 or an
   error. */
static int value_byte(struct http_parser *p, uint8_t c) {
  if (p->hkind == H_CL) {
    if (c >= '0' && c <= '9') {
      if (p->trail_ws)
        return fail(p, 400, EG_EPROTO); /* "1 2" */
      if (p->cl_value > (UINT64_C(1) << 53))
        return fail(p, 400, EG_EPROTO);
      p->cl_value = p->cl_value * 10 + (uint64_t)(c - '0');
      p->cl_digit = true;
      return 0;
    }
    if (c == ' ' || c == '\t')
      return 0;
    return fail(p, 400, EG_EPROTO);
  }
  if (c == ',') {
    end_token(p);
    return 0;
  }
  if (c == ' ' || c == '\t')
    return 0; /* tokens have no inner whitespace we care about */
  if (p->tok_len < sizeof p->tok)
    p->tok[p->tok_len++] = (char)lower(c);
  else
    p->tok_long = true;
  return 0;
}

/* End of a header line: finish semantic parsing of the value. */
static int end_header(struct http_parser *p) {
  if (p->hkind == H_CL) {
    if (!p->cl_digit)
      return fail(p, 400, EG_EPROTO);
    if (p->has_cl && p->content_length != p->cl_value)
      return fail(p, 400, EG_EPROTO);
    p->has_cl = true;
    p->content_length = p->cl_value;
    p->cl_value = 0;
    p->cl_digit = false;
  } else if (p->hkind != H_OTHER) {
    end_token(p);
    if (p->hkind == H_TE)
      p->has_te = true;
  }
  p->hkind = H_OTHER;
  p->hname_len = 0;
  p->trail_ws = 0;
  return 0;
}

/* The head is complete: decide framing and connection semantics. */
static int end_head(struct http_parser *p) {
  if (p->has_te) {
    if (p->has_cl)
      return fail(p, 400, EG_EPROTO); /* request smuggling guard (RFC 9112 6.1) */
    if (p->te_other)
      return fail(p, 501, EG_EUNSUPPORTED);
    if (!p->te_chunked_last)
      return fail(p, 400, EG_EPROTO);
    p->chunked = true;
  }
  if (p->has_cl && p->content_length > p->max_body)
    return fail(p, 413, EG_ETOOBIG);
  if (p->version_minor >= 1)
    p->keep_alive = !p->conn_close;
  else
    p->keep_alive = p->conn_ka && !p->conn_close;
  if (!p->upgrade || !p->conn_upgrade)
    p->upgrade = false;
  if (p->expect_continue && !p->chunked && p->content_length == 0)
    p->expect_continue = false;
  return 0;
}

static int count_head(struct http_parser *p, size_t n) {
  p->head_bytes += n;
  if (p->head_bytes > p->max_header) {
    bool in_line = p->state == S_START || p->state == S_METHOD || p->state == S_URL ||
                   p->state == S_VER || p->state == S_REQ_LF;
    return fail(p, in_line ? 414 : 431, EG_ETOOBIG);
  }
  return 0;
}

#define EMIT(t, d, l)                                                                      \
  do {                                                                                     \
    ev->type = (t);                                                                        \
    ev->data = (d);                                                                        \
    ev->len = (l);                                                                         \
    *used = i;                                                                             \
    return 0;                                                                              \
  } while (0)

int http_parser_feed(struct http_parser *p, const uint8_t *b, size_t n, size_t *used,
                     struct http_pevent *ev) {
  size_t i = 0;
  int rc;
  *used = 0;
  ev->trim = 0;
  ev->data = NULL;
  ev->len = 0;
  if (p->state == S_ERROR)
    return p->err;
  if (p->state == S_MSG_PENDING) {
    reset_request(p);
    EMIT(HTTP_PEV_MSG_DONE, NULL, 0);
  }
  while (i < n) {
    uint8_t c = b[i];
    switch (p->state) {
    case S_START:
      if (c == '\r' || c == '\n') {
        /* RFC 9112 2.2: ignore at least one empty line before the request line. */
        i++;
        if ((rc = count_head(p, 1)) != 0)
          goto err;
        break;
      }
      p->head_bytes = 0;
      p->state = S_METHOD;
      FALLTHROUGH;
    case S_METHOD:
      if (c == ' ') {
        if (p->method_len == 0)
          return fail(p, 400, EG_EPROTO);
        p->method_id = p->method_len <= sizeof p->method
                           ? http__method_from(p->method, p->method_len)
                           : HTTP_METHOD_UNKNOWN;
        if (p->method_id == HTTP_METHOD_UNKNOWN) {
          *used = i;
          return fail(p, 501, EG_EUNSUPPORTED);
        }
        p->state = S_URL;
        i++;
        if ((rc = count_head(p, 1)) != 0)
          goto err;
        break;
      }
      if (!is_tchar(c)) {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      if (p->method_len < sizeof p->method)
        p->method[p->method_len] = (char)c;
      if (p->method_len < 255)
        p->method_len++;
      i++;
      if ((rc = count_head(p, 1)) != 0)
        goto err;
      break;
    case S_URL: {
      size_t s = i;
      while (i < n && is_url_char(b[i]))
        i++;
      if ((rc = count_head(p, i - s)) != 0)
        goto err;
      if (i > s) {
        p->vpos = 1; /* marks "some URL seen" */
        EMIT(HTTP_PEV_URL, b + s, i - s);
      }
      if (c == ' ' && p->vpos == 1) {
        p->vpos = 0;
        p->state = S_VER;
        i++;
        if ((rc = count_head(p, 1)) != 0)
          goto err;
        break;
      }
      *used = i;
      return fail(p, 400, EG_EPROTO); /* CTL, empty target or HTTP/0.9 */
    }
    case S_VER: {
      static const char ver[] = "HTTP/1.";
      if (p->vpos < 7) {
        if (p->vpos == 5 && c != '1') {
          *used = i;
          return fail(p, (c >= '0' && c <= '9') ? 505 : 400,
                      (c >= '0' && c <= '9') ? EG_EUNSUPPORTED : EG_EPROTO);
        }
        if (c != (uint8_t)ver[p->vpos]) {
          *used = i;
          return fail(p, 400, EG_EPROTO);
        }
      } else if (p->vpos == 7) {
        if (c < '0' || c > '9') {
          *used = i;
          return fail(p, 400, EG_EPROTO);
        }
        p->version_minor = c == '0' ? 0 : 1;
      } else if (c == '\r') {
        p->state = S_REQ_LF;
      } else if (c == '\n') {
        p->state = S_HDR_START;
      } else {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      p->vpos++;
      i++;
      if ((rc = count_head(p, 1)) != 0)
        goto err;
      break;
    }
    case S_REQ_LF:
    case S_HDR_LF:
    case S_HEAD_LF:
      if (c != '\n') {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      i++;
      if ((rc = count_head(p, 1)) != 0)
        goto err;
      if (p->state == S_REQ_LF) {
        p->state = S_HDR_START;
      } else if (p->state == S_HDR_LF) {
        goto header_end;
      } else {
        goto head_end;
      }
      break;
    case S_HDR_START:
      if (c == '\r' || c == '\n') {
        i++;
        if ((rc = count_head(p, 1)) != 0)
          goto err;
        if (c == '\r') {
          p->state = S_HEAD_LF;
          break;
        }
        goto head_end;
      }
      if (!is_tchar(c)) {
        *used = i;
        return fail(p, 400, EG_EPROTO); /* obs-fold, or garbage */
      }
      if (++p->nheaders > HTTP_MAX_HEADERS) {
        *used = i;
        return fail(p, 431, EG_ETOOBIG);
      }
      p->hname_len = 0;
      p->state = S_HDR_NAME;
      FALLTHROUGH;
    case S_HDR_NAME: {
      size_t s = i;
      while (i < n && is_tchar(b[i])) {
        if (p->hname_len < sizeof p->hname)
          p->hname[p->hname_len] = (char)lower(b[i]);
        if (p->hname_len < 255)
          p->hname_len++;
        i++;
      }
      if ((rc = count_head(p, i - s)) != 0)
        goto err;
      if (i > s)
        EMIT(HTTP_PEV_HDR_NAME, b + s, i - s);
      if (c != ':' || p->hname_len == 0) {
        *used = i;
        return fail(p, 400, EG_EPROTO); /* whitespace before ':' is forbidden */
      }
      classify_header(p);
      p->trail_ws = 0;
      p->tok_len = 0;
      p->tok_long = false;
      p->state = S_HDR_OWS;
      i++;
      if ((rc = count_head(p, 1)) != 0)
        goto err;
      break;
    }
    case S_HDR_OWS:
      if (c == ' ' || c == '\t') {
        i++;
        if ((rc = count_head(p, 1)) != 0)
          goto err;
        break;
      }
      p->state = S_HDR_VALUE;
      FALLTHROUGH;
    case S_HDR_VALUE: {
      size_t s = i;
      while (i < n && b[i] != '\r' && b[i] != '\n') {
        uint8_t d = b[i];
        if (!is_value_char(d)) {
          *used = s;
          if (i > s)
            break; /* report the good part first; the error comes next call */
          return fail(p, 400, EG_EPROTO);
        }
        if (p->hkind != H_OTHER && (rc = value_byte(p, d)) != 0) {
          *used = i;
          /* The bytes before this one may already pass the head limit: fed one at a time
             they would have failed with 431 first (found by fuzz/http's split check). */
          int lim = count_head(p, i - s);
          return lim ? lim : rc;
        }
        if (d == ' ' || d == '\t')
          p->trail_ws++;
        else
          p->trail_ws = 0;
        i++;
      }
      if ((rc = count_head(p, i - s)) != 0)
        goto err;
      if (i > s)
        EMIT(HTTP_PEV_HDR_VALUE, b + s, i - s);
      i++;
      if ((rc = count_head(p, 1)) != 0)
        goto err;
      if (c == '\r') {
        p->state = S_HDR_LF;
        break;
      }
      goto header_end;
    }
    case S_BODY_CL: {
      size_t take = n - i;
      if (take > p->remaining)
        take = (size_t)p->remaining;
      p->remaining -= take;
      i += take;
      if (p->remaining == 0)
        p->state = S_MSG_PENDING;
      EMIT(HTTP_PEV_BODY, b + i - take, take);
    }
    case S_CHUNK_SIZE: {
      int v = -1;
      if (c >= '0' && c <= '9')
        v = c - '0';
      else if (c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
      if (v >= 0) {
        if (++p->size_digits > 15) {
          *used = i;
          return fail(p, 413, EG_ETOOBIG);
        }
        p->remaining = p->remaining * 16 + (uint64_t)v;
        i++;
        break;
      }
      if (p->size_digits == 0) {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      if (p->body_total + p->remaining > p->max_body) {
        *used = i;
        return fail(p, 413, EG_ETOOBIG);
      }
      if (c == ';' || c == ' ' || c == '\t') {
        p->state = S_CHUNK_EXT;
        p->ext_bytes = 0;
        i++;
        break;
      }
      if (c == '\r') {
        p->state = S_CHUNK_SIZE_LF;
        i++;
        break;
      }
      if (c == '\n')
        goto chunk_size_end;
      *used = i;
      return fail(p, 400, EG_EPROTO);
    }
    case S_CHUNK_EXT:
      if (c == '\r') {
        p->state = S_CHUNK_SIZE_LF;
        i++;
        break;
      }
      if (c == '\n')
        goto chunk_size_end;
      if ((c < 0x20 && c != '\t') || c == 0x7f || ++p->ext_bytes > MAX_CHUNK_EXT) {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      i++;
      break;
    case S_CHUNK_SIZE_LF:
      if (c != '\n') {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
    chunk_size_end:
      i++;
      p->size_digits = 0;
      if (p->remaining == 0) {
        p->state = S_TRAILER;
        p->head_bytes = 0;
      } else {
        p->state = S_CHUNK_DATA;
        p->body_total += p->remaining;
      }
      break;
    case S_CHUNK_DATA: {
      size_t take = n - i;
      if (take > p->remaining)
        take = (size_t)p->remaining;
      p->remaining -= take;
      i += take;
      if (p->remaining == 0)
        p->state = S_CHUNK_CR;
      EMIT(HTTP_PEV_BODY, b + i - take, take);
    }
    case S_CHUNK_CR:
      if (c == '\r') {
        p->state = S_CHUNK_LF;
        i++;
        break;
      }
      FALLTHROUGH; /* a bare LF is accepted */
    case S_CHUNK_LF:
      if (c != '\n') {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      i++;
      p->state = S_CHUNK_SIZE;
      break;
    case S_TRAILER:
      if (c == '\r') {
        p->state = S_TRAILER_LF;
        i++;
        break;
      }
      if (c == '\n') {
        i++;
        goto msg_done;
      }
      p->state = S_TRAILER_LINE;
      FALLTHROUGH;
    case S_TRAILER_LINE:
      if ((rc = count_head(p, 1)) != 0)
        goto err;
      if (c == '\n')
        p->state = S_TRAILER;
      else if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      i++;
      break;
    case S_TRAILER_LF:
      if (c != '\n') {
        *used = i;
        return fail(p, 400, EG_EPROTO);
      }
      i++;
      goto msg_done;
    default:
      *used = i;
      return fail(p, 500, EG_EINTERNAL);
    }
    continue;

  header_end:
    ev->trim = p->trail_ws;
    if ((rc = end_header(p)) != 0) {
      *used = i;
      return rc;
    }
    p->state = S_HDR_START;
    EMIT(HTTP_PEV_HDR_END, NULL, 0);

  head_end:
    if ((rc = end_head(p)) != 0) {
      *used = i;
      return rc;
    }
    if (p->chunked) {
      p->state = S_CHUNK_SIZE;
      p->remaining = 0;
      p->size_digits = 0;
    } else if (p->content_length > 0) {
      p->state = S_BODY_CL;
      p->remaining = p->content_length;
    } else {
      p->state = S_MSG_PENDING;
    }
    EMIT(HTTP_PEV_HEAD_DONE, NULL, 0);

  msg_done:
    reset_request(p);
    EMIT(HTTP_PEV_MSG_DONE, NULL, 0);
  }
  *used = n;
  return EG_EAGAIN;

err:
  *used = i;
  return rc;
}
