/*
 * gateway/shapelog_io.c -- the shape log's on-disk format and files: CRC-32C, segment names
 * and paths, writes and directory fsyncs, segment headers, seals, meta, and the messages
 * of a damaged or unreadable segment.
 *
 * The format is described in shapelog.h.
 */
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
#include <unistd.h>

#include "errbuf.h"
#include "shapelog_int.h"

/* ---- checksums -------------------------------------------------------------------------- */

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

/* slog_crc32c_update continues a CRC-32C over n bytes: start from 0xFFFFFFFF, finish with ~. */
uint32_t
slog_crc32c_update(uint32_t crc, const void *data, size_t n)
{
#ifdef HAVE_CRC32C_HW
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_hw(crc, data, n);
#endif
    return crc32c_sw(crc, data, n);
}

uint32_t
slog_crc32c(const void *data, size_t n)
{
    return ~slog_crc32c_update(0xFFFFFFFFu, data, n);
}

/* ---- files ------------------------------------------------------------------------------ */

/* slog_seg_name writes the file name of segment seq into buf (SEG_NAME_LEN + 1 bytes). */
void
slog_seg_name(char *buf, uint64_t seq)
{
    snprintf(buf, SEG_NAME_LEN + 1, "%016" PRIx64 ".seg", seq);
}

/* slog_parse_seg_name: whether name is a segment file name; its number in *seq. */
bool
slog_parse_seg_name(const char *name, uint64_t *seq)
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

/* slog_path_in writes dir/name into buf (PATH_MAX bytes; dir's length was checked). */
void
slog_path_in(char *buf, const char *dir, const char *name)
{
    snprintf(buf, PATH_MAX, "%s/%s", dir, name);
}

void
slog_seg_path(char *buf, const char *dir, uint64_t seq)
{
    char name[SEG_NAME_LEN + 1];

    slog_seg_name(name, seq);
    slog_path_in(buf, dir, name);
}

/* slog_pwrite_all writes n bytes at off, retrying short writes; 0, or -1 with errno. */
int
slog_pwrite_all(int fd, const void *buf, size_t n, off_t off)
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

/* slog_fsync_dir makes the entries of directory dir durable; 0, or -1 with errno. */
int
slog_fsync_dir(const char *dir)
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

/* ---- segment headers and seals ---------------------------------------------------------- */

/* slog_seal_decode checks the seal record rec found at pos and fills *si; false when invalid. */
bool
slog_seal_decode(const Record *rec, uint32_t pos, SealInfo *si)
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

/* slog_seal_index returns index entry i of a decoded seal. */
IndexEntry
slog_seal_index(const SealInfo *si, uint32_t i)
{
    const unsigned char *p = si->index + (size_t) i * INDEX_ENTRY_BYTES;
    IndexEntry ie = {get64(p), get32(p + 8), get32(p + 12)};

    return ie;
}

/* slog_seg_header_encode writes the SLOG_SEGMENT_HEADER bytes of segment seq into h. */
void
slog_seg_header_encode(unsigned char *h, uint64_t seq, SlogOffset prev)
{
    memcpy(h, SEG_MAGIC, 8);
    put32(h + 8, FORMAT_VERSION);
    put32(h + 12, prev.start ? SEG_FLAG_START : 0);
    put64(h + 16, seq);
    put64(h + 24, prev.lsn);
    put32(h + 32, prev.op);
    put32(h + 36, slog_crc32c(h, 36));
}

/* slog_seg_header_decode checks the header of segment seq and reads its prev offset. */
bool
slog_seg_header_decode(const unsigned char *h, uint64_t seq, SlogOffset *prev)
{
    uint32_t flags = get32(h + 12);

    if (memcmp(h, SEG_MAGIC, 8) != 0 || get32(h + 8) != FORMAT_VERSION
        || get32(h + 36) != slog_crc32c(h, 36) || get64(h + 16) != seq || (flags & ~SEG_FLAG_START) != 0)
        return false;
    prev->start = (flags & SEG_FLAG_START) != 0;
    prev->lsn = get64(h + 24);
    prev->op = get32(h + 32);
    return !prev->start || (prev->lsn == 0 && prev->op == 0);
}

