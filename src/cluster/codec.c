/*
 * The socket.io Redis adapter message, msgpack <-> JSON (see cluster.h).
 *
 * notepack.io (the npm adapter's codec) writes JS numbers as msgpack integers when they
 * are integral and float64 otherwise, strings as str, Buffers as bin, `undefined` as
 * fixext 1 type 0. JSON has no binary and no undefined: bin and ext become null.
 * msgpack-c's unpacker checks the framing (and refuses more than 32 nested levels); this
 * file checks the shape.
 */
#include "cluster/cluster.h"

#include <limits.h>
#include <string.h>

#include <msgpack.h>

#define MAX_MSG (1u << 20)
#define MAX_DEPTH 32

/* msgpack-c leaves the pointer of an empty str/bin NULL. */
static const char *str_ptr(const msgpack_object_str *s) {
  return s->size ? s->ptr : "";
}

/* ---- msgpack -> JSON ------------------------------------------------------------- */

static json_t *to_json(const msgpack_object *o, int depth) {
  if (depth > MAX_DEPTH)
    return NULL;
  switch (o->type) {
  case MSGPACK_OBJECT_NIL:
  case MSGPACK_OBJECT_BIN:
  case MSGPACK_OBJECT_EXT:
    return json_null();
  case MSGPACK_OBJECT_BOOLEAN:
    return json_boolean(o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    if (o->via.u64 > (uint64_t)LLONG_MAX)
      return json_real((double)o->via.u64);
    return json_integer((json_int_t)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER:
    return json_integer((json_int_t)o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64:
    return json_real(o->via.f64); /* NaN/Inf: NULL (not JSON) */
  case MSGPACK_OBJECT_STR:
    return json_stringn(str_ptr(&o->via.str), o->via.str.size); /* NULL if not UTF-8 */
  case MSGPACK_OBJECT_ARRAY: {
    json_t *a = json_array();
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      json_t *v = to_json(&o->via.array.ptr[i], depth + 1);
      if (!v || json_array_append_new(a, v) != 0) {
        json_decref(a);
        return NULL;
      }
    }
    return a;
  }
  case MSGPACK_OBJECT_MAP: {
    json_t *m = json_object();
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      const msgpack_object_kv *kv = &o->via.map.ptr[i];
      if (kv->key.type != MSGPACK_OBJECT_STR ||
          memchr(str_ptr(&kv->key.via.str), '\0', kv->key.via.str.size)) {
        json_decref(m);
        return NULL;
      }
      json_t *v = to_json(&kv->val, depth + 1);
      if (!v ||
          json_object_setn_new(m, str_ptr(&kv->key.via.str), kv->key.via.str.size, v) != 0) {
        json_decref(m);
        return NULL;
      }
    }
    return m;
  }
  }
  return NULL;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key) {
  size_t klen = strlen(key);
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object *k = &map->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
        memcmp(k->via.str.ptr, key, klen) == 0)
      return &map->via.map.ptr[i].val;
  }
  return NULL;
}

static bool copy_str(const msgpack_object *o, char *out, size_t cap) {
  if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap)
    return false;
  memcpy(out, str_ptr(&o->via.str), o->via.str.size);
  out[o->via.str.size] = '\0';
  return memchr(out, '\0', o->via.str.size) == NULL;
}

/* rooms/except: an array of strings (numbers are accepted as their decimal text, as
   socket.io allows numeric room names); missing = []. */
static json_t *room_list(const msgpack_object *opts, const char *key) {
  const msgpack_object *o = opts ? map_get(opts, key) : NULL;
  json_t *a = json_array();
  if (!o || o->type == MSGPACK_OBJECT_NIL)
    return a;
  if (o->type != MSGPACK_OBJECT_ARRAY)
    goto bad;
  for (uint32_t i = 0; i < o->via.array.size; i++) {
    const msgpack_object *r = &o->via.array.ptr[i];
    json_t *s = NULL;
    if (r->type == MSGPACK_OBJECT_STR && r->via.str.size > 0 &&
        !memchr(r->via.str.ptr, '\0', r->via.str.size)) {
      s = json_stringn(r->via.str.ptr, r->via.str.size);
    } else if (r->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
      char num[32];
      snprintf(num, sizeof num, "%llu", (unsigned long long)r->via.u64);
      s = json_string(num);
    }
    if (!s)
      goto bad;
    json_array_append_new(a, s);
  }
  return a;
bad:
  json_decref(a);
  return NULL;
}

/* ---- framing check --------------------------------------------------------------- */

