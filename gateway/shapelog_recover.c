/*
 * gateway/shapelog_recover.c -- loading a shape log at open: meta, the chain of sealed
 * segments, and the last segment, whose torn tail a crash left is cut (see shapelog.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errbuf.h"
#include "shapelog_int.h"

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return x < y ? -1 : x > y;
}

/*
 * list_segments collects the numbers of the segment files in dir, sorted, into *seqs
 * (malloc'd, the caller frees it). Removes a meta.tmp left by a crash.
 */
static int
list_segments(const char *dir, uint64_t **seqs, uint32_t *nseqs, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t *v = NULL, seq;
    uint32_t n = 0, cap = 0;

    *seqs = NULL;
    *nseqs = 0;
    if (d == NULL)
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot list the directory: %s", dir,
                           strerror(errno));
    while ((errno = 0, de = readdir(d)) != NULL)
    {
        if (strcmp(de->d_name, META_TMP_NAME) == 0)
        {
            char path[PATH_MAX];

            slog_path_in(path, dir, META_TMP_NAME);
            unlink(path);
            continue;
        }
        if (!slog_parse_seg_name(de->d_name, &seq))
            continue;
        if (n == cap)
        {
            uint32_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, ncap * sizeof(*v));

            if (nv == NULL)
            {
                free(v);
                closedir(d);
                return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory listing segments",
                                   dir);
            }
            v = nv;
            cap = ncap;
        }
        v[n++] = seq;
    }
    if (errno != 0)
    {
        int e = errno;

        free(v);
        closedir(d);
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot list the directory: %s", dir,
                           strerror(e));
    }
    closedir(d);
    if (n > 0)
        qsort(v, n, sizeof(*v), cmp_u64);
    *seqs = v;
    *nseqs = n;
    return SLOG_OK;
}

/* load_sealed loads what the log keeps of sealed segment s->seq (not the last one). */
static int
load_sealed(SlogLog *log, Reader *rd, Seg *s, char *err, size_t errlen)
{
    char path[PATH_MAX];
    const unsigned char *p;
    const char *why;
    struct stat st;
    Record rec;
    SealInfo si;
    uint32_t size, seal_pos;
    int fd, rc;

    slog_seg_path(path, log->dir, s->seq);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
    {
        int e = errno;

        if (fd >= 0)
            close(fd);
        return slog_io_error(log, s->seq, "open", e, err, errlen);
    }
    if (st.st_size > UINT32_MAX
        || st.st_size < SLOG_SEGMENT_HEADER + SLOG_RECORD_HEADER + SEAL_FIXED + INDEX_ENTRY_BYTES + SEAL_FOOTER)
    {
        close(fd);
        return slog_corrupt(log, s->seq, err, errlen, "not sealed although a later segment exists (%lld bytes)",
                            (long long) st.st_size);
    }
    size = (uint32_t) st.st_size;
    rc = SLOG_ECORRUPT;
    /* Three small reads: header, footer, seal. */
    if (slog_reader_get(rd, fd, s->seq, 0, SLOG_SEGMENT_HEADER, SLOG_SEGMENT_HEADER, &p) < 0)
        goto ioerr;
    if (!slog_seg_header_decode(p, s->seq, &s->prev))
    {
        rc = slog_corrupt(log, s->seq, err, errlen, "bad header");
        goto out;
    }
    if (slog_reader_get(rd, fd, s->seq, size - SEAL_FOOTER, SEAL_FOOTER, size, &p) < 0)
        goto ioerr;
    seal_pos = get32(p);
    if (get32(p + 4) != SEAL_MAGIC || seal_pos < SLOG_SEGMENT_HEADER
        || seal_pos > size - SLOG_RECORD_HEADER)
    {
        rc = slog_corrupt(log, s->seq, err, errlen, "not sealed although a later segment exists");
        goto out;
    }
    switch (slog_read_record(rd, fd, s->seq, seal_pos, size, &rec, &why))
    {
        case REC_IOERR:
            goto ioerr;
        case REC_BAD:
            rc = slog_corrupt(log, s->seq, err, errlen, "seal record at byte %u: %s", seal_pos, why);
            goto out;
    }
    if (seal_pos + SLOG_RECORD_HEADER + rec.len != size || !slog_seal_decode(&rec, seal_pos, &si))
    {
        rc = slog_corrupt(log, s->seq, err, errlen, "bad seal record at byte %u", seal_pos);
        goto out;
    }
    s->last.lsn = rec.lsn;
    s->last.op = rec.op;
    s->last.start = false;
    s->entries = si.entries;
    s->size = size;
    s->seal_pos = seal_pos;
    s->newest_at = si.newest_at;
    if (slog_offset_cmp(ie_offset(slog_seal_index(&si, 0)), s->prev) <= 0
        || slog_offset_cmp(s->last, ie_offset(slog_seal_index(&si, 0))) < 0)
    {
        rc = slog_corrupt(log, s->seq, err, errlen, "its seal does not match its header");
        goto out;
    }
    rc = SLOG_OK;
out:
    close(fd);
    return rc;
ioerr:
    rc = slog_io_error(log, s->seq, "read", errno, err, errlen);
    close(fd);
    return rc;
}