/* ---- meta ------------------------------------------------------------------------------- */

/* slog_meta_write replaces meta atomically: meta.tmp, fdatasync, rename, fsync the directory. */
int
slog_meta_write(const char *dir, SlogState state, int64_t created_at, const void *def, size_t def_len,
                char *err, size_t errlen)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    size_t n = META_FIXED + def_len + 4;
    unsigned char *buf = malloc(n);
    int fd, e;

    if (buf == NULL)
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: out of memory writing meta", dir);
    memcpy(buf, META_MAGIC, 8);
    put32(buf + 8, FORMAT_VERSION);
    put32(buf + 12, (uint32_t) state);
    put64(buf + 16, (uint64_t) created_at);
    put32(buf + 24, (uint32_t) def_len);
    if (def_len > 0)
        memcpy(buf + META_FIXED, def, def_len);
    put32(buf + META_FIXED + def_len, slog_crc32c(buf, META_FIXED + def_len));
    slog_path_in(tmp, dir, META_TMP_NAME);
    slog_path_in(path, dir, META_NAME);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto failed;
    if (slog_pwrite_all(fd, buf, n, 0) < 0 || fdatasync(fd) < 0)
    {
        e = errno;
        close(fd);
        errno = e;
        goto failed;
    }
    close(fd);
    if (rename(tmp, path) < 0 || slog_fsync_dir(dir) < 0)
        goto failed;
    free(buf);
    return SLOG_OK;

failed:
    e = errno;
    unlink(tmp);
    free(buf);
    return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot write %s: %s", dir, META_NAME,
                       strerror(e));
}

/* slog_meta_read loads meta into log. */
int
slog_meta_read(SlogLog *log, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat st;
    unsigned char *buf = NULL;
    size_t n, got = 0;
    uint32_t def_len, state;
    int fd;

    slog_path_in(path, log->dir, META_NAME);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
    {
        if (stat(log->dir, &st) < 0)
            return errbuf_fail(SLOG_ENOENT, err, errlen, "shape log directory %s does not exist", log->dir);
        return errbuf_fail(SLOG_ENOENT, err, errlen, "%s holds no shape log (no %s file)", log->dir,
                           META_NAME);
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
        || def_len != n - META_FIXED - 4 || get32(buf + n - 4) != slog_crc32c(buf, n - 4)
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
    return errbuf_fail(SLOG_ECORRUPT, err, errlen,
                       "shape log %s: %s is damaged: destroy the log and rebuild the shape", log->dir,
                       META_NAME);
ioerr:
    {
        int e = errno;

        free(buf);
        if (fd >= 0)
            close(fd);
        return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot read %s: %s", log->dir, META_NAME,
                           strerror(e));
    }
}

/* ---- error messages --------------------------------------------------------------------- */

/* slog_corrupt formats the message of damage in segment seq and returns SLOG_ECORRUPT. */
int __attribute__((format(printf, 5, 6)))
slog_corrupt(const SlogLog *log, uint64_t seq, char *err, size_t errlen, const char *fmt, ...)
{
    char what[160], name[SEG_NAME_LEN + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    slog_seg_name(name, seq);
    return errbuf_fail(SLOG_ECORRUPT, err, errlen,
                       "shape log %s: segment %s is damaged: %s; destroy the log and rebuild the shape",
                       log->dir, name, what);
}

/* slog_io_error formats the message of a failed operation on segment seq and returns SLOG_ERR. */
int
slog_io_error(const SlogLog *log, uint64_t seq, const char *what, int e, char *err, size_t errlen)
{
    char name[SEG_NAME_LEN + 1];

    slog_seg_name(name, seq);
    return errbuf_fail(SLOG_ERR, err, errlen, "shape log %s: cannot %s segment %s: %s", log->dir, what, name,
                       strerror(e));
}
