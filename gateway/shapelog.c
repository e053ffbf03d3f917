/*
 * gateway/shapelog.c -- the on-disk log of one shape: segments, crash recovery, cursors, retention.
 * This file: offsets; creating, opening and destroying a log; append, sync, retention, state.
 *
 * The other files: shapelog_io.c (the on-disk format: checksums, segment headers, seals,
 * meta; file helpers), shapelog_recover.c (loading a log at open, crash recovery),
 * shapelog_read.c (reading records, cursors); shapelog_int.h (what they share).
 *
 * The format is described in shapelog.h. The writes are ordered so that a crash at any
 * moment loses nothing slog_sync reported durable:
 *   - a segment is created only after the previous one is sealed and fdatasynced and the
 *     directory entry of that previous one is durable; so every segment but the last is
 *     complete and durable, and only the last can be torn;
 *   - slog_sync fdatasyncs the last segment, and fsyncs the directory when a segment was
 *     created since the last directory fsync;
 *   - open reads every record of the last segment and cuts the file at the first bad one
 *     (a torn tail), unless a later valid record's `durable` field shows that the bad one
 *     had been synced: that is damage, SLOG_ECORRUPT;
 *   - a last segment whose header is torn (crash right after its creation) is deleted: it
 *     held nothing that was synced;
 *   - retention syncs, then unlinks the oldest segments one at a time, fsyncing the
 *     directory after each, so no gap can appear and the oldest segment left names the
 *     floor exactly.
 * Sealed segments are checked at open by their header, their seal and their chaining (each
 * segment's header names the last entry of the one before); the checksums of their records
 * are checked whenever a cursor reads them. So opening costs a few small reads per sealed
 * segment plus one read of the segment being written, whatever the log's size.
 */
#include "shapelog.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "shapelog_int.h"

/* ---- offsets ---------------------------------------------------------------------------- */

int
slog_offset_cmp(SlogOffset a, SlogOffset b)
{
    if (a.start || b.start)
        return (int) !a.start - (int) !b.start;
    if (a.lsn != b.lsn)
        return a.lsn < b.lsn ? -1 : 1;
    if (a.op != b.op)
        return a.op < b.op ? -1 : 1;
    return 0;
}

char *
slog_offset_format(SlogOffset off, char *buf)
{
    if (off.start)
        snprintf(buf, SLOG_OFFSET_BUFLEN, "-1");
    else
        snprintf(buf, SLOG_OFFSET_BUFLEN, "%" PRIu64 "_%" PRIu32, off.lsn, off.op);
    return buf;
}

/* parse_decimal reads digits of text[*i..len) up to max: no empty, no leading zero, no overflow. */
static const char *
parse_decimal(const char *text, size_t len, size_t *i, uint64_t max, uint64_t *out)
{
    size_t start = *i;
    uint64_t v = 0;

    while (*i < len && text[*i] >= '0' && text[*i] <= '9')
    {
        unsigned d = (unsigned) (text[*i] - '0');

        if (v > (max - d) / 10)
            return "number out of range";
        v = v * 10 + d;
        (*i)++;
    }
    if (*i == start)
        return "digits expected";
    if (text[start] == '0' && *i - start > 1)
        return "leading zero";
    *out = v;
    return NULL;
}

