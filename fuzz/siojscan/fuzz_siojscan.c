/* libFuzzer target: sio/jscan, the fast-path JSON validator, differentially against
   jansson: what jscan accepts jansson must accept; what jscan calls malformed (EPROTO)
   jansson must reject; and the answer must not depend on how the input is split. */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "sio/jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int whole = jscan_validate(data, size, 64);
  struct jscan j;
  jscan_init(&j, 64);
  size_t cut = size ? data[0] % (size + 1) : 0;
  int rc = jscan_feed(&j, data, cut);
  if (rc == 0)
    rc = jscan_feed(&j, data + cut, size - cut);
  if (rc == 0)
    rc = jscan_finish(&j);
  if (rc != whole)
    abort();
  if (whole == 0 || whole == EG_EPROTO) {
    json_error_t err;
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, &err);
    if (whole == 0 && !v)
      abort();
    if (whole == EG_EPROTO && v)
      abort();
    json_decref(v);
  }
  return 0;
}
