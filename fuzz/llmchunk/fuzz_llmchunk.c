/* libFuzzer target: llm__openai_chunk_fast (the OpenAI chunk read without jansson),
   differentially against jansson and the logic of openai_event (oai_ref.h): whatever the
   fast path reads, jansson must parse, and the steps (texts to emit, finish reasons) must
   be the same, byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oai_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct buf a, b;
  buf_init(&a, size + 64);
  buf_init(&b, 1u << 24);
  struct llm__oai_chunk fa, fb;
  int fast = llm__openai_chunk_fast((const char *)data, size, &a, &fa);
  if (fast != 0 && fast != LLM_EVENT_FALLBACK)
    abort();
  if (fast == 0) {
    int ref = oai_ref((const char *)data, size, &b, &fb);
    if (ref != 0 || fa.n != fb.n)
      abort();
    for (size_t i = 0; i < fa.n; i++) {
      if (fa.step[i].finish != fb.step[i].finish || fa.step[i].len != fb.step[i].len ||
          memcmp(a.data + fa.step[i].off, b.data + fb.step[i].off, fa.step[i].len) != 0 ||
          a.data[fa.step[i].off + fa.step[i].len] != 0)
        abort();
    }
  }
  buf_free(&a);
  buf_free(&b);
  return 0;
}