int
slog_offset_parse(const char *text, size_t len, SlogOffset *out, char *err, size_t errlen)
{
    char shown[48];
    size_t i = 0, n = 0;
    uint64_t lsn = 0, op = 0;
    const char *why;

    if (text != NULL && len == 2 && text[0] == '-' && text[1] == '1')
    {
        *out = SLOG_OFFSET_START;
        return SLOG_OK;
    }
    why = text == NULL ? "no text" : parse_decimal(text, len, &i, UINT64_MAX, &lsn);
    if (why == NULL && (i >= len || text[i] != '_'))
        why = "'_' expected after the LSN";
    if (why == NULL)
    {
        i++;
        why = parse_decimal(text, len, &i, UINT32_MAX, &op);
    }
    if (why == NULL && i != len)
        why = "unexpected characters after the op";
    if (why == NULL)
    {
        out->lsn = lsn;
        out->op = (uint32_t) op;
        out->start = false;
        return SLOG_OK;
    }
    /* Show the text, printable and cut short: it comes from a client. */
    for (; text != NULL && n < len && n < sizeof(shown) - 4; n++)
        shown[n] = text[n] >= 0x20 && text[n] < 0x7f ? text[n] : '?';
    strcpy(shown + n, text != NULL && n < len ? "..." : "");
    return errbuf_fail(SLOG_EINVAL, err, errlen,
                       "offset '%s' is not \"-1\" or <lsn>_<op> in decimal (%s at character %zu)", shown, why,
                       i + 1);
}

/* ---- creating, opening and destroying a log --------------------------------------------- */

/* fsync_parent fsyncs the directory that holds dir. */
static int
fsync_parent(const char *dir)
{
    char parent[PATH_MAX];
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    while (n > 0 && dir[n - 1] != '/')
        n--;
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 0)
        strcpy(parent, ".");
    else
    {
        memcpy(parent, dir, n);
        parent[n] = '\0';
    }
    return slog_fsync_dir(parent);
}

/*
 * remove_files unlinks the log's files in dir: meta first (with meta too: the directory
 * then holds no log, even if a crash stops the rest), then meta.tmp and the segments.
 */
static int
remove_files(const char *dir, bool with_meta, char *err, size_t errlen)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *de;
    uint64_t seq;

    if (with_meta)
    {
        slog_path_in(path, dir, META_NAME);
        if (unlink(path) < 0 && errno != ENOENT)
            return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot remove %s: %s", dir, META_NAME,
                               strerror(errno));
        if (slog_fsync_dir(dir) < 0)
            return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot fsync the directory: %s", dir,
                               strerror(errno));
    }
    d = opendir(dir);
    if (d == NULL)
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot list the directory: %s", dir,
                           strerror(errno));
    while ((de = readdir(d)) != NULL)
    {
        if (strcmp(de->d_name, META_TMP_NAME) != 0 && !slog_parse_seg_name(de->d_name, &seq))
            continue;
        slog_path_in(path, dir, de->d_name);
        if (unlink(path) < 0 && errno != ENOENT)
        {
            int e = errno;

            closedir(d);
            return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot remove %s: %s", dir, de->d_name,
                               strerror(e));
        }
    }
    closedir(d);
    return SLOG_OK;
}

/* log_create makes a new, empty log in dir: segment 1, then meta (which marks it complete). */
static int
log_create(const char *dir, const void *def, size_t def_len, char *err, size_t errlen)
{
    char path[PATH_MAX];
    unsigned char h[SLOG_SEGMENT_HEADER];
    struct stat st;
    int fd, rc;

    if (def_len > SLOG_MAX_DEFINITION || (def == NULL && def_len > 0))
        return errbuf_fail(SLOG_EINVAL, err, errlen,
                           "shape log %s: a definition of %zu bytes (at most %u, not NULL)", dir, def_len,
                           SLOG_MAX_DEFINITION);
    if (mkdir(dir, 0700) < 0)
    {
        int e = errno;

        if (e != EEXIST)
            return errbuf_fail(e == ENOENT ? SLOG_ENOENT : SLOG_ERR, err, errlen,
                               "cannot create shape log directory %s: %s%s", dir, strerror(e),
                               e == ENOENT ? " (its parent must exist)" : "");
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            return errbuf_fail(SLOG_ERR, err, errlen,
                               "cannot create shape log directory %s: it exists and is not a directory", dir);
        slog_path_in(path, dir, META_NAME);
        if (access(path, F_OK) == 0)
            return errbuf_fail(SLOG_EEXIST, err, errlen,
                               "%s already holds a shape log: open it, or slog_destroy it first", dir);
        /* Leftovers of a creation or a destruction a crash interrupted. */
        rc = remove_files(dir, false, err, errlen);
        if (rc != SLOG_OK)
            return rc;
    }
    if (fsync_parent(dir) < 0)
        return errbuf_fail(SLOG_ERR, err, errlen, "cannot fsync the parent of %s: %s", dir, strerror(errno));
    slog_seg_path(path, dir, 1);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot create segment 1: %s", dir,
                           strerror(errno));
    slog_seg_header_encode(h, 1, SLOG_OFFSET_START);
    if (slog_pwrite_all(fd, h, sizeof(h), 0) < 0 || fdatasync(fd) < 0)
    {
        int e = errno;

        close(fd);
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot write segment 1: %s", dir,
                           strerror(e));
    }
    close(fd);
    /* meta's directory fsync also makes segment 1's name durable. */
    return slog_meta_write(dir, SLOG_STATE_SNAPSHOT, (int64_t) time(NULL), def, def_len, err, errlen);
}

