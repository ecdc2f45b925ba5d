/*
 * SSE parser: see sse.h for the rules. The state machine has three states:
 *
 *   SSE_BOM       only at stream start; bytes matching EF BB BF are swallowed. On the
 *                 first mismatch the matched prefix is replayed as line bytes and the
 *                 parser moves to SSE_LINE.
 *   SSE_LINE      bytes up to CR or LF go into `line`; CR -> process line, SSE_AFTER_CR;
 *                 LF -> process line, stay.
 *   SSE_AFTER_CR  an LF here is the second half of a CRLF and is skipped; anything else
 *                 is handled as in SSE_LINE.
 */
#include "proto/sse.h"

#include <string.h>

static const uint8_t bom[3] = {0xEF, 0xBB, 0xBF};

void sse_init(struct sse_parser *p, size_t max_event, bool flush_on_eof) {
  memset(p, 0, sizeof *p);
  p->max_event = max_event ? max_event : SSE_DEFAULT_MAX_EVENT;
  p->flush_on_eof = flush_on_eof;
  p->retry_ms = -1;
  p->state = SSE_BOM;
  /* The caps are enforced by pending_size(); the buffers just must not exceed it. */
  buf_init(&p->line, p->max_event);
  buf_init(&p->data, p->max_event);
  buf_init(&p->type, p->max_event);
  buf_init(&p->id, p->max_event);
}

void sse_free(struct sse_parser *p) {
  buf_free(&p->line);
  buf_free(&p->data);
  buf_free(&p->type);
  buf_free(&p->id);
}

void sse_reset(struct sse_parser *p) {
  buf_reset(&p->line);
  buf_reset(&p->data);
  buf_reset(&p->type);
  buf_reset(&p->id);
  p->state = SSE_BOM;
  p->err = 0;
  p->bom_matched = 0;
  p->dropped_at_eof = false;
  p->finished = false;
  p->retry_ms = -1;
  p->events = 0;
  p->has_data = false;
}

static size_t pending_size(const struct sse_parser *p) {
  return p->line.len + p->data.len + p->type.len;
}

static int fail(struct sse_parser *p, int err) {
  p->err = err;
  return err;
}

static int dispatch(struct sse_parser *p, bool at_eof, sse_event_fn cb, void *ud) {
  if (!p->has_data) {
    buf_reset(&p->type);
    return 0;
  }
  struct sse_event ev;
  size_t dlen = p->data.len;
  if (dlen > 0 && p->data.data[dlen - 1] == '\n')
    dlen--;
  ev.data.p = dlen ? (const char *)p->data.data : "";
  ev.data.len = dlen;
  if (p->type.len) {
    ev.type.p = (const char *)p->type.data;
    ev.type.len = p->type.len;
  } else {
    ev.type = SLICE_LIT("message");
  }
  ev.id.p = p->id.len ? (const char *)p->id.data : "";
  ev.id.len = p->id.len;
  ev.at_eof = at_eof;
  p->events++;
  int rc = cb ? cb(ud, &ev) : 0;
  buf_reset(&p->data);
  buf_reset(&p->type);
  p->has_data = false;
  if (rc != 0)
    return fail(p, rc);
  return 0;
}

/* Processes one complete line l[0..n) (p->line, or a line lying whole in the input) and
   clears p->line. */