static uint64_t be(const uint8_t *p, int k) {
  uint64_t v = 0;
  for (int i = 0; i < k; i++)
    v = v << 8 | p[i];
  return v;
}

/* Walks the msgpack framing of p[0..n) before msgpack-c sees it: msgpack-c allocates
   arrays and maps by their declared sizes before reading them (a 5-byte map32 header
   asks for gigabytes), so every declared count must fit in the bytes that remain (each
   element takes at least one byte), every length in the input, nesting stays within
   MAX_DEPTH, and exactly one object fills the input. */
static bool framing_ok(const uint8_t *p, size_t n) {
  uint64_t pending[MAX_DEPTH + 2];
  int depth = 0;
  pending[0] = 1;
  size_t pos = 0;
  /* Widths of the length field (lw) or fixed payload (len) of the 0xc0..0xdf types. */
  static const struct {
    uint8_t lw, len, kind; /* kind: 0 scalar, 1 bytes, 2 array, 3 map */
  } t[32] = {
      [0x00] = {0, 0, 0},  [0x02] = {0, 0, 0}, [0x03] = {0, 0, 0}, /* nil false true */
      [0x04] = {1, 0, 1},  [0x05] = {2, 0, 1}, [0x06] = {4, 0, 1}, /* bin */
      [0x07] = {1, 1, 1},  [0x08] = {2, 1, 1}, [0x09] = {4, 1, 1}, /* ext (+ type) */
      [0x0a] = {0, 4, 0},  [0x0b] = {0, 8, 0},                     /* float */
      [0x0c] = {0, 1, 0},  [0x0d] = {0, 2, 0}, [0x0e] = {0, 4, 0}, [0x0f] = {0, 8, 0},
      [0x10] = {0, 1, 0},  [0x11] = {0, 2, 0}, [0x12] = {0, 4, 0}, [0x13] = {0, 8, 0},
      [0x14] = {0, 2, 0},  [0x15] = {0, 3, 0}, [0x16] = {0, 5, 0}, [0x17] = {0, 9, 0},
      [0x18] = {0, 17, 0},                                         /* fixext */
      [0x19] = {1, 0, 1},  [0x1a] = {2, 0, 1}, [0x1b] = {4, 0, 1}, /* str */
      [0x1c] = {2, 0, 2},  [0x1d] = {4, 0, 2}, [0x1e] = {2, 0, 3}, [0x1f] = {4, 0, 3},
  };
  while (depth >= 0) {
    if (pending[depth] == 0) {
      depth--;
      continue;
    }
    pending[depth]--;
    if (pos >= n)
      return false;
    uint8_t b = p[pos++];
    uint64_t skip = 0, count = 0;
    if (b <= 0x7f || b >= 0xe0) {
      /* fixint */
    } else if (b <= 0x8f) {
      count = 2u * (b & 0x0f);
    } else if (b <= 0x9f) {
      count = b & 0x0f;
    } else if (b <= 0xbf) {
      skip = b & 0x1f;
    } else {
      if (b == 0xc1)
        return false; /* never used */
      int i = b - 0xc0;
      uint64_t v = 0;
      if (t[i].lw) {
        if (n - pos < t[i].lw)
          return false;
        v = be(p + pos, t[i].lw);
        pos += t[i].lw;
      }
      if (t[i].kind == 1)
        skip = v + t[i].len;
      else if (t[i].kind == 2)
        count = v;
      else if (t[i].kind == 3)
        count = 2 * v;
      else
        skip = t[i].len;
    }
    if (skip > n - pos)
      return false;
    pos += (size_t)skip;
    if (count) {
      if (count > n - pos || depth + 1 > MAX_DEPTH)
        return false;
      pending[++depth] = count;
    }
  }
  return pos == n;
}

