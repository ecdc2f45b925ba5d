/*
 * sqlite_walbuf.c: a SQLite VFS over the "unix" one that writes each commit's WAL frames
 * with a few large pwrites.
 *
 * Why. SQLite writes every WAL frame with two pwrite()s (the 24-byte frame header, then
 * the page: wal.c walWriteOneFrame -> walWriteToLog twice). A group-commit batch of the
 * store writer dirties ~150 pages, so ~300 system calls per commit, each paying the
 * syscall entry, ext4's buffered-write path and page-cache lookup for the same few pages.
 * This VFS collects the frames of a transaction in a buffer and hands them to the kernel
 * when the commit frame is complete, in writes of 124 KiB (the most the unix VFS's xWrite
 * takes at once): ~5 system calls for a batch instead of ~300.
 *
 * What it wraps. Only the main database files and their -wal files opened through it (the
 * store's two writer connections: sqlite.c); every other file (temp files, journals) is
 * opened by the unix VFS straight into the caller's sqlite3_file. A database file is
 * forwarded as is, except that releasing the WAL write lock (xShmLock on slot 0, which
 * wal.c calls on the database file) first flushes its WAL's buffer (see below). A -wal
 * file buffers appends.
 *
 * Ordering rules (why readers and the syncer never miss a committed byte). In
 * sqlite3WalFrames, SQLite writes all frames of a transaction, the commit frame last (the
 * only one whose header's bytes 4-7, "database size after commit", are non-zero; with
 * synchronous=FULL and no powersafe overwrite, padding copies of it follow and an xSync),
 * and only then appends the frames to the wal-index (shm) and publishes the new mxFrame in
 * its header, which is where readers on other connections learn that the frames exist.
 * So:
 *   - Appends are buffered: a write at the offset where the last buffered write ended or
 *     where the last commit frame ended (the next transaction's first frame), or the WAL
 *     header (32 bytes at offset 0, written when the WAL restarts).
 *   - The write that completes a commit frame (the page after a frame header with a
 *     non-zero commit size) flushes the buffer before it returns: every byte of the commit
 *     is in the file before SQLite touches the wal-index, and before COMMIT returns (the
 *     store's syncer then fdatasyncs the file: store.h "Durability").
 *   - Any other write flushes the buffer first, then goes straight to the file: in-place
 *     rewrites of a frame of the current transaction (a page written again after a cache
 *     spill), walRewriteChecksums' header rewrites after the commit frame (all behind the
 *     commit frame's end), the frames after a rolled-back transaction until they reach
 *     where the buffered ones had ended.
 *   - xRead, xSync, xTruncate, xFileSize, xFileControl, xLock, xUnlock,
 *     xCheckReservedLock and xClose on the -wal file flush first, and so does releasing
 *     the WAL write lock on the database file: what a rolled-back transaction had spilled
 *     is written where plain SQLite would have written it, while the lock is still held,
 *     and never later over frames another connection wrote since.
 *   - The buffer is flushed whenever it would exceed WB_BUF_MAX (large transactions: a
 *     migration, a keyword-index rebuild).
 * The file is therefore byte for byte what the unix VFS would write, with the same bytes
 * in the file at every point where SQLite or another connection can look
 * (tests/unit/store/test_walbuf.c checks the bytes, readers, a crash and a random mix).
 *
 * Assumes the wal-index in shared memory (locking_mode=NORMAL, as the store runs): in
 * EXCLUSIVE locking mode no xShmLock reaches the database file, but the store never uses
 * it.
 *
 * Failure: a failed flush returns its error from the call that flushed (SQLite then fails
 * the statement or the commit) and drops the buffer (frames of a transaction that cannot
 * commit). Threads: like the unix VFS, a file is used by one connection at a time; the
 * counters are atomics.
 */
#include "store/store_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define WB_VFS_NAME "engram-walbuf"
#define WB_BUF_MIN (256 * 1024)
#define WB_BUF_MAX (4 * 1024 * 1024)
/* The most one xWrite of the unix VFS takes: its seekAndWrite keeps the low 17 bits of
   the length (SQLite itself never writes more than 128 KiB at once), so a flush goes in
   writes of 124 KiB (30 frames of 4 KiB pages). */
#define WB_WRITE_MAX ((size_t)0x1f000)
#define WB_WAL_HDR 32   /* WAL_HDRSIZE in wal.c */
#define WB_FRAME_HDR 24 /* WAL_FRAME_HDRSIZE */

struct wb_file {
  sqlite3_file base;   /* pMethods: wb_db_io or wb_wal_io */
  sqlite3_file *real;  /* the unix VFS's file, right after this struct */
  struct wb_file *wal; /* database file: its -wal file while open (NULL otherwise) */
  struct wb_file *db;  /* -wal file: its database file (NULL if not ours) */
  /* -wal file only */
  unsigned char *buf;
  size_t len, cap;
  sqlite3_int64 off;  /* file offset of buf[0] */
  sqlite3_int64 tail; /* after the last append buffered or commit frame written; -1: none */
  sqlite3_int64 commit_page; /* where the page of the commit frame just begun goes; -1 */
};