/* log_free frees a log and everything it holds. */
static void
log_free(SlogLog *log)
{
    if (log == NULL)
        return;
    if (log->fd >= 0)
        close(log->fd);
    free(log->dir);
    free(log->def);
    free(log->segs);
    free(log->idx);
    free(log);
}

int
slog_open(SlogLog **out, const char *dir, const SlogOptions *opts, int flags,
          const void *def, size_t def_len, char *err, size_t errlen)
{
    uint32_t segment_bytes = SLOG_DEFAULT_SEGMENT_BYTES, stride = SLOG_DEFAULT_INDEX_STRIDE;
    SlogLog *log;
    int rc;

    *out = NULL;
    if (opts != NULL && opts->segment_bytes != 0)
        segment_bytes = opts->segment_bytes;
    if (opts != NULL && opts->index_stride != 0)
        stride = opts->index_stride;
    if (dir == NULL || dir[0] == '\0' || strlen(dir) + 2 + SEG_NAME_LEN > PATH_MAX)
        return errbuf_fail(SLOG_EINVAL, err, errlen, "a shape log needs a directory name of 1 to %d bytes",
                           PATH_MAX - 2 - SEG_NAME_LEN);
    if (segment_bytes < MIN_SEGMENT_BYTES || segment_bytes > MAX_SEGMENT_BYTES
        || segment_bytes / stride > MAX_INDEX_PER_SEGMENT)
        return errbuf_fail(SLOG_EINVAL, err, errlen,
                           "shape log %s: segment_bytes %u must be %u..%u and at most %u times index_stride %u",
                           dir, segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES, MAX_INDEX_PER_SEGMENT,
                           stride);
    if ((flags & ~SLOG_CREATE) != 0)
        return errbuf_fail(SLOG_EINVAL, err, errlen, "shape log %s: unknown flags 0x%x", dir,
                           (unsigned) flags);
    if (flags & SLOG_CREATE)
    {
        rc = log_create(dir, def, def_len, err, errlen);
        if (rc != SLOG_OK)
            return rc;
    }
    log = calloc(1, sizeof(*log));
    if (log == NULL || (log->dir = strdup(dir)) == NULL)
    {
        free(log);
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory", dir);
    }
    log->fd = -1;
    log->segment_bytes = segment_bytes;
    log->index_stride = stride;
    rc = slog_log_load(log, err, errlen);
    if (rc != SLOG_OK)
    {
        log_free(log);
        return rc;
    }
    *out = log;
    return SLOG_OK;
}

void
slog_close(SlogLog *log)
{
    if (log == NULL)
        return;
    assert(log->ncursors == 0);
    log_free(log);
}

