/*
 * Remote embedders over httpc (libcurl multi on the loop): `gemini` (embedContent for one
 * text, batchEmbedContents for more, at most 100 per request, taskType RETRIEVAL_DOCUMENT /
 * RETRIEVAL_QUERY, outputDimensionality) and `openai` (POST {base}/embeddings, any
 * OpenAI-compatible server, results ordered by their `index`). A batch of texts is split
 * into requests of at most cfg->batch texts, sent concurrently; the callback runs once all
 * answered, with every vector L2-normalised, or with the first error. Retries on 408, 429
 * and 5xx honouring Retry-After are httpc's. Empty texts are not sent: their vector is the
 * zero vector (as with `hash`).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc/httpc.h"
#include "memory/memory.h"

enum dialect { D_GEMINI, D_OPENAI };

struct remote {
  struct mem_embedder base;
  struct httpc *http;
  enum dialect dialect;
  char *base_url; /* without trailing '/' */
  char *api_key;  /* may be NULL */
  char *model_name;
  size_t batch;
  int max_tries;
  uint32_t timeout_ms;
  size_t pending; /* jobs in flight */
  bool destroyed;
  struct part *parts; /* requests in flight (for cancel on destroy) */
};

struct job {
  struct remote *rm;
  mem_embed_cb cb;
  void *ud;
  size_t n;
  float *vecs; /* n * dim, zero for empty texts */
  size_t parts_left;
  int err;
};

struct part {
  struct part *next, *prev;
  struct job *job;
  struct httpc_req *req;
  size_t *rows; /* which job rows this request answers, in request order */
  size_t count;
};

static void part_unlink(struct remote *rm, struct part *p) {
  if (p->prev)
    p->prev->next = p->next;
  else
    rm->parts = p->next;
  if (p->next)
    p->next->prev = p->prev;
}

static void remote_free(struct remote *rm) {
  free(rm->base_url);
  free(rm->api_key);
  free(rm->model_name);
  free(rm);
}

static void job_finish(struct job *j) {
  struct remote *rm = j->rm;
  if (j->err == 0 && rm->destroyed)
    j->err = EG_ECANCELED;
  if (j->err != 0)
    j->cb(j->ud, j->err, NULL, 0, rm->base.dim);
  else
    j->cb(j->ud, 0, j->vecs, j->n, rm->base.dim);
  free(j->vecs);
  free(j);
  if (--rm->pending == 0 && rm->destroyed)
    remote_free(rm);
}

/* Copies a JSON array of numbers into out[dim], normalised. */
static int take_vector(json_t *arr, int dim, float *out) {
  if (!json_is_array(arr) || json_array_size(arr) != (size_t)dim)
    return EG_EUPSTREAM;
  double norm = 0;
  for (int i = 0; i < dim; i++) {
    json_t *x = json_array_get(arr, (size_t)i);
    if (!json_is_number(x))
      return EG_EUPSTREAM;
    double v = json_number_value(x);
    if (!isfinite(v))
      return EG_EUPSTREAM;
    out[i] = (float)v;
    norm += v * v;
  }
  if (norm > 0) {
    float inv = (float)(1.0 / sqrt(norm));
    for (int i = 0; i < dim; i++)
      out[i] *= inv;
  }
  return 0;
}

static int parse_response(struct part *p, struct slice body) {
  struct job *j = p->job;
  int dim = j->rm->base.dim;
  json_error_t jerr;
  json_t *root = json_loadb(body.p, body.len, 0, &jerr);
  if (root == NULL)
    return EG_EUPSTREAM;
  int rc = 0;
  if (j->rm->dialect == D_GEMINI) {
    json_t *one = json_object_get(root, "embedding");
    json_t *many = json_object_get(root, "embeddings");
    if (p->count == 1 && one != NULL) {
      rc = take_vector(json_object_get(one, "values"), dim, j->vecs + p->rows[0] * (size_t)dim);
    } else if (json_is_array(many) && json_array_size(many) == p->count) {
      for (size_t i = 0; i < p->count && rc == 0; i++)
        rc = take_vector(json_object_get(json_array_get(many, i), "values"), dim,
                         j->vecs + p->rows[i] * (size_t)dim);
    } else {
      rc = EG_EUPSTREAM;
    }
  } else {
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data) || json_array_size(data) != p->count) {
      rc = EG_EUPSTREAM;
    } else {
      bool *seen = xcalloc(p->count, sizeof(bool));
      for (size_t i = 0; i < p->count && rc == 0; i++) {
        json_t *e = json_array_get(data, i);
        json_t *ix = json_object_get(e, "index");
        size_t k = json_is_integer(ix) ? (size_t)json_integer_value(ix) : i;
        if (k >= p->count || seen[k]) {
          rc = EG_EUPSTREAM;
          break;
        }
        seen[k] = true;
        rc = take_vector(json_object_get(e, "embedding"), dim,
                         j->vecs + p->rows[k] * (size_t)dim);
      }
      free(seen);
    }
  }
  json_decref(root);
  return rc;
}