/*
 * bad_record_was_durable tells, for a bad record at pos of the last segment (size bytes),
 * whether it had been synced: 1 when a valid record after it says so (then it is damage,
 * not a torn write), 0 when not (or when its length is unreadable), -1 on a read error.
 */
static int
bad_record_was_durable(Reader *rd, int fd, uint64_t seq, uint32_t pos, uint32_t size)
{
    const unsigned char *h;
    const char *why;
    uint32_t len, next;
    Record rec;

    if (size - pos < SLOG_RECORD_HEADER)
        return 0;
    if (slog_reader_get(rd, fd, seq, pos, SLOG_RECORD_HEADER, size, &h) < 0)
        return -1;
    len = get32(h + 4);
    if (len > SLOG_MAX_PAYLOAD || size - pos - SLOG_RECORD_HEADER < len)
        return 0;
    next = pos + SLOG_RECORD_HEADER + len;
    while (next < size)
    {
        int rc = slog_read_record(rd, fd, seq, next, size, &rec, &why);

        if (rc == REC_IOERR)
            return -1;
        if (rc == REC_BAD)
            return 0;
        if (rec.durable > pos)
            return 1;
        next += SLOG_RECORD_HEADER + rec.len;
    }
    return 0;
}

/*
 * load_last loads the last segment, reading every record: rebuilds its sparse index,
 * cuts a torn tail, and fdatasyncs it (what a crashed process left in the page cache is
 * durable before cursors hand it out). LOAD_TORN_HEADER when its header is torn: it was
 * created just before a crash and nothing in it was synced.
 */
static int
load_last(SlogLog *log, Reader *rd, Seg *s, char *err, size_t errlen)
{
    char path[PATH_MAX];
    const unsigned char *h;
    const char *why;
    struct stat st;
    Record rec;
    SealInfo si;
    SlogOffset last;
    uint32_t size, pos;
    bool sealed = false;
    int fd, rc;

    slog_seg_path(path, log->dir, s->seq);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
    {
        int e = errno;

        if (fd >= 0)
            close(fd);
        return slog_io_error(log, s->seq, "open", e, err, errlen);
    }
    if (st.st_size > UINT32_MAX)
    {
        close(fd);
        return slog_corrupt(log, s->seq, err, errlen, "%lld bytes", (long long) st.st_size);
    }
    size = (uint32_t) st.st_size;
    if (size < SLOG_SEGMENT_HEADER)
    {
        close(fd);
        return LOAD_TORN_HEADER;
    }
    if (slog_reader_get(rd, fd, s->seq, 0, SLOG_SEGMENT_HEADER, size, &h) < 0)
        goto ioerr;
    if (!slog_seg_header_decode(h, s->seq, &s->prev))
    {
        /*
         * Torn if nothing valid follows. A valid record after it (written later, in the
         * same disk page) means the header was damaged afterwards.
         */
        rc = slog_read_record(rd, fd, s->seq, SLOG_SEGMENT_HEADER, size, &rec, &why);
        close(fd);
        if (rc == REC_OK)
            return slog_corrupt(log, s->seq, err, errlen, "bad header before valid records");
        return LOAD_TORN_HEADER;
    }
    last = s->prev;
    s->entries = 0;
    log->nidx = 0;
    for (pos = SLOG_SEGMENT_HEADER; pos < size; pos += SLOG_RECORD_HEADER + rec.len)
    {
        SlogOffset off;

        rc = slog_read_record(rd, fd, s->seq, pos, size, &rec, &why);
        if (rc == REC_IOERR)
            goto ioerr;
        if (rc == REC_BAD)
        {
            rc = bad_record_was_durable(rd, fd, s->seq, pos, size);
            if (rc < 0)
                goto ioerr;
            if (rc > 0)
            {
                close(fd);
                return slog_corrupt(log, s->seq, err, errlen, "record at byte %u (%s) had been synced",
                                    pos, why);
            }
            break;              /* a torn tail: cut below */
        }
        off.lsn = rec.lsn;
        off.op = rec.op;
        off.start = false;
        if (rec.type == REC_SEAL)
        {
            if (!slog_seal_decode(&rec, pos, &si) || si.entries != s->entries
                || slog_offset_cmp(off, last) != 0)
            {
                close(fd);
                return slog_corrupt(log, s->seq, err, errlen, "bad seal record at byte %u", pos);
            }
            sealed = true;
            s->seal_pos = pos;
            s->newest_at = si.newest_at;
            pos += SLOG_RECORD_HEADER + rec.len;
            break;
        }
        if (slog_offset_cmp(off, last) <= 0)
        {
            char a[SLOG_OFFSET_BUFLEN], b[SLOG_OFFSET_BUFLEN];

            close(fd);
            return slog_corrupt(log, s->seq, err, errlen, "entry %s at byte %u does not follow %s",
                                slog_offset_format(off, a), pos, slog_offset_format(last, b));
        }
        if (slog_index_add(log, off, pos) < 0)
            goto ioerr;
        s->entries++;
        last = off;
    }
    if ((pos < size && ftruncate(fd, pos) < 0) || fdatasync(fd) < 0)
        goto ioerr;
    s->last = last;
    s->size = pos;
    log->durable_pos = pos;
    if (sealed)
    {
        close(fd);
        log->nidx = 0;
        log->fd = -1;
    }
    else
    {
        s->seal_pos = 0;
        s->newest_at = (int64_t) st.st_mtime;
        log->fd = fd;
    }
    return SLOG_OK;

ioerr:
    rc = slog_io_error(log, s->seq, "read", errno, err, errlen);
    close(fd);
    return rc;
}