int
slog_destroy(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    int rc;

    if (dir == NULL || dir[0] == '\0' || strlen(dir) + 2 + SEG_NAME_LEN > PATH_MAX)
        return errbuf_fail(SLOG_EINVAL, err, errlen, "a shape log needs a directory name of 1 to %d bytes",
                           PATH_MAX - 2 - SEG_NAME_LEN);
    if (lstat(dir, &st) < 0)
    {
        if (errno == ENOENT)
            return SLOG_OK;
        return errbuf_fail(SLOG_ERR, err, errlen, "cannot remove shape log %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return errbuf_fail(SLOG_ERR, err, errlen, "cannot remove shape log %s: not a directory", dir);
    rc = remove_files(dir, true, err, errlen);
    if (rc != SLOG_OK)
        return rc;
    if (rmdir(dir) < 0)
    {
        if (errno == ENOTEMPTY || errno == EEXIST)
            return errbuf_fail(SLOG_ERR, err, errlen,
                               "shape log %s is removed but its directory holds other files: "
                               "remove them by hand", dir);
        return errbuf_fail(SLOG_ERR, err, errlen, "cannot remove shape log directory %s: %s", dir,
                           strerror(errno));
    }
    if (fsync_parent(dir) < 0)
        return errbuf_fail(SLOG_ERR, err, errlen, "cannot fsync the parent of %s: %s", dir, strerror(errno));
    return SLOG_OK;
}

/* ---- a log: append, sync, retain, state ------------------------------------------------- */

/* index_reserve makes room for one more index entry. */
static int
index_reserve(SlogLog *log)
{
    if (log->nidx == log->idx_cap)
    {
        uint32_t ncap = log->idx_cap ? log->idx_cap * 2 : 8;
        uint32_t enough = log->segment_bytes / log->index_stride + 2;  /* unless an entry is larger */
        IndexEntry *n;

        if (log->idx_cap < enough && ncap > enough)
            ncap = enough;
        n = realloc(log->idx, ncap * sizeof(*n));
        if (n == NULL)
            return -1;
        log->idx = n;
        log->idx_cap = ncap;
    }
    return 0;
}

/* slog_index_add adds the record at pos to the sparse index of the last segment when due. */
int
slog_index_add(SlogLog *log, SlogOffset off, uint32_t pos)
{
    if (log->nidx > 0 && pos - log->idx[log->nidx - 1].pos < log->index_stride)
        return 0;
    if (index_reserve(log) < 0)
        return -1;
    log->idx[log->nidx].lsn = off.lsn;
    log->idx[log->nidx].op = off.op;
    log->idx[log->nidx].pos = pos;
    log->nidx++;
    return 0;
}

/* pwritev_all writes the iovecs at off, retrying short writes; 0, or -1 with errno. */
static int
pwritev_all(int fd, struct iovec *iov, int iovcnt, off_t off)
{
    for (;;)
    {
        ssize_t w;

        while (iovcnt > 0 && iov->iov_len == 0)
        {
            iov++;
            iovcnt--;
        }
        if (iovcnt == 0)
            return 0;
        w = pwritev(fd, iov, iovcnt, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
        {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        off += w;
        while (iovcnt > 0 && (size_t) w >= iov->iov_len)
        {
            w -= (ssize_t) iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0 && w > 0)
        {
            iov->iov_base = (char *) iov->iov_base + w;
            iov->iov_len -= (size_t) w;
        }
    }
}

/* broken_error is the answer of a log whose write or sync failed earlier. */
static int
broken_error(const SlogLog *log, char *err, size_t errlen)
{
    return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s failed earlier (%s) and takes no more writes: "
                       "close it and rebuild the shape", log->dir, strerror(log->broken));
}

/* seal_last ends the last segment with its seal record and fdatasyncs it. */
static int
seal_last(SlogLog *log, char *err, size_t errlen)
{
    Seg *s = &log->segs[log->nsegs - 1];
    size_t plen = SEAL_FIXED + (size_t) log->nidx * INDEX_ENTRY_BYTES + SEAL_FOOTER;
    size_t n = SLOG_RECORD_HEADER + plen;
    unsigned char *buf = malloc(n), *p;

    assert(s->seal_pos == 0 && s->entries > 0 && log->nidx > 0 && log->fd >= 0);
    if (buf == NULL)
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory sealing a segment", log->dir);
    put32(buf + 4, (uint32_t) plen);
    put64(buf + 8, s->last.lsn);
    put32(buf + 16, s->last.op);
    buf[20] = 0;
    buf[21] = REC_SEAL;
    buf[22] = buf[23] = 0;
    put32(buf + 24, log->durable_pos);
    p = buf + SLOG_RECORD_HEADER;
    put64(p, s->entries);
    put64(p + 8, (uint64_t) s->newest_at);
    put32(p + 16, log->nidx);
    put32(p + 20, 0);
    for (uint32_t i = 0; i < log->nidx; i++)
    {
        unsigned char *q = p + SEAL_FIXED + (size_t) i * INDEX_ENTRY_BYTES;

        put64(q, log->idx[i].lsn);
        put32(q + 8, log->idx[i].op);
        put32(q + 12, log->idx[i].pos);
    }
    put32(p + plen - 8, s->size);
    put32(p + plen - 4, SEAL_MAGIC);
    put32(buf, slog_crc32c(buf + 4, n - 4));
    if (slog_pwrite_all(log->fd, buf, n, s->size) < 0 || fdatasync(log->fd) < 0)
    {
        log->broken = errno;
        free(buf);
        return slog_io_error(log, s->seq, "seal", log->broken, err, errlen);
    }
    free(buf);
    s->seal_pos = s->size;
    s->size += (uint32_t) n;
    log->durable_pos = s->size;
    close(log->fd);
    log->fd = -1;
    log->nidx = 0;
    return SLOG_OK;
}

/* start_segment creates the segment after the last one, which is sealed. */
static int
start_segment(SlogLog *log, char *err, size_t errlen)
{
    Seg *prev = &log->segs[log->nsegs - 1];
    unsigned char h[SLOG_SEGMENT_HEADER];
    char path[PATH_MAX];
    uint64_t seq = prev->seq + 1;
    int fd;

    assert(prev->seal_pos != 0 && log->fd < 0);
    /* The sealed segment's name must be durable before a later segment exists. */
    if (log->dir_dirty)
    {
        if (slog_fsync_dir(log->dir) < 0)
        {
            log->broken = errno;
            return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot fsync the directory: %s",
                               log->dir, strerror(errno));
        }
        log->dir_dirty = false;
    }
    if (log->nsegs == log->segs_cap)
    {
        uint32_t ncap = log->segs_cap * 2;
        Seg *n = realloc(log->segs, ncap * sizeof(*n));

        if (n == NULL)
            return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory", log->dir);
        log->segs = n;
        log->segs_cap = ncap;
        prev = &log->segs[log->nsegs - 1];
    }
    slog_seg_path(path, log->dir, seq);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return slog_io_error(log, seq, "create", errno, err, errlen);
    slog_seg_header_encode(h, seq, prev->last);
    if (slog_pwrite_all(fd, h, sizeof(h), 0) < 0)
    {
        int e = errno;

        close(fd);
        unlink(path);
        return slog_io_error(log, seq, "write", e, err, errlen);
    }
    log->dir_dirty = true;
    log->segs[log->nsegs].seq = seq;
    log->segs[log->nsegs].prev = prev->last;
    log->segs[log->nsegs].last = prev->last;
    log->segs[log->nsegs].entries = 0;
    log->segs[log->nsegs].size = SLOG_SEGMENT_HEADER;
    log->segs[log->nsegs].seal_pos = 0;
    log->segs[log->nsegs].newest_at = (int64_t) time(NULL);
    log->nsegs++;
    log->fd = fd;
    log->durable_pos = 0;
    log->nidx = 0;
    return SLOG_OK;
}

int
slog_append(SlogLog *log, uint64_t lsn, uint32_t op, uint8_t kind,
            const void *payload, size_t len, char *err, size_t errlen)
{
    SlogOffset off = {lsn, op, false};
    Seg *s = &log->segs[log->nsegs - 1];
    unsigned char h[SLOG_RECORD_HEADER];
    char a[SLOG_OFFSET_BUFLEN], b[SLOG_OFFSET_BUFLEN];
    struct iovec iov[2];
    uint32_t crc;

    if (log->broken)
        return broken_error(log, err, errlen);
    if (log->state == SLOG_STATE_INVALID)
        return errbuf_fail(SLOG_EINVAL, err, errlen, "shape log %s is invalidated: it takes no more entries",
                           log->dir);
    if (len > SLOG_MAX_PAYLOAD || (payload == NULL && len > 0))
        return errbuf_fail(SLOG_EINVAL, err, errlen,
                           "shape log %s: entry %s has %zu bytes; at most %u are allowed", log->dir,
                           slog_offset_format(off, a), len, SLOG_MAX_PAYLOAD);
    if (slog_offset_cmp(off, s->last) <= 0)
        return errbuf_fail(SLOG_EINVAL, err, errlen,
                           "shape log %s: entry %s is not after the last entry %s: offsets must increase",
                           log->dir, slog_offset_format(off, a), slog_offset_format(s->last, b));
    if (s->seal_pos != 0
        || (s->size > SLOG_SEGMENT_HEADER
            && (uint64_t) s->size + SLOG_RECORD_HEADER + len > log->segment_bytes))
    {
        if (s->seal_pos == 0 && seal_last(log, err, errlen) != SLOG_OK)
            return SLOG_ERR;
        if (start_segment(log, err, errlen) != SLOG_OK)
            return SLOG_ERR;
        s = &log->segs[log->nsegs - 1];
    }
    if (index_reserve(log) < 0)
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory", log->dir);
    put32(h + 4, (uint32_t) len);
    put64(h + 8, lsn);
    put32(h + 16, op);
    h[20] = kind;
    h[21] = REC_ENTRY;
    h[22] = h[23] = 0;
    put32(h + 24, log->durable_pos);
    crc = slog_crc32c_update(0xFFFFFFFFu, h + 4, SLOG_RECORD_HEADER - 4);
    if (len > 0)
        crc = slog_crc32c_update(crc, payload, len);
    put32(h, ~crc);
    iov[0].iov_base = h;
    iov[0].iov_len = sizeof(h);
    iov[1].iov_base = (void *) payload;
    iov[1].iov_len = len;
    if (pwritev_all(log->fd, iov, 2, s->size) < 0)
    {
        int e = errno;

        /* Cut what part of it was written, or no later record can follow it. */
        if (ftruncate(log->fd, s->size) < 0)
            log->broken = e;
        return slog_io_error(log, s->seq, "append to", e, err, errlen);
    }
    slog_index_add(log, off, s->size);   /* cannot fail: room reserved */
    s->size += SLOG_RECORD_HEADER + (uint32_t) len;
    s->entries++;
    s->last = off;
    s->newest_at = (int64_t) time(NULL);
    return SLOG_OK;
}

/* log_flush makes everything appended durable (not yet visible to cursors). */
static int
log_flush(SlogLog *log, char *err, size_t errlen)
{
    Seg *s = &log->segs[log->nsegs - 1];

    if (log->broken)
        return broken_error(log, err, errlen);
    if (log->fd >= 0 && log->durable_pos < s->size)
    {
        if (fdatasync(log->fd) < 0)
        {
            /* After a failed fsync the kernel may have dropped the data: never retry. */
            log->broken = errno;
            return slog_io_error(log, s->seq, "fdatasync", log->broken, err, errlen);
        }
        log->durable_pos = s->size;
    }
    if (log->dir_dirty)
    {
        if (slog_fsync_dir(log->dir) < 0)
        {
            log->broken = errno;
            return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot fsync the directory: %s",
                               log->dir, strerror(errno));
        }
        log->dir_dirty = false;
    }
    return SLOG_OK;
}

int
slog_sync(SlogLog *log, SlogOffset *durable, char *err, size_t errlen)
{
    int rc = log_flush(log, err, errlen);

    if (rc != SLOG_OK)
        return rc;
    log->visible = log->segs[log->nsegs - 1].last;
    if (durable != NULL)
        *durable = log->visible;
    return SLOG_OK;
}

int
slog_retain(SlogLog *log, uint64_t max_bytes, int64_t max_age_seconds, int64_t now,
            char *err, size_t errlen)
{
    char path[PATH_MAX];
    uint64_t total = 0;
    uint32_t n = 0, i;
    int rc = SLOG_OK;

    for (i = 0; i < log->nsegs; i++)
        total += log->segs[i].size;
    while (n + 1 < log->nsegs)
    {
        const Seg *s = &log->segs[n];
        bool by_size = max_bytes > 0 && total > max_bytes;
        bool by_age = max_age_seconds > 0 && now - s->newest_at > max_age_seconds;

        if (!by_size && !by_age)
            break;
        total -= s->size;
        n++;
    }
    if (n == 0)
        return 0;
    /* The last segment and its name durable first: a crash must never leave no segment. */
    rc = log_flush(log, err, errlen);
    if (rc != SLOG_OK)
        return rc;
    for (i = 0; i < n; i++)
    {
        slog_seg_path(path, log->dir, log->segs[i].seq);
        if (unlink(path) < 0 && errno != ENOENT)
        {
            rc = slog_io_error(log, log->segs[i].seq, "remove", errno, err, errlen);
            break;
        }
        if (slog_fsync_dir(log->dir) < 0)
        {
            /* Gone from the directory, durably or not: forget it, and write no more. */
            log->broken = errno;
            rc = errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot fsync the directory: %s", log->dir,
                             strerror(errno));
            i++;
            break;
        }
    }
    memmove(log->segs, log->segs + i, (log->nsegs - i) * sizeof(Seg));
    log->nsegs -= i;
    return rc == SLOG_OK ? (int) i : rc;
}

