/* The version string shown by `engram --version` and in the start line. */
#include "app/app.h"

const char *engram_version(void) { return "0.1.0"; }
