/* Socket.IO v5 packet codec (see sio.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sio.h"

#define ENCODE_MAX_DEPTH 64 /* guards the encoder against cycles and runaway nesting */

struct sio_limits sio_limits_default(void) {
  return (struct sio_limits){
      .max_packet = 1000000, .max_depth = 32, .max_attachments = 10, .max_binary = 1000000};
}

void sio_packet_clear(struct sio_packet *p) {
  if (p->data)
    json_decref(p->data);
  p->data = NULL;
}

static void packet_reset(struct sio_packet *p) {
  p->type = SIO_CONNECT;
  p->attachments = 0;
  p->nsp[0] = '/';
  p->nsp[1] = '\0';
  p->nsp_len = 1;
  p->id = SIO_NO_ID;
  p->data = NULL;
}

/* ---- bin nodes ------------------------------------------------------------------------ */

json_t *sio_bin_new(const void *data, size_t len) {
  json_t *o = json_object();
  json_t *s = json_stringn_nocheck(len ? data : "", len);
  if (o == NULL || s == NULL ||
      json_object_setn_new_nocheck(o, SIO_BIN_KEY, SIO_BIN_KEY_LEN, s) != 0) {
    /* jansson only fails here on out-of-memory. */
    abort();
  }
  return o;
}

bool sio_bin_is(const json_t *v) {
  if (!json_is_object(v) || json_object_size(v) != 1)
    return false;
  json_t *s = json_object_getn(v, SIO_BIN_KEY, SIO_BIN_KEY_LEN);
  return json_is_string(s);
}

const uint8_t *sio_bin_data(const json_t *v, size_t *len) {
  *len = 0;
  if (!sio_bin_is(v))
    return NULL;
  json_t *s = json_object_getn(v, SIO_BIN_KEY, SIO_BIN_KEY_LEN);
  *len = json_string_length(s);
  return (const uint8_t *)json_string_value(s);
}

/* Counts bin nodes (stops counting past `cap`); -1 when nesting passes max_depth. */
static long count_bins(const json_t *v, size_t depth, long cap) {
  if (depth > ENCODE_MAX_DEPTH)
    return -1;
  long n = 0;
  if (json_is_array(v)) {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      long k = count_bins(e, depth + 1, cap);
      if (k < 0)
        return -1;
      n += k;
      if (n > cap)
        return n;
    }
  } else if (json_is_object(v)) {
    if (sio_bin_is(v))
      return 1;
    const char *key;
    json_t *e;
    json_object_foreach((json_t *)v, key, e) {
      (void)key;
      long k = count_bins(e, depth + 1, cap);
      if (k < 0)
        return -1;
      n += k;
      if (n > cap)
        return n;
    }
  }
  return n;
}

bool sio_has_binary(const json_t *v) {
  return v && count_bins(v, 0, 0) != 0;
}

/* ---- validity ------------------------------------------------------------------------- */

static bool payload_valid(enum sio_type type, const json_t *data) {
  switch (type) {
  case SIO_CONNECT:
    return data == NULL || json_is_object(data);
  case SIO_DISCONNECT:
    return data == NULL;
  case SIO_CONNECT_ERROR:
    return data == NULL || json_is_object(data) || json_is_string(data);
  case SIO_EVENT:
  case SIO_BINARY_EVENT:
    return json_is_array(data) && json_array_size(data) > 0 &&
           json_is_string(json_array_get(data, 0));
  case SIO_ACK:
  case SIO_BINARY_ACK:
    return json_is_array(data);
  }
  return false;
}

/* ---- decoding ------------------------------------------------------------------------- */

