/*
 * Pinecone vector store over httpc (the REST data plane; legacy vector-index API):
 *   upsert  POST {host}/vectors/upsert {vectors:[{id, values, metadata:{user, chat, text,
 *           model, createdAt}}], namespace}          (at most 100 vectors per request)
 *   query   POST {host}/query {vector, topK, filter:{$and:[{user:{$eq}}, {model:{$eq}}]},
 *           includeMetadata:true, namespace}
 *   delete  POST {host}/vectors/delete {ids:[...]} (at most 1000 per request) or
 *           {filter:{user:{$eq}}} (forget-all)
 * Headers: Api-Key, X-Pinecone-Api-Version (pinned), Content-Type: application/json.
 * Retries on 408/429/5xx with backoff (Pinecone sends no Retry-After; httpc honours one if
 * present). A query result whose metadata names another user or model is dropped, so a
 * misconfigured index can never leak another user's memory.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc/httpc.h"
#include "memory/memory.h"

#define PC_API_VERSION "2025-04"
#define UPSERT_BATCH 100
#define DELETE_BATCH 1000

struct mem_pinecone {
  uv_loop_t *loop;
  struct httpc *http;
  char *host;
  char *key;
  char *ns;
  int max_tries;
  uint32_t timeout_ms;
  struct pc_op *ops; /* in flight */
  bool closing;
};

/* One API call of the caller (may be several HTTP requests). */
struct pc_op {
  struct pc_op *next, *prev;
  struct mem_pinecone *pc;
  int kind; /* 0 done-cb, 1 query */
  mem_pc_done_cb done;
  mem_pc_query_cb qcb;
  void *ud;
  size_t left;
  int err;
  char user[256];
  char model[MEM_MODEL_MAX];
  struct httpc_req *reqs[64];
  size_t nreqs;
  uv_idle_t *defer;
};

static void op_unlink(struct pc_op *op) {
  struct mem_pinecone *pc = op->pc;
  if (pc == NULL)
    return; /* the store was freed: already detached */
  if (op->prev)
    op->prev->next = op->next;
  else
    pc->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
}

static bool valid_hex_id(const char *s) {
  return s != NULL && strnlen(s, ID_LEN + 1) == ID_LEN && id_valid(s, ID_LEN);
}

static void finish_query(struct pc_op *op, int err, const struct httpc_response *resp) {
  struct mem_hit *hits = NULL;
  size_t n = 0;
  if (err == 0) {
    json_t *root = json_loadb(resp->body.p, resp->body.len, 0, NULL);
    json_t *m = json_object_get(root, "matches");
    if (!json_is_array(m)) {
      err = EG_EUPSTREAM;
    } else {
      hits = xcalloc(json_array_size(m) + 1, sizeof(*hits));
      size_t i;
      json_t *x;
      json_array_foreach(m, i, x) {
        const char *id = json_string_value(json_object_get(x, "id"));
        json_t *md = json_object_get(x, "metadata");
        const char *u = json_string_value(json_object_get(md, "user"));
        const char *mo = json_string_value(json_object_get(md, "model"));
        if (!valid_hex_id(id) || u == NULL || strcmp(u, op->user) != 0 || mo == NULL ||
            strcmp(mo, op->model) != 0)
          continue; /* never another user's (or model's) vector */
        memcpy(hits[n].id, id, ID_LEN + 1);
        hits[n].score = (float)json_number_value(json_object_get(x, "score"));
        hits[n].created_at = (int64_t)json_number_value(json_object_get(md, "createdAt"));
        n++;
      }
    }
    json_decref(root);
  }
  op->qcb(op->ud, err, err == 0 ? hits : NULL, err == 0 ? n : 0);
  free(hits);
}

static void on_done(void *ud, int err, const struct httpc_response *resp) {
  struct pc_op *op = ud;
  if (err != 0 && err != EG_ECANCELED)
    log_warn("memory: pinecone: %s (status %d, %d attempts)", eg_errname(err), resp->status,
             resp->attempts);
  if (err != 0 && op->err == 0)
    op->err = err;
  if (--op->left > 0)
    return;
  op_unlink(op);
  if (op->kind == 1)
    finish_query(op, op->err, resp);
  else
    op->done(op->ud, op->err);
  free(op);
}

