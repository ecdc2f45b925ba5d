/* api internals shared between the files of src/api. */
#ifndef ENGRAM_API_INT_H
#define ENGRAM_API_INT_H

#include "api.h"

/* The dependencies given to api_new (for sio_auth.c). */
const struct api_deps *api__deps(const struct api *a);
/* The counters, writable (sio_auth.c counts handshakes and Origin refusals). */
struct api_stats *api__stats(struct api *a);

#endif