/* Nesting depth of JSON text (brackets outside strings); stops early past max. */
static size_t json_depth(const char *s, size_t n, size_t max) {
  size_t depth = 0, worst = 0;
  bool in_str = false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = false;
      continue;
    }
    if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      if (++depth > worst) {
        worst = depth;
        if (worst > max)
          return worst;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      depth--;
    }
  }
  return worst;
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int sio_decode_text(const char *b, size_t n, const struct sio_limits *lim,
                    struct sio_packet *out) {
  size_t i = 0;
  packet_reset(out);
  if (n == 0)
    return EG_EPROTO;
  if (n > lim->max_packet)
    return EG_ETOOBIG;
  if (b[0] < '0' || b[0] > '6')
    return EG_EPROTO;
  out->type = (enum sio_type)(b[0] - '0');
  i = 1;
  if (out->type == SIO_BINARY_EVENT || out->type == SIO_BINARY_ACK) {
    size_t start = i, count = 0;
    while (i < n && is_digit(b[i]) && i - start < 8) {
      count = count * 10 + (size_t)(b[i] - '0');
      i++;
    }
    if (i == start || i >= n || b[i] != '-')
      return EG_EPROTO;
    if (count > lim->max_attachments)
      return EG_ETOOBIG;
    out->attachments = count;
    i++;
  }
  if (i < n && b[i] == '/') {
    size_t start = i;
    while (i < n && b[i] != ',')
      i++;
    size_t len = i - start;
    if (len > SIO_NSP_MAX)
      return EG_ETOOBIG;
    if (memchr(b + start, '\0', len))
      return EG_EPROTO; /* the namespace is handed out as a C string */
    memcpy(out->nsp, b + start, len);
    out->nsp[len] = '\0';
    out->nsp_len = len;
    if (i < n)
      i++; /* the ',' */
  }
  if (i < n && is_digit(b[i])) {
    size_t start = i;
    int64_t id = 0;
    while (i < n && is_digit(b[i])) {
      if (i - start >= 16)
        return EG_EPROTO; /* more digits than 2^53 has */
      id = id * 10 + (b[i] - '0');
      i++;
    }
    if (id > SIO_MAX_ID)
      return EG_EPROTO;
    out->id = id;
  }
  if (i < n) {
    if (json_depth(b + i, n - i, lim->max_depth) > lim->max_depth)
      return EG_ETOOBIG;
    json_error_t jerr;
    out->data = json_loadb(b + i, n - i, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (out->data == NULL)
      return EG_EPROTO;
  }
  if (!payload_valid(out->type, out->data)) {
    sio_packet_clear(out);
    return EG_EPROTO;
  }
  return 0;
}

void sio_decoder_init(struct sio_decoder *d, const struct sio_limits *lim) {
  memset(d, 0, sizeof *d);
  d->lim = *lim;
  packet_reset(&d->pending);
}

void sio_decoder_free(struct sio_decoder *d) {
  sio_packet_clear(&d->pending);
  if (d->buffers)
    json_decref(d->buffers);
  d->buffers = NULL;
  d->waiting = false;
}

static int decoder_fail(struct sio_decoder *d, int err) {
  sio_decoder_free(d);
  d->err = err;
  return err;
}

static bool is_placeholder(const json_t *v) {
  return json_is_object(v) && json_is_true(json_object_get(v, "_placeholder"));
}

/* Replaces placeholders in v (depth-first) with the buffers; 0 or EG_EPROTO. */
static int replace_placeholders(json_t *v, json_t *buffers) {
  size_t count = json_array_size(buffers);
  if (json_is_array(v)) {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      if (is_placeholder(e)) {
        json_t *num = json_object_get(e, "num");
        if (!json_is_integer(num) || json_integer_value(num) < 0 ||
            (size_t)json_integer_value(num) >= count)
          return EG_EPROTO;
        json_array_set(v, i, json_array_get(buffers, (size_t)json_integer_value(num)));
      } else if (replace_placeholders(e, buffers) != 0) {
        return EG_EPROTO;
      }
    }
  } else if (json_is_object(v)) {
    const char *key;
    size_t key_len;
    json_t *e;
    void *tmp;
    json_object_keylen_foreach_safe(v, tmp, key, key_len, e) {
      if (is_placeholder(e)) {
        json_t *num = json_object_get(e, "num");
        if (!json_is_integer(num) || json_integer_value(num) < 0 ||
            (size_t)json_integer_value(num) >= count)
          return EG_EPROTO;
        json_object_setn(v, key, key_len,
                         json_array_get(buffers, (size_t)json_integer_value(num)));
      } else if (replace_placeholders(e, buffers) != 0) {
        return EG_EPROTO;
      }
    }
  }
  return 0;
}

/* Completes the pending packet into out. */
static int decoder_finish(struct sio_decoder *d, struct sio_packet *out) {
  json_t *buffers = d->buffers ? d->buffers : json_array();
  d->buffers = NULL;
  int rc = 0;
  json_t *data = d->pending.data;
  if (is_placeholder(data)) {
    rc = EG_EPROTO; /* the payload is an array; a bare placeholder cannot be valid */
  } else {
    rc = replace_placeholders(data, buffers);
  }
  json_decref(buffers);
  if (rc)
    return decoder_fail(d, rc);
  *out = d->pending;
  packet_reset(&d->pending);
  d->waiting = false;
  d->received = 0;
  d->binary_bytes = 0;
  return 0;
}