static int send_req(struct mem_pinecone *pc, struct pc_op *op, const char *path, json_t *body) {
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (s == NULL)
    return EG_EINVAL;
  char url[1024];
  snprintf(url, sizeof(url), "%s%s", pc->host, path);
  struct httpc_header h[3] = {{"Api-Key", pc->key},
                              {"X-Pinecone-Api-Version", PC_API_VERSION},
                              {"Content-Type", "application/json"}};
  struct httpc_request r = {
      .method = "POST",
      .url = url,
      .headers = h,
      .n_headers = 3,
      .body = s,
      .body_len = strlen(s),
      .timeouts = {.connect_ms = 10000,
                   .first_byte_ms = pc->timeout_ms,
                   .total_ms = pc->timeout_ms * (uint32_t)pc->max_tries},
      .retry = {.max_tries = pc->max_tries, .base_ms = 250, .max_ms = 4000},
      .max_body = 16u << 20,
      .on_done = on_done,
      .ud = op,
  };
  struct httpc_req *req = NULL;
  int rc = httpc_start(pc->http, &r, &req);
  free(s);
  if (rc != 0)
    return rc;
  if (op->nreqs < EG_ARRAY_LEN(op->reqs))
    op->reqs[op->nreqs++] = req;
  op->left++;
  return 0;
}

static struct pc_op *op_new(struct mem_pinecone *pc, int kind, void *ud) {
  struct pc_op *op = xcalloc(1, sizeof(*op));
  op->pc = pc;
  op->kind = kind;
  op->ud = ud;
  op->left = 1; /* held by the starter until every request is sent */
  op->next = pc->ops;
  if (pc->ops)
    pc->ops->prev = op;
  pc->ops = op;
  return op;
}

/* Drops the starter's hold; when nothing was sent, reports on a later loop turn. */
static void defer_close(uv_handle_t *h) {
  free(h);
}
static void defer_run(uv_idle_t *h) {
  struct pc_op *op = h->data;
  uv_idle_stop(h);
  uv_close((uv_handle_t *)h, defer_close);
  struct httpc_response none = {.error = ""};
  op->left = 1;
  on_done(op, op->pc ? 0 : EG_ECANCELED, &none);
}

static int op_launched(struct pc_op *op, int rc) {
  if (rc != 0 && op->left == 1) {
    /* Nothing sent: fail synchronously, no callback. */
    op_unlink(op);
    free(op);
    return rc;
  }
  if (rc != 0) {
    op->err = rc;
    for (size_t i = 0; i < op->nreqs; i++)
      httpc_cancel(op->reqs[i]);
  }
  if (op->left == 1) {
    uv_idle_t *h = xcalloc(1, sizeof(*h));
    uv_idle_init(op->pc->loop, h);
    h->data = op;
    uv_idle_start(h, defer_run);
    return 0;
  }
  op->left--;
  return 0;
}

static json_t *vec_json(const float *v, int dim) {
  json_t *a = json_array();
  for (int i = 0; i < dim; i++)
    json_array_append_new(a, json_real((double)v[i]));
  return a;
}

int mem_pinecone_new(uv_loop_t *loop, struct httpc *http, const struct mem_pinecone_config *cfg,
                     struct mem_pinecone **out) {
  *out = NULL;
  if (loop == NULL || http == NULL || cfg == NULL || cfg->host == NULL ||
      cfg->api_key == NULL || cfg->api_key[0] == 0)
    return EG_EINVAL;
  struct mem_pinecone *pc = xcalloc(1, sizeof(*pc));
  pc->loop = loop;
  pc->http = http;
  if (strncmp(cfg->host, "http://", 7) == 0 || strncmp(cfg->host, "https://", 8) == 0)
    pc->host = xstrdup(cfg->host);
  else {
    size_t n = strlen(cfg->host) + 9;
    pc->host = xmalloc(n);
    snprintf(pc->host, n, "https://%s", cfg->host);
  }
  size_t hl = strlen(pc->host);
  while (hl > 0 && pc->host[hl - 1] == '/')
    pc->host[--hl] = 0;
  pc->key = xstrdup(cfg->api_key);
  pc->ns = xstrdup(cfg->name_space ? cfg->name_space : "");
  pc->max_tries = cfg->max_tries > 0 ? cfg->max_tries : 4;
  pc->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 15000;
  *out = pc;
  return 0;
}

void mem_pinecone_free(struct mem_pinecone *pc) {
  if (pc == NULL)
    return;
  /* Cancelled requests report EG_ECANCELED to their callers through on_done, which needs
     pc->ops only for unlinking; the ops do not touch pc otherwise. */
  for (struct pc_op *op = pc->ops; op; op = op->next)
    for (size_t i = 0; i < op->nreqs; i++)
      httpc_cancel(op->reqs[i]);
  /* Ops still in flight keep a pointer to pc: they unlink from it. Keep pc alive by
     detaching them first. */
  struct pc_op *op = pc->ops;
  while (op) {
    struct pc_op *next = op->next;
    op->pc = NULL;
    op->next = op->prev = NULL;
    op = next;
  }
  pc->ops = NULL;
  free(pc->host);
  free(pc->key);
  free(pc->ns);
  free(pc);
}