int
slog_set_state(SlogLog *log, SlogState state, char *err, size_t errlen)
{
    int rc;

    if (state < SLOG_STATE_SNAPSHOT || state > SLOG_STATE_INVALID)
        return errbuf_fail(SLOG_EINVAL, err, errlen, "shape log %s: unknown state %d", log->dir, (int) state);
    if (log->state == SLOG_STATE_INVALID && state != SLOG_STATE_INVALID)
        return errbuf_fail(SLOG_EINVAL, err, errlen,
                           "shape log %s is invalidated for good: destroy it and build a new one", log->dir);
    if (state == log->state)
        return SLOG_OK;
    rc = slog_meta_write(log->dir, state, log->created_at, log->def, log->def_len, err, errlen);
    if (rc == SLOG_OK)
        log->state = state;
    return rc;
}

SlogState
slog_state(const SlogLog *log)
{
    return log->state;
}

SlogOffset
slog_last(const SlogLog *log)
{
    return log->segs[log->nsegs - 1].last;
}

const void *
slog_definition(const SlogLog *log, size_t *len)
{
    *len = log->def_len;
    return log->def;
}

void
slog_stats(const SlogLog *log, SlogStats *st)
{
    memset(st, 0, sizeof(*st));
    for (uint32_t i = 0; i < log->nsegs; i++)
    {
        st->bytes += log->segs[i].size;
        st->entries += log->segs[i].entries;
    }
    st->segments = log->nsegs;
    st->floor = log->segs[0].prev;
    st->has_beginning = st->floor.start;
    st->last = slog_last(log);
    st->durable = log->visible;
    st->state = log->state;
    st->created_at = log->created_at;
    st->mem_bytes = sizeof(*log) + strlen(log->dir) + 1 + log->def_len
        + log->segs_cap * sizeof(Seg) + log->idx_cap * sizeof(IndexEntry);
}
