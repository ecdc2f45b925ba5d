/* web internals: the generated asset table (build/web_assets.c, from cmake/webgen.c). */
#ifndef ENGRAM_WEB_INT_H
#define ENGRAM_WEB_INT_H

#include "web/web.h"

extern const struct web_asset web__assets[];
extern const size_t web__nassets;
/* " 'sha256-...'" per inline block of web/ HTML files, or "" */
extern const char web__csp_script[];
extern const char web__csp_style[];

#endif
