/*
 * gateway/shapelog.c -- the on-disk log of one shape: segments, crash recovery, cursors, retention.
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

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

/* ---- helpers: errors, encoding, checksums, files ------------------------------------ */

/* fail formats a message into the caller's err (when there is one) and returns rc. */
static int __attribute__((format(printf, 4, 5)))
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0)
    {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
}

static void
put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t) v);
    put32(p + 4, (uint32_t) (v >> 32));
}

static uint32_t
get32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t
get64(const unsigned char *p)
{
    return (uint64_t) get32(p) | (uint64_t) get32(p + 4) << 32;
}

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one byte at a time. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u
};

static uint32_t
crc32c_sw(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n-- > 0)
        crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CRC32C_HW 1
/* crc32c_hw: the same with SSE 4.2's crc32 instruction, 8 bytes at a time. */
__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t n)
{
    uint64_t c = crc;

    for (; n >= 8; p += 8, n -= 8)
    {
        uint64_t v;

        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    crc = (uint32_t) c;
    while (n-- > 0)
        crc = __builtin_ia32_crc32qi(crc, *p++);
    return crc;
}
#endif

/* crc32c_update continues a CRC-32C over n bytes: start from 0xFFFFFFFF, finish with ~. */
static uint32_t
crc32c_update(uint32_t crc, const void *data, size_t n)
{
#ifdef HAVE_CRC32C_HW
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_hw(crc, data, n);
#endif
    return crc32c_sw(crc, data, n);
}

static uint32_t
crc32c(const void *data, size_t n)
{
    return ~crc32c_update(0xFFFFFFFFu, data, n);
}

/* seg_name writes the file name of segment seq into buf (SEG_NAME_LEN + 1 bytes). */
static void
seg_name(char *buf, uint64_t seq)
{
    snprintf(buf, SEG_NAME_LEN + 1, "%016" PRIx64 ".seg", seq);
}

/* parse_seg_name: whether name is a segment file name; its number in *seq. */
static bool
parse_seg_name(const char *name, uint64_t *seq)
{
    uint64_t v = 0;

    if (strlen(name) != SEG_NAME_LEN || strcmp(name + 16, ".seg") != 0)
        return false;
    for (int i = 0; i < 16; i++)
    {
        char ch = name[i];

        if (ch >= '0' && ch <= '9')
            v = v << 4 | (uint64_t) (ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = v << 4 | (uint64_t) (ch - 'a' + 10);
        else
            return false;
    }
    *seq = v;
    return v != 0;
}

/* path_in writes dir/name into buf (PATH_MAX bytes; dir's length was checked). */
static void
path_in(char *buf, const char *dir, const char *name)
{
    snprintf(buf, PATH_MAX, "%s/%s", dir, name);
}

static void
seg_path(char *buf, const char *dir, uint64_t seq)
{
    char name[SEG_NAME_LEN + 1];

    seg_name(name, seq);
    path_in(buf, dir, name);
}

/* pwrite_all writes n bytes at off, retrying short writes; 0, or -1 with errno. */
static int
pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    const char *p = buf;

    while (n > 0)
    {
        ssize_t w = pwrite(fd, p, n, off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
        {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t) w;
        off += w;
    }
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

/* fsync_dir makes the entries of directory dir durable; 0, or -1 with errno. */
static int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    if (rc < 0)
    {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

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
    return fsync_dir(parent);
}

/* ---- offsets ------------------------------------------------------------------------ */

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
    return fail(err, errlen, SLOG_EINVAL,
                "offset '%s' is not \"-1\" or <lsn>_<op> in decimal (%s at character %zu)", shown, why, i + 1);
}

/* ---- reading segment files ---------------------------------------------------------- */

/* reader_release frees the window. */
static void
reader_release(Reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

/*
 * reader_get makes bytes [pos, pos + need) of segment seq (open as fd, holding at least
 * limit bytes) available in the window and points *out at them. 0, or -1 with errno
 * (ENODATA when the file holds fewer bytes than limit says).
 */
static int
reader_get(Reader *r, int fd, uint64_t seq, uint32_t pos, uint32_t need, uint32_t limit,
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

#define REC_OK 0                /* read_record: a valid record */
#define REC_BAD 1               /* read_record: torn or damaged, *why says how */
#define REC_IOERR (-1)          /* read_record: the read failed, errno says why */

/* read_record reads and checks the record at pos of a segment whose records end at limit. */
static int
read_record(Reader *r, int fd, uint64_t seq, uint32_t pos, uint32_t limit, Record *rec,
            const char **why)
{
    const unsigned char *h;
    uint32_t crc;

    if (limit < pos || limit - pos < SLOG_RECORD_HEADER)
    {
        *why = "record header cut short";
        return REC_BAD;
    }
    if (reader_get(r, fd, seq, pos, SLOG_RECORD_HEADER, limit, &h) < 0)
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
    if (reader_get(r, fd, seq, pos, SLOG_RECORD_HEADER + rec->len, limit, &h) < 0)
        goto ioerr;
    crc = ~crc32c_update(0xFFFFFFFFu, h + 4, SLOG_RECORD_HEADER - 4 + rec->len);
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

/* seal_decode checks the seal record rec found at pos and fills *si; false when invalid. */
static bool
seal_decode(const Record *rec, uint32_t pos, SealInfo *si)
{
    const unsigned char *p = rec->payload;

    if (rec->type != REC_SEAL || rec->len < SEAL_FIXED + INDEX_ENTRY_BYTES + SEAL_FOOTER)
        return false;
    si->entries = get64(p);
    si->newest_at = (int64_t) get64(p + 8);
    si->nindex = get32(p + 16);
    si->index = p + SEAL_FIXED;
    return get32(p + 20) == 0
        && (uint64_t) si->nindex * INDEX_ENTRY_BYTES == rec->len - SEAL_FIXED - SEAL_FOOTER
        && si->nindex > 0 && si->entries >= si->nindex
        && get32(p + rec->len - 8) == pos && get32(p + rec->len - 4) == SEAL_MAGIC;
}

/* seal_index returns index entry i of a decoded seal. */
static IndexEntry
seal_index(const SealInfo *si, uint32_t i)
{
    const unsigned char *p = si->index + (size_t) i * INDEX_ENTRY_BYTES;
    IndexEntry ie = {get64(p), get32(p + 8), get32(p + 12)};

    return ie;
}

static SlogOffset
ie_offset(IndexEntry ie)
{
    SlogOffset off = {ie.lsn, ie.op, false};

    return off;
}

/* seg_header_encode writes the SLOG_SEGMENT_HEADER bytes of segment seq into h. */
static void
seg_header_encode(unsigned char *h, uint64_t seq, SlogOffset prev)
{
    memcpy(h, SEG_MAGIC, 8);
    put32(h + 8, FORMAT_VERSION);
    put32(h + 12, prev.start ? SEG_FLAG_START : 0);
    put64(h + 16, seq);
    put64(h + 24, prev.lsn);
    put32(h + 32, prev.op);
    put32(h + 36, crc32c(h, 36));
}

/* seg_header_decode checks the header of segment seq and reads its prev offset. */
static bool
seg_header_decode(const unsigned char *h, uint64_t seq, SlogOffset *prev)
{
    uint32_t flags = get32(h + 12);

    if (memcmp(h, SEG_MAGIC, 8) != 0 || get32(h + 8) != FORMAT_VERSION
        || get32(h + 36) != crc32c(h, 36) || get64(h + 16) != seq || (flags & ~SEG_FLAG_START) != 0)
        return false;
    prev->start = (flags & SEG_FLAG_START) != 0;
    prev->lsn = get64(h + 24);
    prev->op = get32(h + 32);
    return !prev->start || (prev->lsn == 0 && prev->op == 0);
}

/* ---- meta --------------------------------------------------------------------------- */

/* meta_write replaces meta atomically: meta.tmp, fdatasync, rename, fsync the directory. */
static int
meta_write(const char *dir, SlogState state, int64_t created_at, const void *def, size_t def_len,
           char *err, size_t errlen)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    size_t n = META_FIXED + def_len + 4;
    unsigned char *buf = malloc(n);
    int fd, e;

    if (buf == NULL)
        return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory writing meta", dir);
    memcpy(buf, META_MAGIC, 8);
    put32(buf + 8, FORMAT_VERSION);
    put32(buf + 12, (uint32_t) state);
    put64(buf + 16, (uint64_t) created_at);
    put32(buf + 24, (uint32_t) def_len);
    if (def_len > 0)
        memcpy(buf + META_FIXED, def, def_len);
    put32(buf + META_FIXED + def_len, crc32c(buf, META_FIXED + def_len));
    path_in(tmp, dir, META_TMP_NAME);
    path_in(path, dir, META_NAME);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto failed;
    if (pwrite_all(fd, buf, n, 0) < 0 || fdatasync(fd) < 0)
    {
        e = errno;
        close(fd);
        errno = e;
        goto failed;
    }
    close(fd);
    if (rename(tmp, path) < 0 || fsync_dir(dir) < 0)
        goto failed;
    free(buf);
    return SLOG_OK;

failed:
    e = errno;
    unlink(tmp);
    free(buf);
    return fail(err, errlen, SLOG_ERR, "shape log %s: cannot write %s: %s", dir, META_NAME, strerror(e));
}

/* meta_read loads meta into log. */
static int
meta_read(SlogLog *log, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat st;
    unsigned char *buf = NULL;
    size_t n, got = 0;
    uint32_t def_len, state;
    int fd;

    path_in(path, log->dir, META_NAME);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
    {
        if (stat(log->dir, &st) < 0)
            return fail(err, errlen, SLOG_ENOENT, "shape log directory %s does not exist", log->dir);
        return fail(err, errlen, SLOG_ENOENT, "%s holds no shape log (no %s file)", log->dir, META_NAME);
    }
    if (fd < 0 || fstat(fd, &st) < 0)
        goto ioerr;
    if (st.st_size < META_FIXED + 4 || st.st_size > META_FIXED + SLOG_MAX_DEFINITION + 4)
        goto corrupt;
    n = (size_t) st.st_size;
    buf = malloc(n);
    if (buf == NULL)
        goto ioerr;
    while (got < n)
    {
        ssize_t r = pread(fd, buf + got, n - got, (off_t) got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto ioerr;
        if (r == 0)
            goto corrupt;
        got += (size_t) r;
    }
    def_len = get32(buf + 24);
    state = get32(buf + 12);
    if (memcmp(buf, META_MAGIC, 8) != 0 || get32(buf + 8) != FORMAT_VERSION
        || def_len != n - META_FIXED - 4 || get32(buf + n - 4) != crc32c(buf, n - 4)
        || state < SLOG_STATE_SNAPSHOT || state > SLOG_STATE_INVALID)
        goto corrupt;
    log->state = (SlogState) state;
    log->created_at = (int64_t) get64(buf + 16);
    log->def_len = def_len;
    if (def_len > 0)
    {
        log->def = malloc(def_len);
        if (log->def == NULL)
            goto ioerr;
        memcpy(log->def, buf + META_FIXED, def_len);
    }
    free(buf);
    close(fd);
    return SLOG_OK;

corrupt:
    free(buf);
    close(fd);
    return fail(err, errlen, SLOG_ECORRUPT,
                "shape log %s: %s is damaged: destroy the log and rebuild the shape", log->dir, META_NAME);
ioerr:
    {
        int e = errno;

        free(buf);
        if (fd >= 0)
            close(fd);
        return fail(err, errlen, SLOG_ERR, "shape log %s: cannot read %s: %s", log->dir, META_NAME,
                    strerror(e));
    }
}

/* ---- the files of a log --------------------------------------------------------------- */

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
        return fail(err, errlen, SLOG_ERR, "shape log %s: cannot list the directory: %s", dir,
                    strerror(errno));
    while ((errno = 0, de = readdir(d)) != NULL)
    {
        if (strcmp(de->d_name, META_TMP_NAME) == 0)
        {
            char path[PATH_MAX];

            path_in(path, dir, META_TMP_NAME);
            unlink(path);
            continue;
        }
        if (!parse_seg_name(de->d_name, &seq))
            continue;
        if (n == cap)
        {
            uint32_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, ncap * sizeof(*v));

            if (nv == NULL)
            {
                free(v);
                closedir(d);
                return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory listing segments", dir);
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
        return fail(err, errlen, SLOG_ERR, "shape log %s: cannot list the directory: %s", dir, strerror(e));
    }
    closedir(d);
    if (n > 0)
        qsort(v, n, sizeof(*v), cmp_u64);
    *seqs = v;
    *nseqs = n;
    return SLOG_OK;
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
        path_in(path, dir, META_NAME);
        if (unlink(path) < 0 && errno != ENOENT)
            return fail(err, errlen, SLOG_ERR, "shape log %s: cannot remove %s: %s", dir, META_NAME,
                        strerror(errno));
        if (fsync_dir(dir) < 0)
            return fail(err, errlen, SLOG_ERR, "shape log %s: cannot fsync the directory: %s", dir,
                        strerror(errno));
    }
    d = opendir(dir);
    if (d == NULL)
        return fail(err, errlen, SLOG_ERR, "shape log %s: cannot list the directory: %s", dir,
                    strerror(errno));
    while ((de = readdir(d)) != NULL)
    {
        if (strcmp(de->d_name, META_TMP_NAME) != 0 && !parse_seg_name(de->d_name, &seq))
            continue;
        path_in(path, dir, de->d_name);
        if (unlink(path) < 0 && errno != ENOENT)
        {
            int e = errno;

            closedir(d);
            return fail(err, errlen, SLOG_ERR, "shape log %s: cannot remove %s: %s", dir, de->d_name,
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
        return fail(err, errlen, SLOG_EINVAL, "shape log %s: a definition of %zu bytes (at most %u, not NULL)",
                    dir, def_len, SLOG_MAX_DEFINITION);
    if (mkdir(dir, 0700) < 0)
    {
        int e = errno;

        if (e != EEXIST)
            return fail(err, errlen, e == ENOENT ? SLOG_ENOENT : SLOG_ERR,
                        "cannot create shape log directory %s: %s%s", dir, strerror(e),
                        e == ENOENT ? " (its parent must exist)" : "");
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            return fail(err, errlen, SLOG_ERR,
                        "cannot create shape log directory %s: it exists and is not a directory", dir);
        path_in(path, dir, META_NAME);
        if (access(path, F_OK) == 0)
            return fail(err, errlen, SLOG_EEXIST,
                        "%s already holds a shape log: open it, or slog_destroy it first", dir);
        /* Leftovers of a creation or a destruction a crash interrupted. */
        rc = remove_files(dir, false, err, errlen);
        if (rc != SLOG_OK)
            return rc;
    }
    if (fsync_parent(dir) < 0)
        return fail(err, errlen, SLOG_ERR, "cannot fsync the parent of %s: %s", dir, strerror(errno));
    seg_path(path, dir, 1);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, errlen, SLOG_ERR, "shape log %s: cannot create segment 1: %s", dir,
                    strerror(errno));
    seg_header_encode(h, 1, SLOG_OFFSET_START);
    if (pwrite_all(fd, h, sizeof(h), 0) < 0 || fdatasync(fd) < 0)
    {
        int e = errno;

        close(fd);
        return fail(err, errlen, SLOG_ERR, "shape log %s: cannot write segment 1: %s", dir, strerror(e));
    }
    close(fd);
    /* meta's directory fsync also makes segment 1's name durable. */
    return meta_write(dir, SLOG_STATE_SNAPSHOT, (int64_t) time(NULL), def, def_len, err, errlen);
}

/* ---- opening: sealed segments, the last segment, recovery ----------------------------- */

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

/* index_add adds the record at pos to the sparse index of the last segment when due. */
static int
index_add(SlogLog *log, SlogOffset off, uint32_t pos)
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

/* corrupt formats the message of damage in segment seq and returns SLOG_ECORRUPT. */
static int __attribute__((format(printf, 5, 6)))
corrupt(const SlogLog *log, uint64_t seq, char *err, size_t errlen, const char *fmt, ...)
{
    char what[160], name[SEG_NAME_LEN + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    seg_name(name, seq);
    return fail(err, errlen, SLOG_ECORRUPT,
                "shape log %s: segment %s is damaged: %s; destroy the log and rebuild the shape",
                log->dir, name, what);
}

/* io_error formats the message of a failed operation on segment seq and returns SLOG_ERR. */
static int
io_error(const SlogLog *log, uint64_t seq, const char *what, int e, char *err, size_t errlen)
{
    char name[SEG_NAME_LEN + 1];

    seg_name(name, seq);
    return fail(err, errlen, SLOG_ERR, "shape log %s: cannot %s segment %s: %s", log->dir, what, name,
                strerror(e));
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

    seg_path(path, log->dir, s->seq);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
    {
        int e = errno;

        if (fd >= 0)
            close(fd);
        return io_error(log, s->seq, "open", e, err, errlen);
    }
    if (st.st_size > UINT32_MAX
        || st.st_size < SLOG_SEGMENT_HEADER + SLOG_RECORD_HEADER + SEAL_FIXED + INDEX_ENTRY_BYTES + SEAL_FOOTER)
    {
        close(fd);
        return corrupt(log, s->seq, err, errlen, "not sealed although a later segment exists (%lld bytes)",
                       (long long) st.st_size);
    }
    size = (uint32_t) st.st_size;
    rc = SLOG_ECORRUPT;
    /* Three small reads: header, footer, seal. */
    if (reader_get(rd, fd, s->seq, 0, SLOG_SEGMENT_HEADER, SLOG_SEGMENT_HEADER, &p) < 0)
        goto ioerr;
    if (!seg_header_decode(p, s->seq, &s->prev))
    {
        rc = corrupt(log, s->seq, err, errlen, "bad header");
        goto out;
    }
    if (reader_get(rd, fd, s->seq, size - SEAL_FOOTER, SEAL_FOOTER, size, &p) < 0)
        goto ioerr;
    seal_pos = get32(p);
    if (get32(p + 4) != SEAL_MAGIC || seal_pos < SLOG_SEGMENT_HEADER
        || seal_pos > size - SLOG_RECORD_HEADER)
    {
        rc = corrupt(log, s->seq, err, errlen, "not sealed although a later segment exists");
        goto out;
    }
    switch (read_record(rd, fd, s->seq, seal_pos, size, &rec, &why))
    {
        case REC_IOERR:
            goto ioerr;
        case REC_BAD:
            rc = corrupt(log, s->seq, err, errlen, "seal record at byte %u: %s", seal_pos, why);
            goto out;
    }
    if (seal_pos + SLOG_RECORD_HEADER + rec.len != size || !seal_decode(&rec, seal_pos, &si))
    {
        rc = corrupt(log, s->seq, err, errlen, "bad seal record at byte %u", seal_pos);
        goto out;
    }
    s->last.lsn = rec.lsn;
    s->last.op = rec.op;
    s->last.start = false;
    s->entries = si.entries;
    s->size = size;
    s->seal_pos = seal_pos;
    s->newest_at = si.newest_at;
    if (slog_offset_cmp(ie_offset(seal_index(&si, 0)), s->prev) <= 0
        || slog_offset_cmp(s->last, ie_offset(seal_index(&si, 0))) < 0)
    {
        rc = corrupt(log, s->seq, err, errlen, "its seal does not match its header");
        goto out;
    }
    rc = SLOG_OK;
out:
    close(fd);
    return rc;
ioerr:
    rc = io_error(log, s->seq, "read", errno, err, errlen);
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
    if (reader_get(rd, fd, seq, pos, SLOG_RECORD_HEADER, size, &h) < 0)
        return -1;
    len = get32(h + 4);
    if (len > SLOG_MAX_PAYLOAD || size - pos - SLOG_RECORD_HEADER < len)
        return 0;
    next = pos + SLOG_RECORD_HEADER + len;
    while (next < size)
    {
        int rc = read_record(rd, fd, seq, next, size, &rec, &why);

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

    seg_path(path, log->dir, s->seq);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
    {
        int e = errno;

        if (fd >= 0)
            close(fd);
        return io_error(log, s->seq, "open", e, err, errlen);
    }
    if (st.st_size > UINT32_MAX)
    {
        close(fd);
        return corrupt(log, s->seq, err, errlen, "%lld bytes", (long long) st.st_size);
    }
    size = (uint32_t) st.st_size;
    if (size < SLOG_SEGMENT_HEADER)
    {
        close(fd);
        return LOAD_TORN_HEADER;
    }
    if (reader_get(rd, fd, s->seq, 0, SLOG_SEGMENT_HEADER, size, &h) < 0)
        goto ioerr;
    if (!seg_header_decode(h, s->seq, &s->prev))
    {
        /*
         * Torn if nothing valid follows. A valid record after it (written later, in the
         * same disk page) means the header was damaged afterwards.
         */
        rc = read_record(rd, fd, s->seq, SLOG_SEGMENT_HEADER, size, &rec, &why);
        close(fd);
        if (rc == REC_OK)
            return corrupt(log, s->seq, err, errlen, "bad header before valid records");
        return LOAD_TORN_HEADER;
    }
    last = s->prev;
    s->entries = 0;
    log->nidx = 0;
    for (pos = SLOG_SEGMENT_HEADER; pos < size; pos += SLOG_RECORD_HEADER + rec.len)
    {
        SlogOffset off;

        rc = read_record(rd, fd, s->seq, pos, size, &rec, &why);
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
                return corrupt(log, s->seq, err, errlen, "record at byte %u (%s) had been synced",
                               pos, why);
            }
            break;              /* a torn tail: cut below */
        }
        off.lsn = rec.lsn;
        off.op = rec.op;
        off.start = false;
        if (rec.type == REC_SEAL)
        {
            if (!seal_decode(&rec, pos, &si) || si.entries != s->entries
                || slog_offset_cmp(off, last) != 0)
            {
                close(fd);
                return corrupt(log, s->seq, err, errlen, "bad seal record at byte %u", pos);
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
            return corrupt(log, s->seq, err, errlen, "entry %s at byte %u does not follow %s",
                           slog_offset_format(off, a), pos, slog_offset_format(last, b));
        }
        if (index_add(log, off, pos) < 0)
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
    rc = io_error(log, s->seq, "read", errno, err, errlen);
    close(fd);
    return rc;
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

/* log_load reads meta and the segments of log->dir into log. */
static int
log_load(SlogLog *log, char *err, size_t errlen)
{
    Reader rd = {0};
    uint64_t *seqs = NULL;
    uint32_t n, i;
    int rc;

    rc = meta_read(log, err, errlen);
    if (rc != SLOG_OK)
        return rc;
    rc = list_segments(log->dir, &seqs, &n, err, errlen);
    if (rc != SLOG_OK)
        return rc;
    if (n == 0)
    {
        free(seqs);
        return fail(err, errlen, SLOG_ECORRUPT,
                    "shape log %s has no segment file: destroy the log and rebuild the shape", log->dir);
    }
    for (i = 1; i < n; i++)
        if (seqs[i] != seqs[i - 1] + 1)
        {
            char name[SEG_NAME_LEN + 1];

            seg_name(name, seqs[i - 1] + 1);
            free(seqs);
            return fail(err, errlen, SLOG_ECORRUPT,
                        "shape log %s: segment %s is missing: destroy the log and rebuild the shape",
                        log->dir, name);
        }
    log->segs_cap = n + 1;
    log->segs = calloc(log->segs_cap, sizeof(Seg));
    if (log->segs == NULL)
    {
        free(seqs);
        return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory", log->dir);
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
            rc = corrupt(log, log->segs[0].seq, err, errlen, "bad header in the only segment");
        else
        {
            /* Created just before a crash, before anything in it was synced. */
            seg_path(path, log->dir, log->segs[n - 1].seq);
            if (unlink(path) < 0)
                rc = io_error(log, log->segs[n - 1].seq, "remove the torn", errno, err, errlen);
            else
            {
                log->nsegs = --n;
                log->durable_pos = log->segs[n - 1].size;
                rc = SLOG_OK;
            }
        }
    }
    if (rc == SLOG_OK && fsync_dir(log->dir) < 0)
        rc = fail(err, errlen, SLOG_ERR, "shape log %s: cannot fsync the directory: %s", log->dir,
                  strerror(errno));
    for (i = 1; i < n && rc == SLOG_OK; i++)
        if (slog_offset_cmp(log->segs[i].prev, log->segs[i - 1].last) != 0)
            rc = corrupt(log, log->segs[i].seq, err, errlen, "it does not continue the segment before it");
    reader_release(&rd);
    if (rc == SLOG_OK)
        log->visible = log->segs[n - 1].last;
    return rc;
}

/* ---- a log: open, append, sync, retain ------------------------------------------------ */

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
        return fail(err, errlen, SLOG_EINVAL, "a shape log needs a directory name of 1 to %d bytes",
                    PATH_MAX - 2 - SEG_NAME_LEN);
    if (segment_bytes < MIN_SEGMENT_BYTES || segment_bytes > MAX_SEGMENT_BYTES
        || segment_bytes / stride > MAX_INDEX_PER_SEGMENT)
        return fail(err, errlen, SLOG_EINVAL,
                    "shape log %s: segment_bytes %u must be %u..%u and at most %u times index_stride %u",
                    dir, segment_bytes, MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES, MAX_INDEX_PER_SEGMENT,
                    stride);
    if ((flags & ~SLOG_CREATE) != 0)
        return fail(err, errlen, SLOG_EINVAL, "shape log %s: unknown flags 0x%x", dir, (unsigned) flags);
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
        return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory", dir);
    }
    log->fd = -1;
    log->segment_bytes = segment_bytes;
    log->index_stride = stride;
    rc = log_load(log, err, errlen);
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
        return fail(err, errlen, SLOG_EINVAL, "a shape log needs a directory name of 1 to %d bytes",
                    PATH_MAX - 2 - SEG_NAME_LEN);
    if (lstat(dir, &st) < 0)
    {
        if (errno == ENOENT)
            return SLOG_OK;
        return fail(err, errlen, SLOG_ERR, "cannot remove shape log %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return fail(err, errlen, SLOG_ERR, "cannot remove shape log %s: not a directory", dir);
    rc = remove_files(dir, true, err, errlen);
    if (rc != SLOG_OK)
        return rc;
    if (rmdir(dir) < 0)
    {
        if (errno == ENOTEMPTY || errno == EEXIST)
            return fail(err, errlen, SLOG_ERR, "shape log %s is removed but its directory holds other files: "
                        "remove them by hand", dir);
        return fail(err, errlen, SLOG_ERR, "cannot remove shape log directory %s: %s", dir,
                    strerror(errno));
    }
    if (fsync_parent(dir) < 0)
        return fail(err, errlen, SLOG_ERR, "cannot fsync the parent of %s: %s", dir, strerror(errno));
    return SLOG_OK;
}

/* broken_error is the answer of a log whose write or sync failed earlier. */
static int
broken_error(const SlogLog *log, char *err, size_t errlen)
{
    return fail(err, errlen, SLOG_ERR, "shape log %s failed earlier (%s) and takes no more writes: "
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
        return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory sealing a segment", log->dir);
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
    put32(buf, crc32c(buf + 4, n - 4));
    if (pwrite_all(log->fd, buf, n, s->size) < 0 || fdatasync(log->fd) < 0)
    {
        log->broken = errno;
        free(buf);
        return io_error(log, s->seq, "seal", log->broken, err, errlen);
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
        if (fsync_dir(log->dir) < 0)
        {
            log->broken = errno;
            return fail(err, errlen, SLOG_ERR, "shape log %s: cannot fsync the directory: %s", log->dir,
                        strerror(errno));
        }
        log->dir_dirty = false;
    }
    if (log->nsegs == log->segs_cap)
    {
        uint32_t ncap = log->segs_cap * 2;
        Seg *n = realloc(log->segs, ncap * sizeof(*n));

        if (n == NULL)
            return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory", log->dir);
        log->segs = n;
        log->segs_cap = ncap;
        prev = &log->segs[log->nsegs - 1];
    }
    seg_path(path, log->dir, seq);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_error(log, seq, "create", errno, err, errlen);
    seg_header_encode(h, seq, prev->last);
    if (pwrite_all(fd, h, sizeof(h), 0) < 0)
    {
        int e = errno;

        close(fd);
        unlink(path);
        return io_error(log, seq, "write", e, err, errlen);
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
        return fail(err, errlen, SLOG_EINVAL, "shape log %s is invalidated: it takes no more entries",
                    log->dir);
    if (len > SLOG_MAX_PAYLOAD || (payload == NULL && len > 0))
        return fail(err, errlen, SLOG_EINVAL, "shape log %s: entry %s has %zu bytes; at most %u are allowed",
                    log->dir, slog_offset_format(off, a), len, SLOG_MAX_PAYLOAD);
    if (slog_offset_cmp(off, s->last) <= 0)
        return fail(err, errlen, SLOG_EINVAL,
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
        return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory", log->dir);
    put32(h + 4, (uint32_t) len);
    put64(h + 8, lsn);
    put32(h + 16, op);
    h[20] = kind;
    h[21] = REC_ENTRY;
    h[22] = h[23] = 0;
    put32(h + 24, log->durable_pos);
    crc = crc32c_update(0xFFFFFFFFu, h + 4, SLOG_RECORD_HEADER - 4);
    if (len > 0)
        crc = crc32c_update(crc, payload, len);
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
        return io_error(log, s->seq, "append to", e, err, errlen);
    }
    index_add(log, off, s->size);   /* cannot fail: room reserved */
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
            return io_error(log, s->seq, "fdatasync", log->broken, err, errlen);
        }
        log->durable_pos = s->size;
    }
    if (log->dir_dirty)
    {
        if (fsync_dir(log->dir) < 0)
        {
            log->broken = errno;
            return fail(err, errlen, SLOG_ERR, "shape log %s: cannot fsync the directory: %s", log->dir,
                        strerror(errno));
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
        seg_path(path, log->dir, log->segs[i].seq);
        if (unlink(path) < 0 && errno != ENOENT)
        {
            rc = io_error(log, log->segs[i].seq, "remove", errno, err, errlen);
            break;
        }
        if (fsync_dir(log->dir) < 0)
        {
            /* Gone from the directory, durably or not: forget it, and write no more. */
            log->broken = errno;
            rc = fail(err, errlen, SLOG_ERR, "shape log %s: cannot fsync the directory: %s", log->dir,
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
        return fail(err, errlen, SLOG_EINVAL, "shape log %s: unknown state %d", log->dir, (int) state);
    if (log->state == SLOG_STATE_INVALID && state != SLOG_STATE_INVALID)
        return fail(err, errlen, SLOG_EINVAL,
                    "shape log %s is invalidated for good: destroy it and build a new one", log->dir);
    if (state == log->state)
        return SLOG_OK;
    rc = meta_write(log->dir, state, log->created_at, log->def, log->def_len, err, errlen);
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
    seg_path(path, c->log->dir, s->seq);
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    c->fd_seq = s->seq;
    return c->fd;
}

/* cursor_idle drops what a caught-up cursor needs not hold: its buffer and descriptor. */
static void
cursor_idle(SlogCursor *c)
{
    reader_release(&c->rd);
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
        return io_error(c->log, s->seq, "read", errno, err, errlen);
    return corrupt(c->log, s->seq, err, errlen, "record at byte %u: %s", pos, why);
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
        return io_error(log, s->seq, "open", errno, err, errlen);
    limit = s->seal_pos ? s->seal_pos : s->size;
    /* The last sparse index entry at or before x: scan from there. */
    if (s->seal_pos != 0)
    {
        SealInfo si;

        rc = read_record(&c->rd, fd, s->seq, s->seal_pos, s->size, &rec, &why);
        if (rc != REC_OK)
            return cursor_corrupt(c, s, s->seal_pos, rc, &rec, why, err, errlen);
        if (!seal_decode(&rec, s->seal_pos, &si))
            return corrupt(log, s->seq, err, errlen, "bad seal record at byte %u", s->seal_pos);
        lo = 0;
        hi = si.nindex;
        while (lo < hi)         /* first index entry after x */
        {
            uint32_t mid = lo + (hi - lo) / 2;

            if (slog_offset_cmp(ie_offset(seal_index(&si, mid)), x) > 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo == 0)
            return SLOG_GONE;
        pos = seal_index(&si, lo - 1).pos;
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

        rc = read_record(&c->rd, fd, s->seq, pos, limit, &rec, &why);
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
        return fail(err, errlen, SLOG_ERR, "shape log %s: out of memory", log->dir);
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
        reader_release(&c->rd); /* back to a small buffer after a large entry */
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
            return io_error(log, s->seq, "open", errno, err, errlen);
        rc = read_record(&c->rd, fd, s->seq, c->pos, limit, &rec, &why);
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