static void on_done(void *ud, int err, const struct httpc_response *resp) {
  struct part *p = ud;
  struct job *j = p->job;
  struct remote *rm = j->rm;
  if (err == 0) {
    err = parse_response(p, resp->body);
    if (err != 0)
      log_warn("memory: %s embedder: unexpected response (status %d, %zu bytes)", rm->base.name,
               resp->status, resp->body.len);
  } else if (err != EG_ECANCELED) {
    log_warn("memory: %s embedder: %s (status %d, %d attempts%s%s)", rm->base.name,
             eg_errname(err), resp->status, resp->attempts, resp->error[0] ? ": " : "",
             resp->error);
  }
  if (err != 0 && j->err == 0)
    j->err = err;
  part_unlink(rm, p);
  free(p->rows);
  free(p);
  if (--j->parts_left == 0)
    job_finish(j);
}

static char *build_body(struct remote *rm, const char *const *texts, const size_t *lens,
                        const size_t *rows, size_t count, enum mem_task task) {
  json_t *root;
  if (rm->dialect == D_GEMINI) {
    char model[256];
    snprintf(model, sizeof(model), "models/%s", rm->model_name);
    const char *tt = task == MEM_TASK_QUERY ? "RETRIEVAL_QUERY" : "RETRIEVAL_DOCUMENT";
    json_t *reqs = json_array();
    for (size_t i = 0; i < count; i++) {
      json_t *r = json_pack("{s:s, s:{s:[{s:s%}]}, s:s, s:i}", "model", model, "content",
                            "parts", "text", texts[rows[i]], lens[rows[i]], "taskType", tt,
                            "outputDimensionality", rm->base.dim);
      if (r == NULL) {
        json_decref(reqs);
        return NULL;
      }
      json_array_append_new(reqs, r);
    }
    if (count == 1) {
      root = json_incref(json_array_get(reqs, 0));
      json_decref(reqs);
    } else {
      root = json_pack("{s:o}", "requests", reqs);
    }
  } else {
    json_t *input = json_array();
    for (size_t i = 0; i < count; i++) {
      json_t *t = json_stringn(texts[rows[i]], lens[rows[i]]);
      if (t == NULL) {
        json_decref(input);
        return NULL;
      }
      json_array_append_new(input, t);
    }
    root = json_pack("{s:s, s:o, s:s}", "model", rm->model_name, "input", input,
                     "encoding_format", "float");
    if (strncmp(rm->model_name, "text-embedding-3", 16) == 0)
      json_object_set_new(root, "dimensions", json_integer(rm->base.dim));
  }
  char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  return s;
}

static int start_part(struct remote *rm, struct job *j, const char *const *texts,
                      const size_t *lens, size_t *rows, size_t count, enum mem_task task) {
  char *body = build_body(rm, texts, lens, rows, count, task);
  if (body == NULL) {
    free(rows);
    return EG_EINVAL; /* invalid UTF-8 in a text */
  }
  char url[1024];
  if (rm->dialect == D_GEMINI)
    snprintf(url, sizeof(url), "%s/v1beta/models/%s:%s", rm->base_url, rm->model_name,
             count == 1 ? "embedContent" : "batchEmbedContents");
  else
    snprintf(url, sizeof(url), "%s/embeddings", rm->base_url);
  char auth[600];
  struct httpc_header hdr[2] = {{"Content-Type", "application/json"}};
  size_t nh = 1;
  if (rm->api_key != NULL && rm->api_key[0] != 0) {
    if (rm->dialect == D_GEMINI) {
      hdr[nh++] = (struct httpc_header){"x-goog-api-key", rm->api_key};
    } else {
      snprintf(auth, sizeof(auth), "Bearer %s", rm->api_key);
      hdr[nh++] = (struct httpc_header){"Authorization", auth};
    }
  }
  struct part *p = xcalloc(1, sizeof(*p));
  p->job = j;
  p->rows = rows;
  p->count = count;
  struct httpc_request r = {
      .method = "POST",
      .url = url,
      .headers = hdr,
      .n_headers = nh,
      .body = body,
      .body_len = strlen(body),
      .timeouts = {.connect_ms = 10000,
                   .first_byte_ms = rm->timeout_ms,
                   .total_ms = rm->timeout_ms * (uint32_t)rm->max_tries},
      .retry = {.max_tries = rm->max_tries, .base_ms = 500, .max_ms = 8000},
      .max_body = 64u << 20,
      .on_done = on_done,
      .ud = p,
  };
  int rc = httpc_start(rm->http, &r, &p->req);
  free(body);
  if (rc != 0) {
    free(p->rows);
    free(p);
    return rc;
  }
  p->next = rm->parts;
  if (rm->parts)
    rm->parts->prev = p;
  rm->parts = p;
  j->parts_left++;
  return 0;
}

/* An already-finished job still reports on a later loop turn, never inside mem_embed. */
struct deferred {
  uv_idle_t idle;
  struct job *job;
};

