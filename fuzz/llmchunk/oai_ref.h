/* The reference for llm__openai_chunk_fast: what openai_event (src/llm/openai.c) and
   remote.c's checks before it do with the jansson tree of the same text, as steps.
   Returns 0 with the steps, 1 when the fast path must not handle it (not an object, an
   "error" that remote.c reports, "object":"error", a usage object), -1 when jansson
   rejects the text. Shared by fuzz_llmchunk and tests/unit/llm. */
#ifndef ENGRAM_FUZZ_OAI_REF_H
#define ENGRAM_FUZZ_OAI_REF_H

#include <string.h>

#include <jansson.h>

#include "llm/llm_int.h"

static int oai_ref_step(struct buf *sb, struct llm__oai_chunk *out, bool finish, const char *t,
                        size_t len) {
  if (out->n >= LLM_OAI_STEPS)
    return 1;
  size_t off = sb->len;
  if (buf_append(sb, t, len) != 0 || buf_append_byte(sb, 0) != 0)
    return 1;
  out->step[out->n++] = (struct llm__oai_step){finish, off, len};
  return 0;
}

static int oai_ref(const char *p, size_t n, struct buf *sb, struct llm__oai_chunk *out) {
  out->n = 0;
  json_t *j = json_loadb(p, n, 0, NULL);
  if (j == NULL)
    return -1;
  int rc = 0;
  const char *kind = json_string_value(json_object_get(j, "object"));
  if (!json_is_object(j) ||
      (json_object_get(j, "error") != NULL && !json_is_null(json_object_get(j, "error"))) ||
      (kind != NULL && strcmp(kind, "error") == 0) ||
      json_is_object(json_object_get(j, "usage")))
    rc = 1;
  json_t *choices = json_object_get(j, "choices");
  size_t i;
  json_t *ch;
  json_array_foreach(choices, i, ch) {
    if (rc != 0)
      break;
    json_t *idx = json_object_get(ch, "index");
    if (json_is_integer(idx) && json_integer_value(idx) != 0)
      continue;
    json_t *delta = json_object_get(ch, "delta");
    if (!json_is_object(delta))
      delta = json_object_get(ch, "message");
    json_t *c = json_object_get(delta, "content");
    if (json_is_string(c))
      rc = oai_ref_step(sb, out, false, json_string_value(c), json_string_length(c));
    json_t *ref = json_object_get(delta, "refusal");
    if (rc == 0 && json_is_string(ref))
      rc = oai_ref_step(sb, out, false, json_string_value(ref), json_string_length(ref));
    const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
    if (rc == 0 && fr != NULL && *fr)
      rc = oai_ref_step(sb, out, true, fr, strlen(fr));
  }
  json_decref(j);
  return rc;
}

#endif