int sio_decoder_feed_text(struct sio_decoder *d, const char *b, size_t n,
                          struct sio_packet *out) {
  if (d->err)
    return d->err;
  if (d->waiting)
    return decoder_fail(d, EG_EPROTO);
  struct sio_packet p;
  int rc = sio_decode_text(b, n, &d->lim, &p);
  if (rc)
    return decoder_fail(d, rc);
  if (p.type != SIO_BINARY_EVENT && p.type != SIO_BINARY_ACK) {
    *out = p;
    return 0;
  }
  d->pending = p;
  d->waiting = true;
  d->received = 0;
  d->binary_bytes = 0;
  if (p.attachments == 0)
    return decoder_finish(d, out);
  d->buffers = json_array();
  return EG_EAGAIN;
}

int sio_decoder_feed_binary(struct sio_decoder *d, const uint8_t *b, size_t n,
                            struct sio_packet *out) {
  if (d->err)
    return d->err;
  if (!d->waiting)
    return decoder_fail(d, EG_EPROTO);
  if (n > d->lim.max_binary - d->binary_bytes)
    return decoder_fail(d, EG_ETOOBIG);
  d->binary_bytes += n;
  json_array_append_new(d->buffers, sio_bin_new(b, n));
  d->received++;
  if (d->received < d->pending.attachments)
    return EG_EAGAIN;
  return decoder_finish(d, out);
}

/* ---- encoding ------------------------------------------------------------------------- */

struct enc {
  struct buf out;
  struct sio_attachment *attach;
  size_t nattach;
};

static int put(struct enc *e, const void *p, size_t n) {
  return buf_append(&e->out, p, n);
}

/* Appends a JSON string literal (JSON.stringify's escaping for valid UTF-8 input). */
static int put_string(struct enc *e, const char *s, size_t n) {
  return buf_append_json_str(&e->out, s, n);
}

/* Shortest "%.*g" form that reads back as the same double, with JavaScript's exponent
   style ("1e-7", "1e+21"), and ".0" after integral values ("2.0"; JavaScript writes "2"). */
size_t sio_format_real(double v, char tmp[SIO_REAL_MAX]) {
  if (!isfinite(v)) {
    memcpy(tmp, "null", 5); /* JSON.stringify's choice; jansson cannot hold these anyway */
    return 4;
  }
  int len = 0;
  int e2;
  double frac = frexp(v, &e2);
  if (fabs(v) < 1.0 && fabs(frac) != 0.5) {
    /* Below 1 and not a power of two, "reads back" is monotonic in the precision (the
       round-trip interval is symmetric about v, and no decimal of 17 digits or fewer
       sits on its edge), so a binary search finds the same shortest precision as the
       linear scan below in about 4 tries instead of up to 17 (scores need 16-17). */
    /* Scores (floats widened to double) need 16 or 17 digits: 16 and 15 are tried first,
       so most take 2 printf and 1-2 strtod; the form found good is kept, not printed
       again. */
    int lo = 1, hi = 17, steps = 0, good_prec = 0, good_len = 0; /* 17 always reads back */
    char good[SIO_REAL_MAX];
    while (lo < hi) {
      int mid = steps++ < 2 ? hi - 1 : (lo + hi) / 2;
      int n = snprintf(tmp, SIO_REAL_MAX, "%.*g", mid, v);
      if (strtod(tmp, NULL) == v) {
        hi = mid;
        good_prec = mid;
        good_len = n;
        memcpy(good, tmp, (size_t)n + 1);
      } else {
        lo = mid + 1;
      }
    }
    if (good_prec == lo) {
      memcpy(tmp, good, (size_t)good_len + 1);
      len = good_len;
    } else {
      len = snprintf(tmp, SIO_REAL_MAX, "%.*g", lo, v);
    }
  } else {
    for (int prec = 1; prec <= 17; prec++) {
      len = snprintf(tmp, SIO_REAL_MAX, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v)
        break;
    }
  }
  /* JavaScript writes exponents without leading zeros ("1e-7", not "1e-07"). */
  char *x = memchr(tmp, 'e', (size_t)len);
  if (x != NULL) {
    char *d = x + 2, *z = d; /* after the sign */
    while (*z == '0' && z[1] != '\0')
      z++;
    memmove(d, z, (size_t)(tmp + len - z) + 1);
    len -= (int)(z - d);
  } else if (memchr(tmp, '.', (size_t)len) == NULL) {
    /* An integral real keeps a ".0" so it reads back as a real (jansson tells the two
       apart; JavaScript reads the same number either way). */
    memcpy(tmp + len, ".0", 3);
    len += 2;
  }
  return (size_t)len;
}

static int put_real(struct enc *e, double v) {
  char tmp[SIO_REAL_MAX];
  size_t len = sio_format_real(v, tmp);
  return put(e, tmp, len);
}

/* Decimal integer without printf (this is on every event's path). */
static int put_int(struct enc *e, long long v) {
  char tmp[24], *w = tmp + sizeof tmp;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    *--w = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    *--w = '-';
  return put(e, w, (size_t)(tmp + sizeof tmp - w));
}

