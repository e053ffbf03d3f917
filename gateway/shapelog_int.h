/*
 * gateway/shapelog_int.h -- the shape log's private declarations, shared by gateway/shapelog*.c.
 *
 * The on-disk format is described in shapelog.h. Other modules include shapelog.h only.
 * Functions shared between the files are prefixed slog_ like the API and declared here
 * under the file that defines and documents them; everything else is static in its file.
 */
#ifndef FERRY_GATEWAY_SHAPELOG_INT_H
#define FERRY_GATEWAY_SHAPELOG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shapelog.h"

#define SEG_MAGIC "FRYSLSEG"        /* first 8 bytes of a segment */
#define META_MAGIC "FRYSLMET"       /* first 8 bytes of meta */
#define FORMAT_VERSION 1            /* of segments and meta */
#define META_NAME "meta"            /* the metadata file */
#define META_TMP_NAME "meta.tmp"    /* meta being replaced */
#define SEG_NAME_LEN 20             /* "%016x.seg" */
#define SEG_FLAG_START 1u           /* segment header flag: the segment starts the log */
#define REC_ENTRY 1                 /* record type: an entry */
#define REC_SEAL 2                  /* record type: the seal that ends a segment */
#define SEAL_MAGIC 0x4c414553u      /* "SEAL", the last 4 bytes of a sealed segment */
#define SEAL_FIXED 24               /* seal payload before the index */
#define SEAL_FOOTER 8               /* seal payload after the index: position, magic */
#define INDEX_ENTRY_BYTES 16        /* one index entry in a seal */
#define META_FIXED 28               /* meta before the definition */
#define READ_BUF (32u << 10)        /* a reader's buffer, unless an entry needs more */
#define MIN_SEGMENT_BYTES 128u      /* smallest segment_bytes (tests use small ones) */
#define MAX_SEGMENT_BYTES (1u << 30)    /* largest segment_bytes: file positions fit 32 bits */
#define MAX_INDEX_PER_SEGMENT 65536u    /* segment_bytes / index_stride at most */
#define LOAD_TORN_HEADER 100        /* load_last: the last segment's header is torn */

/* Seg: what a log keeps in memory about one segment file. */
typedef struct Seg
{
    uint64_t seq;               /* its number, which names its file */
    SlogOffset prev;            /* the offset just before its first entry (from its header) */
    SlogOffset last;            /* its last entry; prev while it has none */
    uint64_t entries;           /* entries in it */
    uint32_t size;              /* bytes in its file: header, records, seal */
    uint32_t seal_pos;          /* file position of its seal record; 0 while it is written */
    int64_t newest_at;          /* Unix seconds of its newest entry, for age retention */
} Seg;

/* IndexEntry: one sparse index entry of the segment being written. */
typedef struct IndexEntry
{
    uint64_t lsn;               /* offset of the entry... */
    uint32_t op;                /* ...(lsn, op) */
    uint32_t pos;               /* file position of its record */
} IndexEntry;

struct SlogLog
{
    char *dir;                  /* the log's directory (owned) */
    void *def;                  /* shape definition from meta (owned; NULL when empty) */
    size_t def_len;             /* bytes at def */
    SlogState state;            /* from meta */
    int64_t created_at;         /* from meta */
    uint32_t segment_bytes;     /* seal the last segment once past this */
    uint32_t index_stride;      /* bytes between sparse index entries */
    Seg *segs;                  /* segment files, oldest first, numbers consecutive (owned) */
    uint32_t nsegs;             /* segments at segs (always >= 1) */
    uint32_t segs_cap;          /* room at segs */
    int fd;                     /* the last segment, read-write, while unsealed; else -1 */
    IndexEntry *idx;            /* sparse index of the last segment while unsealed (owned) */
    uint32_t nidx;              /* entries at idx */
    uint32_t idx_cap;           /* room at idx */
    uint32_t durable_pos;       /* bytes of the last segment known durable */
    SlogOffset visible;         /* last entry slog_sync made durable (or open found): cursors stop there */
    bool dir_dirty;             /* a segment was created since the directory was last fsynced */
    int broken;                 /* errno of a failed write or sync: no more writes; 0 when healthy */
    int ncursors;               /* cursors open on the log */
};