/* slog_log_load reads meta and the segments of log->dir into log. */
int
slog_log_load(SlogLog *log, char *err, size_t errlen)
{
    Reader rd = {0};
    uint64_t *seqs = NULL;
    uint32_t n, i;
    int rc;

    rc = slog_meta_read(log, err, errlen);
    if (rc != SLOG_OK)
        return rc;
    rc = list_segments(log->dir, &seqs, &n, err, errlen);
    if (rc != SLOG_OK)
        return rc;
    if (n == 0)
    {
        free(seqs);
        return errbuf_fail(SLOG_ECORRUPT, err, errlen,
                           "shape log %s has no segment file: destroy the log and rebuild the shape",
                           log->dir);
    }
    for (i = 1; i < n; i++)
        if (seqs[i] != seqs[i - 1] + 1)
        {
            char name[SEG_NAME_LEN + 1];

            slog_seg_name(name, seqs[i - 1] + 1);
            free(seqs);
            return errbuf_fail(SLOG_ECORRUPT, err, errlen,
                               "shape log %s: segment %s is missing: destroy the log and rebuild the shape",
                               log->dir, name);
        }
    log->segs_cap = n + 1;
    log->segs = calloc(log->segs_cap, sizeof(Seg));
    if (log->segs == NULL)
    {
        free(seqs);
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory", log->dir);
    }
    for (i = 0; i < n; i++)
        log->segs[i].seq = seqs[i];
    log->nsegs = n;
    free(seqs);

    for (i = 0; i + 1 < n && rc == SLOG_OK; i++)
        rc = load_sealed(log, &rd, &log->segs[i], err, errlen);
    if (rc == SLOG_OK)
        rc = load_last(log, &rd, &log->segs[n - 1], err, errlen);
    if (rc == LOAD_TORN_HEADER)
    {
        char path[PATH_MAX];

        if (n == 1)
            rc = slog_corrupt(log, log->segs[0].seq, err, errlen, "bad header in the only segment");
        else
        {
            /* Created just before a crash, before anything in it was synced. */
            slog_seg_path(path, log->dir, log->segs[n - 1].seq);
            if (unlink(path) < 0)
                rc = slog_io_error(log, log->segs[n - 1].seq, "remove the torn", errno, err, errlen);
            else
            {
                log->nsegs = --n;
                log->durable_pos = log->segs[n - 1].size;
                rc = SLOG_OK;
            }
        }
    }
    if (rc == SLOG_OK && slog_fsync_dir(log->dir) < 0)
        rc = errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot fsync the directory: %s", log->dir,
                         strerror(errno));
    for (i = 1; i < n && rc == SLOG_OK; i++)
        if (slog_offset_cmp(log->segs[i].prev, log->segs[i - 1].last) != 0)
            rc = slog_corrupt(log, log->segs[i].seq, err, errlen, "it does not continue the segment before it");
    slog_reader_release(&rd);
    if (rc == SLOG_OK)
        log->visible = log->segs[n - 1].last;
    return rc;
}
