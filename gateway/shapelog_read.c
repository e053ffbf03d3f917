/*
 * gateway/shapelog_read.c -- reading a shape log: records of segment files through a
 * buffered window, and cursors that resume just after an offset.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errbuf.h"
#include "shapelog_int.h"

struct SlogCursor
{
    SlogLog *log;               /* the log read (not owned) */
    uint64_t seq;               /* segment of the next record */
    uint32_t pos;               /* file position of the next record */
    SlogOffset at;              /* last entry returned, or the offset opened after */
    int fd;                     /* own descriptor of a sealed segment, or -1 */
    uint64_t fd_seq;            /* segment fd is open on */
    Reader rd;                  /* read buffer */
};

/* ---- reading segment files -------------------------------------------------------------- */

/* slog_reader_release frees the window. */
void
slog_reader_release(Reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

/*
 * slog_reader_get makes bytes [pos, pos + need) of segment seq (open as fd, holding at least
 * limit bytes) available in the window and points *out at them. 0, or -1 with errno
 * (ENODATA when the file holds fewer bytes than limit says).
 */
int
slog_reader_get(Reader *r, int fd, uint64_t seq, uint32_t pos, uint32_t need, uint32_t limit,
                const unsigned char **out)
{
    size_t want, got = 0;

    assert((uint64_t) pos + need <= limit);
    if (r->buf != NULL && r->seq == seq && pos >= r->pos
        && (uint64_t) pos + need <= (uint64_t) r->pos + r->len)
    {
        *out = r->buf + (pos - r->pos);
        return 0;
    }
    if (r->buf == NULL || r->cap < need)
    {
        size_t cap = need > READ_BUF ? need : READ_BUF;
        unsigned char *b = malloc(cap);

        if (b == NULL)
            return -1;
        free(r->buf);
        r->buf = b;
        r->cap = cap;
    }
    r->seq = 0;
    want = limit - pos < r->cap ? limit - pos : r->cap;
    while (got < want)
    {
        ssize_t n = pread(fd, r->buf + got, want - got, (off_t) pos + (off_t) got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t) n;
    }
    if (got < need)
    {
        errno = ENODATA;
        return -1;
    }
    r->seq = seq;
    r->pos = pos;
    r->len = (uint32_t) got;
    *out = r->buf;
    return 0;
}

/* slog_read_record reads and checks the record at pos of a segment whose records end at limit. */
int
slog_read_record(Reader *r, int fd, uint64_t seq, uint32_t pos, uint32_t limit, Record *rec,
                 const char **why)
{
    const unsigned char *h;
    uint32_t crc;

    if (limit < pos || limit - pos < SLOG_RECORD_HEADER)
    {
        *why = "record header cut short";
        return REC_BAD;
    }
    if (slog_reader_get(r, fd, seq, pos, SLOG_RECORD_HEADER, limit, &h) < 0)
        goto ioerr;
    rec->len = get32(h + 4);
    rec->lsn = get64(h + 8);
    rec->op = get32(h + 16);
    rec->kind = h[20];
    rec->type = h[21];
    rec->durable = get32(h + 24);
    if ((rec->type != REC_ENTRY && rec->type != REC_SEAL) || h[22] != 0 || h[23] != 0)
    {
        *why = "not a record header";
        return REC_BAD;
    }
    if (rec->len > SLOG_MAX_PAYLOAD || limit - pos - SLOG_RECORD_HEADER < rec->len)
    {
        *why = "record cut short";
        return REC_BAD;
    }
    if (slog_reader_get(r, fd, seq, pos, SLOG_RECORD_HEADER + rec->len, limit, &h) < 0)
        goto ioerr;
    crc = ~slog_crc32c_update(0xFFFFFFFFu, h + 4, SLOG_RECORD_HEADER - 4 + rec->len);
    if (crc != get32(h))
    {
        *why = "checksum mismatch";
        return REC_BAD;
    }
    rec->payload = h + SLOG_RECORD_HEADER;
    return REC_OK;

ioerr:
    if (errno == ENODATA)
    {
        *why = "file shorter than expected";
        return REC_BAD;
    }
    return REC_IOERR;
}

/* ---- cursors ---------------------------------------------------------------------------- */

/* cursor_fd returns a descriptor to read segment s: the log's own for the unsealed last
 * segment, else the cursor's, opened as needed; -1 with errno on failure. */
static int
cursor_fd(SlogCursor *c, const Seg *s)
{
    char path[PATH_MAX];

    if (s->seal_pos == 0 && c->log->fd >= 0)
        return c->log->fd;
    if (c->fd >= 0 && c->fd_seq == s->seq)
        return c->fd;
    if (c->fd >= 0)
        close(c->fd);
    slog_seg_path(path, c->log->dir, s->seq);
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    c->fd_seq = s->seq;
    return c->fd;
}

/* cursor_idle drops what a caught-up cursor needs not hold: its buffer and descriptor. */
static void
cursor_idle(SlogCursor *c)
{
    slog_reader_release(&c->rd);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* cursor_corrupt reports a bad record met by a cursor. */
static int
cursor_corrupt(SlogCursor *c, const Seg *s, uint32_t pos, int rc, const Record *rec, const char *why,
               char *err, size_t errlen)
{
    if (rc == REC_OK && rec->type != REC_ENTRY)
        why = "a seal before the end";
    if (rc == REC_IOERR)
        return slog_io_error(c->log, s->seq, "read", errno, err, errlen);
    return slog_corrupt(c->log, s->seq, err, errlen, "record at byte %u: %s", pos, why);
}

/* cursor_seek positions c just after offset x (see slog_cursor_open). */
static int
cursor_seek(SlogCursor *c, SlogOffset x, char *err, size_t errlen)
{
    SlogLog *log = c->log;
    const Seg *first = &log->segs[0], *s;
    const char *why;
    uint32_t lo, hi, pos, limit;
    Record rec;
    int cmp, fd, rc;

    if (log->state == SLOG_STATE_INVALID)
        return SLOG_GONE;
    cmp = slog_offset_cmp(x, first->prev);
    if (cmp < 0)
        return SLOG_GONE;       /* before the floor, or "-1" once the beginning is dropped */
    if (cmp == 0)
    {
        c->seq = first->seq;
        c->pos = SLOG_SEGMENT_HEADER;
        c->at = x;
        return SLOG_OK;
    }
    if (slog_offset_cmp(x, log->visible) > 0)
        return SLOG_GONE;
    /* The first segment whose last entry is x or after it: it holds x, if anyone does. */
    lo = 0;
    hi = log->nsegs - 1;
    while (lo < hi)
    {
        uint32_t mid = lo + (hi - lo) / 2;

        if (slog_offset_cmp(log->segs[mid].last, x) >= 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    s = &log->segs[lo];
    fd = cursor_fd(c, s);
    if (fd < 0)
        return slog_io_error(log, s->seq, "open", errno, err, errlen);
    limit = s->seal_pos ? s->seal_pos : s->size;
    /* The last sparse index entry at or before x: scan from there. */
    if (s->seal_pos != 0)
    {
        SealInfo si;

        rc = slog_read_record(&c->rd, fd, s->seq, s->seal_pos, s->size, &rec, &why);
        if (rc != REC_OK)
            return cursor_corrupt(c, s, s->seal_pos, rc, &rec, why, err, errlen);
        if (!slog_seal_decode(&rec, s->seal_pos, &si))
            return slog_corrupt(log, s->seq, err, errlen, "bad seal record at byte %u", s->seal_pos);
        lo = 0;
        hi = si.nindex;
        while (lo < hi)         /* first index entry after x */
        {
            uint32_t mid = lo + (hi - lo) / 2;

            if (slog_offset_cmp(ie_offset(slog_seal_index(&si, mid)), x) > 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo == 0)
            return SLOG_GONE;
        pos = slog_seal_index(&si, lo - 1).pos;
    }
    else
    {
        lo = 0;
        hi = log->nidx;
        while (lo < hi)
        {
            uint32_t mid = lo + (hi - lo) / 2;

            if (slog_offset_cmp(ie_offset(log->idx[mid]), x) > 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo == 0)
            return SLOG_GONE;
        pos = log->idx[lo - 1].pos;
    }
    while (pos < limit)
    {
        SlogOffset off;

        rc = slog_read_record(&c->rd, fd, s->seq, pos, limit, &rec, &why);
        if (rc != REC_OK || rec.type != REC_ENTRY)
            return cursor_corrupt(c, s, pos, rc, &rec, why, err, errlen);
        off.lsn = rec.lsn;
        off.op = rec.op;
        off.start = false;
        pos += SLOG_RECORD_HEADER + rec.len;
        cmp = slog_offset_cmp(off, x);
        if (cmp == 0)
        {
            c->seq = s->seq;
            c->pos = pos;
            c->at = x;
            return SLOG_OK;
        }
        if (cmp > 0)
            break;
    }
    return SLOG_GONE;           /* x falls between two entries: never an offset of this log */
}

int
slog_cursor_open(SlogLog *log, SlogOffset after, SlogCursor **out, char *err, size_t errlen)
{
    SlogCursor *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL)
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory", log->dir);
    c->log = log;
    c->fd = -1;
    rc = cursor_seek(c, after, err, errlen);
    if (rc != SLOG_OK)
    {
        cursor_idle(c);
        free(c);
        return rc;
    }
    log->ncursors++;
    *out = c;
    return SLOG_OK;
}

int
slog_cursor_next(SlogCursor *c, SlogEntry *e, char *err, size_t errlen)
{
    SlogLog *log = c->log;
    const char *why;
    Record rec;

    if (c->rd.cap > READ_BUF)
        slog_reader_release(&c->rd); /* back to a small buffer after a large entry */
    for (;;)
    {
        const Seg *first = &log->segs[0], *s;
        uint32_t limit;
        int fd, rc;

        if (log->state == SLOG_STATE_INVALID)
            return SLOG_GONE;
        if (c->seq < first->seq)
        {
            /* Retention dropped the segment: fine only if nothing in it was left to read. */
            if (slog_offset_cmp(c->at, first->prev) != 0)
                return SLOG_GONE;
            c->seq = first->seq;
            c->pos = SLOG_SEGMENT_HEADER;
        }
        if (slog_offset_cmp(c->at, log->visible) >= 0)
        {
            cursor_idle(c);
            return SLOG_END;
        }
        s = &log->segs[c->seq - first->seq];
        limit = s->seal_pos ? s->seal_pos : s->size;
        if (c->pos >= limit)
        {
            if (c->seq - first->seq + 1 >= log->nsegs)
            {
                cursor_idle(c);
                return SLOG_END;
            }
            c->seq++;
            c->pos = SLOG_SEGMENT_HEADER;
            continue;
        }
        fd = cursor_fd(c, s);
        if (fd < 0)
            return slog_io_error(log, s->seq, "open", errno, err, errlen);
        rc = slog_read_record(&c->rd, fd, s->seq, c->pos, limit, &rec, &why);
        if (rc != REC_OK || rec.type != REC_ENTRY)
            return cursor_corrupt(c, s, c->pos, rc, &rec, why, err, errlen);
        e->lsn = rec.lsn;
        e->op = rec.op;
        e->kind = rec.kind;
        e->payload = rec.payload;
        e->len = rec.len;
        c->pos += SLOG_RECORD_HEADER + rec.len;
        c->at.lsn = rec.lsn;
        c->at.op = rec.op;
        c->at.start = false;
        return SLOG_OK;
    }
}

SlogOffset
slog_cursor_offset(const SlogCursor *c)
{
    return c->at;
}

void
slog_cursor_close(SlogCursor *c)
{
    if (c == NULL)
        return;
    cursor_idle(c);
    c->log->ncursors--;
    free(c);
}

/*
 * slog_limit_visible hides, until the next slog_sync, every entry whose lsn is
 * `below` or later. After a crash, entries of a transaction that was still
 * being appended can survive in the page cache without the rest of it: they
 * must not be read until the replay has appended the whole transaction.
 * Returns 1 when something was hidden, 0 when not, or an error.
 */
int
slog_limit_visible(SlogLog *log, uint64_t below, char *err, size_t errlen)
{
    SlogCursor *c;
    SlogEntry e;
    SlogOffset keep = log->segs[0].prev;
    int rc;

    if (log->nsegs == 0 || slog_last(log).start || slog_last(log).lsn < below)
        return 0;
    rc = slog_cursor_open(log, log->segs[0].prev, &c, err, errlen);
    if (rc != SLOG_OK)
        return rc == SLOG_GONE ? 0 : rc;
    while ((rc = slog_cursor_next(c, &e, err, errlen)) == SLOG_OK && e.lsn < below)
    {
        keep.lsn = e.lsn;
        keep.op = e.op;
        keep.start = false;
    }
    slog_cursor_close(c);
    if (rc < 0)
        return rc;
    log->visible = keep;
    return 1;
}