static int process_line(struct sse_parser *p, const uint8_t *l, size_t n, sse_event_fn cb,
                        void *ud) {
  int rc = 0;
  if (n == 0) {
    rc = dispatch(p, false, cb, ud);
    goto out;
  }
  if (l[0] == ':')
    goto out; /* comment / keep-alive */
  size_t name_len = n;
  const uint8_t *val = l + n;
  size_t val_len = 0;
  const uint8_t *colon = memchr(l, ':', n);
  if (colon != NULL) {
    name_len = (size_t)(colon - l);
    val = colon + 1;
    val_len = n - name_len - 1;
    if (val_len > 0 && val[0] == ' ') {
      val++;
      val_len--;
    }
  }
  if (name_len == 4 && memcmp(l, "data", 4) == 0) {
    if (buf_append(&p->data, val, val_len) != 0 || buf_append_byte(&p->data, '\n') != 0) {
      rc = fail(p, EG_ETOOBIG);
      goto out;
    }
    p->has_data = true;
  } else if (name_len == 5 && memcmp(l, "event", 5) == 0) {
    buf_reset(&p->type);
    if (buf_append(&p->type, val, val_len) != 0) {
      rc = fail(p, EG_ETOOBIG);
      goto out;
    }
  } else if (name_len == 2 && memcmp(l, "id", 2) == 0) {
    if (val_len == 0 || memchr(val, 0, val_len) == NULL) {
      buf_reset(&p->id);
      if (buf_append(&p->id, val, val_len) != 0) {
        rc = fail(p, EG_ETOOBIG);
        goto out;
      }
    }
  } else if (name_len == 5 && memcmp(l, "retry", 5) == 0) {
    int64_t v = 0;
    bool ok = val_len > 0 && val_len <= 15;
    for (size_t i = 0; ok && i < val_len; i++) {
      if (val[i] < '0' || val[i] > '9')
        ok = false;
      else
        v = v * 10 + (val[i] - '0');
    }
    if (ok)
      p->retry_ms = v;
  }
out:
  buf_reset(&p->line);
  if (rc == 0 && pending_size(p) > p->max_event)
    rc = fail(p, EG_ETOOBIG);
  return rc;
}

static int line_bytes(struct sse_parser *p, const uint8_t *b, size_t n) {
  if (n == 0)
    return 0;
  if (pending_size(p) + n > p->max_event || buf_append(&p->line, b, n) != 0)
    return fail(p, EG_ETOOBIG);
  return 0;
}

int sse_feed(struct sse_parser *p, const uint8_t *b, size_t n, sse_event_fn cb, void *ud) {
  if (p->err)
    return p->err;
  if (p->finished)
    return EG_EINVAL;
  size_t i = 0, next_lf = SIZE_MAX;
  while (i < n) {
    switch (p->state) {
    case SSE_BOM:
      if (b[i] == bom[p->bom_matched]) {
        i++;
        if (++p->bom_matched == 3)
          p->state = SSE_LINE;
        continue;
      }
      /* Mismatch: the matched prefix was ordinary bytes after all. */
      if (line_bytes(p, bom, p->bom_matched) != 0)
        return p->err;
      p->state = SSE_LINE;
      continue;
    case SSE_AFTER_CR:
      p->state = SSE_LINE;
      if (b[i] == '\n') {
        i++;
        continue;
      }
      continue;
    case SSE_LINE: {
      /* Take the longest run without CR or LF in one go. */
      /* The next LF is remembered across lines, so CR-only streams stay linear. */
      if (next_lf == SIZE_MAX || next_lf < i) {
        const uint8_t *lf = memchr(b + i, '\n', n - i);
        next_lf = lf ? (size_t)(lf - b) : n;
      }
      const uint8_t *cr = memchr(b + i, '\r', next_lf - i);
      size_t j = cr ? (size_t)(cr - b) : next_lf;
      if (j == n) {
        if (line_bytes(p, b + i, j - i) != 0)
          return p->err;
        i = n;
        break;
      }
      p->state = b[j] == '\r' ? SSE_AFTER_CR : SSE_LINE;
      int rc;
      if (p->line.len == 0) {
        /* The whole line is in this input: no copy. */
        if (j - i + pending_size(p) > p->max_event)
          return fail(p, EG_ETOOBIG);
        rc = process_line(p, b + i, j - i, cb, ud);
      } else {
        if (line_bytes(p, b + i, j - i) != 0)
          return p->err;
        rc = process_line(p, p->line.data, p->line.len, cb, ud);
      }
      i = j + 1;
      if (rc != 0)
        return p->err;
      break;
    }
    }
  }
  return 0;
}

int sse_finish(struct sse_parser *p, sse_event_fn cb, void *ud) {
  if (p->err)
    return p->err;
  if (p->finished)
    return 0;
  p->finished = true;
  if (p->state == SSE_BOM && p->bom_matched > 0) {
    if (line_bytes(p, bom, p->bom_matched) != 0)
      return p->err;
  }
  bool pending_line = p->line.len > 0;
  if (!p->flush_on_eof) {
    p->dropped_at_eof = pending_line || p->has_data;
    buf_reset(&p->line);
    buf_reset(&p->data);
    buf_reset(&p->type);
    p->has_data = false;
    return 0;
  }
  if (pending_line && process_line(p, p->line.data, p->line.len, cb, ud) != 0)
    return p->err;
  return dispatch(p, true, cb, ud);
}