int mem_pinecone_upsert(struct mem_pinecone *pc, const char *model,
                        const struct mem_pc_record *recs, size_t n, int dim, mem_pc_done_cb cb,
                        void *ud) {
  if (pc == NULL || model == NULL || recs == NULL || n == 0 || dim <= 0 || cb == NULL)
    return EG_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!valid_hex_id(recs[i].id) || recs[i].user == NULL || recs[i].vec == NULL)
      return EG_EINVAL;
  struct pc_op *op = op_new(pc, 0, ud);
  op->done = cb;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i += UPSERT_BATCH) {
    json_t *vs = json_array();
    for (size_t j = i; j < n && j < i + UPSERT_BATCH; j++) {
      const struct mem_pc_record *r = &recs[j];
      json_t *md = json_pack("{s:s, s:s, s:s, s:s, s:I}", "user", r->user, "chat",
                             r->chat ? r->chat : "", "text", r->text ? r->text : "", "model",
                             model, "createdAt", (json_int_t)r->created_at);
      if (md == NULL) {
        rc = EG_EINVAL;
        break;
      }
      json_array_append_new(vs, json_pack("{s:s, s:o, s:o}", "id", r->id, "values",
                                          vec_json(r->vec, dim), "metadata", md));
    }
    if (rc != 0) {
      json_decref(vs);
      break;
    }
    rc = send_req(pc, op, "/vectors/upsert",
                  json_pack("{s:o, s:s}", "vectors", vs, "namespace", pc->ns));
  }
  return op_launched(op, rc);
}

int mem_pinecone_query(struct mem_pinecone *pc, const char *user, const char *model,
                       const float *vec, int dim, size_t top_k, mem_pc_query_cb cb, void *ud) {
  if (pc == NULL || user == NULL || model == NULL || vec == NULL || dim <= 0 || top_k < 1 ||
      top_k > 10000 || cb == NULL || strlen(user) >= 256 || strlen(model) >= MEM_MODEL_MAX)
    return EG_EINVAL;
  struct pc_op *op = op_new(pc, 1, ud);
  op->qcb = cb;
  snprintf(op->user, sizeof(op->user), "%s", user);
  snprintf(op->model, sizeof(op->model), "%s", model);
  json_t *filter = json_pack("{s:[{s:{s:s}}, {s:{s:s}}]}", "$and", "user", "$eq", user, "model",
                             "$eq", model);
  json_t *body = json_pack("{s:s, s:o, s:I, s:o, s:b, s:b}", "namespace", pc->ns, "vector",
                           vec_json(vec, dim), "topK", (json_int_t)top_k, "filter", filter,
                           "includeMetadata", 1, "includeValues", 0);
  int rc = body ? send_req(pc, op, "/query", body) : EG_EINVAL;
  return op_launched(op, rc);
}

int mem_pinecone_delete(struct mem_pinecone *pc, const char *const *ids, size_t n,
                        mem_pc_done_cb cb, void *ud) {
  if (pc == NULL || ids == NULL || n == 0 || cb == NULL)
    return EG_EINVAL;
  struct pc_op *op = op_new(pc, 0, ud);
  op->done = cb;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i += DELETE_BATCH) {
    json_t *a = json_array();
    for (size_t j = i; j < n && j < i + DELETE_BATCH; j++)
      if (ids[j] != NULL)
        json_array_append_new(a, json_string(ids[j]));
    rc = send_req(pc, op, "/vectors/delete",
                  json_pack("{s:o, s:s}", "ids", a, "namespace", pc->ns));
  }
  return op_launched(op, rc);
}

int mem_pinecone_delete_user(struct mem_pinecone *pc, const char *user, mem_pc_done_cb cb,
                             void *ud) {
  if (pc == NULL || user == NULL || user[0] == 0 || cb == NULL)
    return EG_EINVAL;
  struct pc_op *op = op_new(pc, 0, ud);
  op->done = cb;
  json_t *body =
      json_pack("{s:{s:{s:s}}, s:s}", "filter", "user", "$eq", user, "namespace", pc->ns);
  int rc = body ? send_req(pc, op, "/vectors/delete", body) : EG_EINVAL;
  return op_launched(op, rc);
}