static int put_value(struct enc *e, const json_t *v, size_t depth) {
  char tmp[32];
  int rc = 0;
  if (depth > ENCODE_MAX_DEPTH)
    return EG_EINVAL;
  switch (json_typeof(v)) {
  case JSON_NULL:
    return put(e, "null", 4);
  case JSON_TRUE:
    return put(e, "true", 4);
  case JSON_FALSE:
    return put(e, "false", 5);
  case JSON_INTEGER:
    return put_int(e, (long long)json_integer_value(v));
  case JSON_REAL:
    return put_real(e, json_real_value(v));
  case JSON_STRING:
    return put_string(e, json_string_value(v), json_string_length(v));
  case JSON_ARRAY: {
    rc = buf_append_byte(&e->out, '[');
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
      if (rc == 0 && i > 0)
        rc = buf_append_byte(&e->out, ',');
      if (rc == 0)
        rc = put_value(e, x, depth + 1);
    }
    return rc ? rc : buf_append_byte(&e->out, ']');
  }
  case JSON_OBJECT: {
    if (sio_bin_is(v)) {
      size_t k = e->nattach++;
      e->attach[k].data = sio_bin_data(v, &e->attach[k].len);
      int len = snprintf(tmp, sizeof tmp, "{\"_placeholder\":true,\"num\":%zu}", k);
      return put(e, tmp, (size_t)len);
    }
    rc = buf_append_byte(&e->out, '{');
    const char *key;
    size_t key_len;
    json_t *x;
    bool first = true;
    json_object_keylen_foreach((json_t *)v, key, key_len, x) {
      if (rc == 0 && !first)
        rc = buf_append_byte(&e->out, ',');
      first = false;
      if (rc == 0)
        rc = put_string(e, key, key_len);
      if (rc == 0)
        rc = buf_append_byte(&e->out, ':');
      if (rc == 0)
        rc = put_value(e, x, depth + 1);
    }
    return rc ? rc : buf_append_byte(&e->out, '}');
  }
  }
  return EG_EINVAL;
}

int sio_encode(enum sio_type type, const char *nsp, int64_t id, const json_t *data,
               unsigned flags, struct sio_encoded *out) {
  memset(out, 0, sizeof *out);
  if ((unsigned)type > SIO_BINARY_ACK)
    return EG_EINVAL;
  if (nsp == NULL)
    nsp = "/";
  size_t nsp_len = strlen(nsp);
  if (nsp[0] != '/' || nsp_len > SIO_NSP_MAX || memchr(nsp, ',', nsp_len))
    return EG_EINVAL;
  if (id != SIO_NO_ID && (id < 0 || id > SIO_MAX_ID))
    return EG_EINVAL;
  long nbins = data ? count_bins(data, 0, 1000000) : 0;
  if (nbins < 0)
    return EG_EINVAL;
  if (nbins > 0) {
    if (type == SIO_EVENT)
      type = SIO_BINARY_EVENT;
    else if (type == SIO_ACK)
      type = SIO_BINARY_ACK;
    else if (type != SIO_BINARY_EVENT && type != SIO_BINARY_ACK)
      return EG_EINVAL;
  }
  if (!payload_valid(type, data))
    return EG_EINVAL;

  struct enc e = {.attach = NULL, .nattach = 0};
  buf_init(&e.out, SIZE_MAX / 2);
  int rc = buf_reserve(&e.out, 240);
  char tmp[48];
  size_t k = 0;
  if (flags & SIO_ENC_EIO_PREFIX)
    tmp[k++] = '4';
  tmp[k++] = (char)('0' + (int)type);
  if (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK)
    k += (size_t)snprintf(tmp + k, sizeof tmp - k, "%ld-", nbins);
  if (rc == 0)
    rc = put(&e, tmp, k);
  if (rc == 0 && !(nsp_len == 1)) {
    rc = put(&e, nsp, nsp_len);
    if (rc == 0)
      rc = buf_append_byte(&e.out, ',');
  }
  if (rc == 0 && id != SIO_NO_ID)
    rc = put_int(&e, (long long)id);
  if (nbins > 0)
    e.attach = xmalloc((size_t)nbins * sizeof *e.attach);
  if (rc == 0 && data)
    rc = put_value(&e, data, 0);
  if (rc) {
    buf_free(&e.out);
    free(e.attach);
    return rc;
  }
  out->text = buf_steal(&e.out, &out->len);
  out->nattach = e.nattach;
  out->attach = e.attach;
  return 0;
}

void sio_encoded_free(struct sio_encoded *e) {
  free(e->text);
  free(e->attach);
  memset(e, 0, sizeof *e);
}