static void deferred_close(uv_handle_t *h) {
  free(h->data);
}

static void deferred_run(uv_idle_t *h) {
  struct deferred *d = h->data;
  uv_idle_stop(h);
  job_finish(d->job);
  uv_close((uv_handle_t *)h, deferred_close);
}

static int remote_embed(struct mem_embedder *e, const char *const *texts, const size_t *lens,
                        size_t n, enum mem_task task, mem_embed_cb cb, void *ud) {
  struct remote *rm = (struct remote *)e;
  if (n == 0 || texts == NULL || lens == NULL || rm->destroyed)
    return EG_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (texts[i] == NULL)
      return EG_EINVAL;
  struct job *j = xcalloc(1, sizeof(*j));
  j->rm = rm;
  j->cb = cb;
  j->ud = ud;
  j->n = n;
  j->vecs = xcalloc(n * (size_t)e->dim, sizeof(float));
  rm->pending++;
  size_t *lens2 = xmalloc(n * sizeof(size_t));
  for (size_t i = 0; i < n; i++)
    lens2[i] = EG_MIN(lens[i], (size_t)MEM_EMBED_MAX_TEXT);
  size_t i = 0;
  int rc = 0;
  while (i < n && rc == 0) {
    size_t *rows = xmalloc(rm->batch * sizeof(size_t));
    size_t count = 0;
    for (; i < n && count < rm->batch; i++)
      if (lens2[i] > 0)
        rows[count++] = i;
    if (count == 0) {
      free(rows);
      break;
    }
    rc = start_part(rm, j, texts, lens2, rows, count, task);
  }
  free(lens2);
  if (rc != 0) {
    j->err = rc;
    if (j->parts_left > 0) {
      /* Parts already started: cancel them; the last one's on_done reports the error. */
      for (struct part *p = rm->parts; p; p = p->next)
        if (p->job == j)
          httpc_cancel(p->req);
      return 0;
    }
    free(j->vecs);
    free(j);
    rm->pending--;
    return rc;
  }
  if (j->parts_left == 0) {
    struct deferred *d = xcalloc(1, sizeof(*d));
    d->job = j;
    uv_idle_init(e->loop, &d->idle);
    d->idle.data = d;
    uv_idle_start(&d->idle, deferred_run);
  }
  return 0;
}

static void remote_destroy(struct mem_embedder *e) {
  struct remote *rm = (struct remote *)e;
  rm->destroyed = true;
  for (struct part *p = rm->parts; p; p = p->next)
    httpc_cancel(p->req);
  if (rm->pending == 0)
    remote_free(rm);
}

static const struct mem_embedder_ops remote_ops = {remote_embed, remote_destroy};

int mem_embedder_remote_new(uv_loop_t *loop, struct httpc *http,
                            const struct mem_remote_config *cfg, struct mem_embedder **out) {
  *out = NULL;
  if (loop == NULL || http == NULL || cfg == NULL || cfg->kind == NULL)
    return EG_EINVAL;
  enum dialect d;
  if (strcmp(cfg->kind, "gemini") == 0)
    d = D_GEMINI;
  else if (strcmp(cfg->kind, "openai") == 0)
    d = D_OPENAI;
  else
    return EG_EINVAL;
  const char *base = cfg->base_url;
  if (base == NULL || base[0] == 0)
    base = d == D_GEMINI ? "https://generativelanguage.googleapis.com"
                         : "https://api.openai.com/v1";
  if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
    return EG_EINVAL;
  const char *model = cfg->model;
  if (model == NULL || model[0] == 0)
    model = d == D_GEMINI ? "gemini-embedding-001" : "text-embedding-3-small";
  if (strlen(model) > 200 || strlen(base) > 600)
    return EG_EINVAL;
  int dim = cfg->dim > 0 ? cfg->dim : MEM_DIM;
  struct remote *rm = xcalloc(1, sizeof(*rm));
  rm->base.ops = &remote_ops;
  rm->base.loop = loop;
  rm->base.dim = dim;
  snprintf(rm->base.name, sizeof(rm->base.name), "%s", cfg->kind);
  snprintf(rm->base.model, sizeof(rm->base.model), "%s:%s/%d", cfg->kind, model, dim);
  rm->http = http;
  rm->dialect = d;
  rm->base_url = xstrdup(base);
  size_t bl = strlen(rm->base_url);
  while (bl > 0 && rm->base_url[bl - 1] == '/')
    rm->base_url[--bl] = 0;
  rm->api_key = cfg->api_key ? xstrdup(cfg->api_key) : NULL;
  rm->model_name = xstrdup(model);
  size_t maxb = d == D_GEMINI ? 100 : 2048;
  rm->batch = cfg->batch > 0 ? EG_MIN(cfg->batch, maxb) : (d == D_GEMINI ? 100 : 256);
  rm->max_tries = cfg->max_tries > 0 ? cfg->max_tries : 4;
  rm->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
  *out = &rm->base;
  return 0;
}