/* Reader: a window of one segment file, buffered. */
typedef struct Reader
{
    unsigned char *buf;         /* the window (owned); NULL when released */
    size_t cap;                 /* bytes allocated at buf */
    uint64_t seq;               /* segment in the window; 0 when none */
    uint32_t pos;               /* file position of buf[0] */
    uint32_t len;               /* valid bytes at buf */
} Reader;

/* Record: one decoded record, its payload in a Reader's window. */
typedef struct Record
{
    uint64_t lsn;               /* entry offset (seal: the segment's last entry)... */
    uint32_t op;                /* ...(lsn, op) */
    uint8_t kind;               /* the caller's kind */
    uint8_t type;               /* REC_ENTRY or REC_SEAL */
    uint32_t len;               /* payload bytes */
    uint32_t durable;           /* bytes of the segment durable when it was written */
    const unsigned char *payload;   /* in the reader's window, until its next read */
} Record;

/* SealInfo: a decoded seal payload. */
typedef struct SealInfo
{
    uint64_t entries;           /* entries in the segment */
    int64_t newest_at;          /* Unix seconds of its newest entry */
    uint32_t nindex;            /* index entries */
    const unsigned char *index; /* nindex x 16 bytes, in the reader's window */
} SealInfo;

/* ---- encoding --------------------------------------------------------------------------- */

static inline void
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
}

static inline void
put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t) v);
    put32(p + 4, (uint32_t) (v >> 32));
}

static inline uint32_t
get32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static inline uint64_t
get64(const unsigned char *p)
{
    return (uint64_t) get32(p) | (uint64_t) get32(p + 4) << 32;
}

/* ie_offset: the offset of a sparse index entry. */
static inline SlogOffset
ie_offset(IndexEntry ie)
{
    SlogOffset off = {ie.lsn, ie.op, false};

    return off;
}

/* ---- shapelog_io.c: checksums, files, segment headers, seals, meta, error messages ------ */

uint32_t slog_crc32c_update(uint32_t crc, const void *data, size_t n);
uint32_t slog_crc32c(const void *data, size_t n);
void slog_seg_name(char *buf, uint64_t seq);
bool slog_parse_seg_name(const char *name, uint64_t *seq);
void slog_path_in(char *buf, const char *dir, const char *name);
void slog_seg_path(char *buf, const char *dir, uint64_t seq);
int slog_pwrite_all(int fd, const void *buf, size_t n, off_t off);
int slog_fsync_dir(const char *dir);

bool slog_seal_decode(const Record *rec, uint32_t pos, SealInfo *si);
IndexEntry slog_seal_index(const SealInfo *si, uint32_t i);
void slog_seg_header_encode(unsigned char *h, uint64_t seq, SlogOffset prev);
bool slog_seg_header_decode(const unsigned char *h, uint64_t seq, SlogOffset *prev);

int slog_meta_write(const char *dir, SlogState state, int64_t created_at, const void *def, size_t def_len,
                    char *err, size_t errlen);
int slog_meta_read(SlogLog *log, char *err, size_t errlen);

int slog_corrupt(const SlogLog *log, uint64_t seq, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
int slog_io_error(const SlogLog *log, uint64_t seq, const char *what, int e, char *err, size_t errlen);

/* ---- shapelog_read.c: reading segment files --------------------------------------------- */

#define REC_OK 0                /* slog_read_record: a valid record */
#define REC_BAD 1               /* slog_read_record: torn or damaged, *why says how */
#define REC_IOERR (-1)          /* slog_read_record: the read failed, errno says why */

void slog_reader_release(Reader *r);
int slog_reader_get(Reader *r, int fd, uint64_t seq, uint32_t pos, uint32_t need, uint32_t limit,
                    const unsigned char **out);
int slog_read_record(Reader *r, int fd, uint64_t seq, uint32_t pos, uint32_t limit, Record *rec,
                     const char **why);

/* ---- shapelog_recover.c: loading a log at open ------------------------------------------ */

int slog_log_load(SlogLog *log, char *err, size_t errlen);

/* ---- shapelog.c: the sparse index of the segment being written -------------------------- */

int slog_index_add(SlogLog *log, SlogOffset off, uint32_t pos);

#endif                          /* FERRY_GATEWAY_SHAPELOG_INT_H */
