/*
 * app: configuration, wiring and the engram program. The only module that knows every
 * other one; nothing includes app.h except main.c and the app's own files.
 */
#ifndef ENGRAM_APP_H
#define ENGRAM_APP_H

const char *engram_version(void);

#endif