int cluster_msg_decode(const uint8_t *p, size_t n, struct cluster_msg *m) {
  memset(m, 0, sizeof *m);
  if (n > MAX_MSG)
    return EG_ETOOBIG;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  int rc = EG_EPROTO;
  if (!framing_ok(p, n) ||
      msgpack_unpack_next(&u, (const char *)p, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n)
    goto out;
  const msgpack_object *top = &u.data;
  if (top->type != MSGPACK_OBJECT_ARRAY || top->via.array.size < 2)
    goto out;
  const msgpack_object *uid = &top->via.array.ptr[0];
  const msgpack_object *pkt = &top->via.array.ptr[1];
  const msgpack_object *opts = top->via.array.size > 2 ? &top->via.array.ptr[2] : NULL;
  if (opts && opts->type == MSGPACK_OBJECT_NIL)
    opts = NULL;
  if (!copy_str(uid, m->uid, sizeof m->uid) || pkt->type != MSGPACK_OBJECT_MAP ||
      (opts && opts->type != MSGPACK_OBJECT_MAP))
    goto out;
  const msgpack_object *type = map_get(pkt, "type");
  const msgpack_object *nsp = map_get(pkt, "nsp");
  const msgpack_object *data = map_get(pkt, "data");
  if (!type || type->type != MSGPACK_OBJECT_POSITIVE_INTEGER || type->via.u64 > 6 || !data ||
      data->type != MSGPACK_OBJECT_ARRAY)
    goto out;
  m->type = (int)type->via.u64;
  if (!nsp || nsp->type == MSGPACK_OBJECT_NIL)
    strcpy(m->nsp, "/"); /* the reference adapter's default */
  else if (!copy_str(nsp, m->nsp, sizeof m->nsp))
    goto out;
  m->data = to_json(data, 1);
  m->rooms = room_list(opts, "rooms");
  m->except = room_list(opts, "except");
  if (!m->data || !m->rooms || !m->except)
    goto out;
  rc = 0;
out:
  msgpack_unpacked_destroy(&u);
  if (rc)
    cluster_msg_free(m);
  return rc;
}

void cluster_msg_free(struct cluster_msg *m) {
  json_decref(m->data);
  json_decref(m->rooms);
  json_decref(m->except);
  m->data = m->rooms = m->except = NULL;
}

/* ---- JSON -> msgpack ------------------------------------------------------------- */

static int buf_write(void *data, const char *p, size_t n) {
  return buf_append(data, p, n) == 0 ? 0 : -1;
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n) {
  if (msgpack_pack_str(pk, n) != 0)
    return -1;
  return msgpack_pack_str_body(pk, s, n);
}

static int pack_json(msgpack_packer *pk, const json_t *v, int depth) {
  if (depth > MAX_DEPTH)
    return -1;
  switch (json_typeof(v)) {
  case JSON_NULL:
    return msgpack_pack_nil(pk);
  case JSON_TRUE:
    return msgpack_pack_true(pk);
  case JSON_FALSE:
    return msgpack_pack_false(pk);
  case JSON_INTEGER:
    return msgpack_pack_int64(pk, json_integer_value(v));
  case JSON_REAL:
    return msgpack_pack_double(pk, json_real_value(v));
  case JSON_STRING:
    return pack_str(pk, json_string_value(v), json_string_length(v));
  case JSON_ARRAY: {
    size_t n = json_array_size(v);
    if (msgpack_pack_array(pk, n) != 0)
      return -1;
    for (size_t i = 0; i < n; i++) {
      if (pack_json(pk, json_array_get(v, i), depth + 1) != 0)
        return -1;
    }
    return 0;
  }
  case JSON_OBJECT: {
    if (msgpack_pack_map(pk, json_object_size(v)) != 0)
      return -1;
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)(uintptr_t)v, k, x) {
      if (pack_str(pk, k, strlen(k)) != 0 || pack_json(pk, x, depth + 1) != 0)
        return -1;
    }
    return 0;
  }
  }
  return -1;
}

static int pack_list(msgpack_packer *pk, const char *const *v, size_t n) {
  if (msgpack_pack_array(pk, n) != 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (pack_str(pk, v[i], strlen(v[i])) != 0)
      return -1;
  }
  return 0;
}

int cluster_msg_encode(const char *uid, const char *nsp, const json_t *data,
                       const char *const *rooms, size_t nrooms, const char *const *except,
                       size_t nexcept, struct buf *out) {
  if (!json_is_array(data))
    return EG_EINVAL;
  size_t start = out->len;
  msgpack_packer pk;
  msgpack_packer_init(&pk, out, buf_write);
  int bad = msgpack_pack_array(&pk, 3) || pack_str(&pk, uid, strlen(uid)) ||
            msgpack_pack_map(&pk, 3) || pack_str(&pk, "type", 4) || msgpack_pack_int(&pk, 2) ||
            pack_str(&pk, "data", 4) || pack_json(&pk, data, 1) || pack_str(&pk, "nsp", 3) ||
            pack_str(&pk, nsp, strlen(nsp)) || msgpack_pack_map(&pk, 3) ||
            pack_str(&pk, "rooms", 5) || pack_list(&pk, rooms, nrooms) ||
            pack_str(&pk, "except", 6) || pack_list(&pk, except, nexcept) ||
            pack_str(&pk, "flags", 5) || msgpack_pack_map(&pk, 0);
  if (bad) {
    out->len = start;
    return EG_ETOOBIG;
  }
  return 0;
}