/* Process state of the VFS (registered once). */
static struct {
  pthread_once_t once;
  sqlite3_vfs vfs;
  sqlite3_vfs *real;
  bool ok;
  atomic_ullong writes, pwrites, flushes, commits;
} wb = {.once = PTHREAD_ONCE_INIT};

static sqlite3_file *REAL(sqlite3_file *f) {
  return ((struct wb_file *)f)->real;
}

/* ---- the -wal file ------------------------------------------------------------------- */

static int wb_flush(struct wb_file *w) {
  if (w->len == 0)
    return SQLITE_OK;
  int rc = SQLITE_OK;
  for (size_t done = 0; done < w->len && rc == SQLITE_OK; done += WB_WRITE_MAX) {
    size_t n = w->len - done < WB_WRITE_MAX ? w->len - done : WB_WRITE_MAX;
    rc =
        w->real->pMethods->xWrite(w->real, w->buf + done, (int)n, w->off + (sqlite3_int64)done);
    atomic_fetch_add_explicit(&wb.pwrites, 1, memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&wb.flushes, 1, memory_order_relaxed);
  w->len = 0;
  return rc;
}

static void wb_append(struct wb_file *w, const void *p, size_t n, sqlite3_int64 off) {
  if (w->len == 0)
    w->off = off;
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : WB_BUF_MIN;
    while (cap < w->len + n)
      cap *= 2;
    w->buf = xrealloc(w->buf, cap);
    w->cap = cap;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static int wb_wal_write(sqlite3_file *f, const void *p, int amt, sqlite3_int64 off) {
  struct wb_file *w = (struct wb_file *)f;
  size_t n = (size_t)amt;
  int rc = SQLITE_OK;
  atomic_fetch_add_explicit(&wb.writes, 1, memory_order_relaxed);
  /* An append (at the end of what was buffered last, or the header of a restarted WAL) is
     buffered; the buffer is flushed first when it would grow past WB_BUF_MAX. Any other
     write flushes the buffer, then goes to the file. */
  bool append = (off == w->tail || (off == 0 && n == WB_WAL_HDR)) && n <= WB_BUF_MAX;
  bool contiguous = w->len > 0 && off == w->off + (sqlite3_int64)w->len;
  if (w->len > 0 && (!contiguous || w->len + n > WB_BUF_MAX))
    rc = wb_flush(w);
  if (rc != SQLITE_OK)
    return rc;
  if (append) {
    wb_append(w, p, n, off);
    w->tail = off + amt;
  } else {
    rc = w->real->pMethods->xWrite(w->real, p, amt, off);
    atomic_fetch_add_explicit(&wb.pwrites, 1, memory_order_relaxed);
    if (rc != SQLITE_OK)
      return rc;
  }
  if (n == WB_FRAME_HDR) {
    const unsigned char *h = p;
    w->commit_page = (h[4] | h[5] | h[6] | h[7]) != 0 ? off + WB_FRAME_HDR : -1;
  } else if (off == w->commit_page) {
    /* The commit frame's page: everything of the transaction goes to the file now, and the
       next transaction's frames follow it. */
    w->commit_page = -1;
    w->tail = off + amt;
    atomic_fetch_add_explicit(&wb.commits, 1, memory_order_relaxed);
    rc = wb_flush(w);
  }
  return rc;
}

static int wb_wal_close(sqlite3_file *f) {
  struct wb_file *w = (struct wb_file *)f;
  int rc = wb_flush(w);
  if (w->db)
    w->db->wal = NULL;
  int rc2 = w->real->pMethods->xClose(w->real);
  free(w->buf);
  w->buf = NULL;
  w->cap = 0;
  return rc != SQLITE_OK ? rc : rc2;
}

static int wb_wal_read(sqlite3_file *f, void *p, int amt, sqlite3_int64 off) {
  int rc = wb_flush((struct wb_file *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xRead(REAL(f), p, amt, off);
}

static int wb_wal_truncate(sqlite3_file *f, sqlite3_int64 size) {
  struct wb_file *w = (struct wb_file *)f;
  int rc = wb_flush(w);
  w->tail = -1;
  w->commit_page = -1;
  return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int wb_wal_sync(sqlite3_file *f, int flags) {
  int rc = wb_flush((struct wb_file *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int wb_wal_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  int rc = wb_flush((struct wb_file *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int wb_wal_lock(sqlite3_file *f, int lock) {
  int rc = wb_flush((struct wb_file *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int wb_wal_unlock(sqlite3_file *f, int lock) {
  int rc = wb_flush((struct wb_file *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int wb_wal_check_reserved(sqlite3_file *f, int *out) {
  int rc = wb_flush((struct wb_file *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int wb_wal_file_control(sqlite3_file *f, int op, void *arg) {
  int rc = wb_flush((struct wb_file *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

/* ---- forwarded as is (the database file; queries on the -wal file) -------------------- */

static int wb_close(sqlite3_file *f) {
  struct wb_file *d = (struct wb_file *)f;
  if (d->wal) /* SQLite closes the WAL first; in case it did not, never leave a dangling link */
    d->wal->db = NULL;
  return d->real->pMethods->xClose(d->real);
}

static int wb_read(sqlite3_file *f, void *p, int amt, sqlite3_int64 off) {
  return REAL(f)->pMethods->xRead(REAL(f), p, amt, off);
}

static int wb_write(sqlite3_file *f, const void *p, int amt, sqlite3_int64 off) {
  return REAL(f)->pMethods->xWrite(REAL(f), p, amt, off);
}

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size) {
  return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int wb_sync(sqlite3_file *f, int flags) {
  return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int wb_lock(sqlite3_file *f, int lock) {
  return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int wb_unlock(sqlite3_file *f, int lock) {
  return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int wb_check_reserved(sqlite3_file *f, int *out) {
  return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int wb_file_control(sqlite3_file *f, int op, void *arg) {
  return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int wb_sector_size(sqlite3_file *f) {
  return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int wb_device_characteristics(sqlite3_file *f) {
  return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int wb_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp) {
  return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

/* Slot 0 of the shm locks is wal.c's WAL_WRITE_LOCK: before it is released, the WAL's
   buffer (frames of a transaction that did not commit) goes where SQLite wrote it. */
static int wb_shm_lock(sqlite3_file *f, int ofst, int n, int flags) {
  struct wb_file *d = (struct wb_file *)f;
  if ((flags & SQLITE_SHM_UNLOCK) && ofst == 0 && n >= 1 && d->wal)
    (void)wb_flush(d->wal); /* an unlock cannot fail: the frames are not committed */
  return d->real->pMethods->xShmLock(d->real, ofst, n, flags);
}

static void wb_shm_barrier(sqlite3_file *f) {
  REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int wb_shm_unmap(sqlite3_file *f, int del) {
  return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp) {
  if (REAL(f)->pMethods->iVersion < 3) {
    *pp = NULL;
    return SQLITE_OK;
  }
  return REAL(f)->pMethods->xFetch(REAL(f), off, amt, pp);
}

static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
  if (REAL(f)->pMethods->iVersion < 3)
    return SQLITE_OK;
  return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods wb_db_io = {
    .iVersion = 3,
    .xClose = wb_close,
    .xRead = wb_read,
    .xWrite = wb_write,
    .xTruncate = wb_truncate,
    .xSync = wb_sync,
    .xFileSize = wb_file_size,
    .xLock = wb_lock,
    .xUnlock = wb_unlock,
    .xCheckReservedLock = wb_check_reserved,
    .xFileControl = wb_file_control,
    .xSectorSize = wb_sector_size,
    .xDeviceCharacteristics = wb_device_characteristics,
    .xShmMap = wb_shm_map,
    .xShmLock = wb_shm_lock,
    .xShmBarrier = wb_shm_barrier,
    .xShmUnmap = wb_shm_unmap,
    .xFetch = wb_fetch,
    .xUnfetch = wb_unfetch,
};

static const sqlite3_io_methods wb_wal_io = {
    .iVersion = 3,
    .xClose = wb_wal_close,
    .xRead = wb_wal_read,
    .xWrite = wb_wal_write,
    .xTruncate = wb_wal_truncate,
    .xSync = wb_wal_sync,
    .xFileSize = wb_wal_file_size,
    .xLock = wb_wal_lock,
    .xUnlock = wb_wal_unlock,
    .xCheckReservedLock = wb_wal_check_reserved,
    .xFileControl = wb_wal_file_control,
    .xSectorSize = wb_sector_size,
    .xDeviceCharacteristics = wb_device_characteristics,
    .xShmMap = wb_shm_map,
    .xShmLock = wb_shm_lock,
    .xShmBarrier = wb_shm_barrier,
    .xShmUnmap = wb_shm_unmap,
    .xFetch = wb_fetch,
    .xUnfetch = wb_unfetch,
};

/* ---- the VFS ------------------------------------------------------------------------- */

static size_t wb_head(void) { /* the wrapper, rounded up so the real file is aligned */
  return (sizeof(struct wb_file) + 15) & ~(size_t)15;
}

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
  (void)vfs;
  bool wal = (flags & SQLITE_OPEN_WAL) != 0, db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
  if (!wal && !db) /* not ours: the unix VFS's own file in the caller's space */
    return wb.real->xOpen(wb.real, name, f, flags, out);
  struct wb_file *w = (struct wb_file *)f;
  memset(w, 0, sizeof(*w));
  w->real = (sqlite3_file *)((char *)f + wb_head());
  w->tail = -1;
  w->commit_page = -1;
  int rc = wb.real->xOpen(wb.real, name, w->real, flags, out);
  if (rc != SQLITE_OK) {
    if (w->real->pMethods)
      w->real->pMethods->xClose(w->real);
    f->pMethods = NULL;
    return rc;
  }
  if (wal) {
    sqlite3_file *d = name ? sqlite3_database_file_object(name) : NULL;
    if (d && d->pMethods == &wb_db_io) {
      w->db = (struct wb_file *)d;
      w->db->wal = w;
    }
    f->pMethods = &wb_wal_io;
  } else {
    f->pMethods = &wb_db_io;
  }
  return SQLITE_OK;
}

static int wb_delete(sqlite3_vfs *v, const char *name, int sync) {
  (void)v;
  return wb.real->xDelete(wb.real, name, sync);
}

static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
  (void)v;
  return wb.real->xAccess(wb.real, name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) {
  (void)v;
  return wb.real->xFullPathname(wb.real, name, n, out);
}

static void *wb_dl_open(sqlite3_vfs *v, const char *name) {
  (void)v;
  return wb.real->xDlOpen(wb.real, name);
}

static void wb_dl_error(sqlite3_vfs *v, int n, char *msg) {
  (void)v;
  wb.real->xDlError(wb.real, n, msg);
}

static void (*wb_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void) {
  (void)v;
  return wb.real->xDlSym(wb.real, h, sym);
}

static void wb_dl_close(sqlite3_vfs *v, void *h) {
  (void)v;
  wb.real->xDlClose(wb.real, h);
}

static int wb_randomness(sqlite3_vfs *v, int n, char *out) {
  (void)v;
  return wb.real->xRandomness(wb.real, n, out);
}

static int wb_sleep(sqlite3_vfs *v, int us) {
  (void)v;
  return wb.real->xSleep(wb.real, us);
}

static int wb_current_time(sqlite3_vfs *v, double *out) {
  (void)v;
  return wb.real->xCurrentTime(wb.real, out);
}

static int wb_get_last_error(sqlite3_vfs *v, int n, char *out) {
  (void)v;
  return wb.real->xGetLastError ? wb.real->xGetLastError(wb.real, n, out) : 0;
}

static int wb_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out) {
  (void)v;
  if (wb.real->iVersion >= 2 && wb.real->xCurrentTimeInt64)
    return wb.real->xCurrentTimeInt64(wb.real, out);
  double t = 0;
  int rc = wb.real->xCurrentTime(wb.real, &t);
  *out = (sqlite3_int64)(t * 86400000.0);
  return rc;
}

static void wb_register(void) {
  wb.real = sqlite3_vfs_find("unix");
  if (!wb.real) {
    log_warn("store: no sqlite \"unix\" VFS: WAL frames are written one by one");
    return;
  }
  wb.vfs = (sqlite3_vfs){
      .iVersion = 2,
      .szOsFile = (int)(wb_head() + (size_t)wb.real->szOsFile),
      .mxPathname = wb.real->mxPathname,
      .zName = WB_VFS_NAME,
      .xOpen = wb_open,
      .xDelete = wb_delete,
      .xAccess = wb_access,
      .xFullPathname = wb_full_pathname,
      .xDlOpen = wb_dl_open,
      .xDlError = wb_dl_error,
      .xDlSym = wb_dl_sym,
      .xDlClose = wb_dl_close,
      .xRandomness = wb_randomness,
      .xSleep = wb_sleep,
      .xCurrentTime = wb_current_time,
      .xGetLastError = wb_get_last_error,
      .xCurrentTimeInt64 = wb_current_time_int64,
  };
  if (sqlite3_vfs_register(&wb.vfs, 0) != SQLITE_OK) {
    log_warn("store: cannot register the sqlite WAL-buffering VFS");
    return;
  }
  wb.ok = true;
}

const char *store__walbuf_vfs(void) {
  pthread_once(&wb.once, wb_register);
  return wb.ok ? WB_VFS_NAME : NULL;
}

void store__walbuf_stats(struct store_walbuf_stats *out) {
  out->writes = atomic_load_explicit(&wb.writes, memory_order_relaxed);
  out->pwrites = atomic_load_explicit(&wb.pwrites, memory_order_relaxed);
  out->flushes = atomic_load_explicit(&wb.flushes, memory_order_relaxed);
  out->commits = atomic_load_explicit(&wb.commits, memory_order_relaxed);
}
