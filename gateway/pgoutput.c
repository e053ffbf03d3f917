/*
 * gateway/pgoutput.c -- decoder of pgoutput (protocol version 1) messages, and the
 * relation cache.
 *
 * The decoder is a cursor over the message buffer: every read checks the bytes left
 * first, so a truncated or lying message stops with an error naming the message type and
 * the offset, never with a read past the end. Claimed counts are checked against the
 * bytes left (each column needs at least one byte) and against PGO_MAX_COLUMNS before
 * anything is allocated.
 */
#include "pgoutput.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cursor over one message ------------------------------------------------------- */

/* Reader: the message being decoded and where decoding stands. */
typedef struct Reader
{
    const unsigned char *buf;   /* the message */
    size_t len;                 /* its length */
    size_t pos;                 /* next byte to read */
    int type;                   /* message type byte, for errors */
    char *err;                  /* caller's error buffer */
    size_t errlen;              /* its size */
} Reader;

/* fail writes "pgoutput <Type> ('<c>') message: <what> at offset <pos>" and returns -1. */
static int __attribute__((format(printf, 2, 3)))
fail(Reader *r, const char *fmt, ...)
{
    char what[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (r->err != NULL && r->errlen > 0)
    {
        if (r->type >= 0x20 && r->type < 0x7f)
            snprintf(r->err, r->errlen, "pgoutput %s ('%c') message: %s at offset %zu of %zu",
                     pgo_msg_type_name(r->type), r->type, what, r->pos, r->len);
        else
            snprintf(r->err, r->errlen, "pgoutput message of type 0x%02x: %s at offset %zu of %zu",
                     (unsigned) r->type & 0xff, what, r->pos, r->len);
    }
    return -1;
}

/* need fails unless n bytes are left; what names the field being read. */
static int
need(Reader *r, size_t n, const char *what)
{
    if (r->len - r->pos < n)
        return fail(r, "truncated: %s needs %zu bytes, %zu left", what, n, r->len - r->pos);
    return 0;
}

static int
get_u8(Reader *r, uint8_t *out, const char *what)
{
    if (need(r, 1, what) < 0)
        return -1;
    *out = r->buf[r->pos++];
    return 0;
}

static int
get_u16(Reader *r, uint16_t *out, const char *what)
{
    if (need(r, 2, what) < 0)
        return -1;
    *out = (uint16_t) ((r->buf[r->pos] << 8) | r->buf[r->pos + 1]);
    r->pos += 2;
    return 0;
}

static int
get_u32(Reader *r, uint32_t *out, const char *what)
{
    const unsigned char *p;

    if (need(r, 4, what) < 0)
        return -1;
    p = r->buf + r->pos;
    *out = ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
    r->pos += 4;
    return 0;
}

static int
get_u64(Reader *r, uint64_t *out, const char *what)
{
    uint32_t hi, lo;

    if (need(r, 8, what) < 0)
        return -1;
    get_u32(r, &hi, what);
    get_u32(r, &lo, what);
    *out = ((uint64_t) hi << 32) | lo;
    return 0;
}

static int
get_i64(Reader *r, int64_t *out, const char *what)
{
    uint64_t u;

    if (get_u64(r, &u, what) < 0)
        return -1;
    memcpy(out, &u, sizeof(u));
    return 0;
}

/* get_str reads a NUL-terminated string; *out points into the buffer. */
static int
get_str(Reader *r, const char **out, const char *what)
{
    const unsigned char *nul;

    nul = r->pos < r->len ? memchr(r->buf + r->pos, '\0', r->len - r->pos) : NULL;
    if (nul == NULL)
        return fail(r, "truncated: %s has no terminating NUL", what);
    *out = (const char *) r->buf + r->pos;
    r->pos = (size_t) (nul - r->buf) + 1;
    return 0;
}

/* ---- scratch ----------------------------------------------------------------------- */

/*
 * reserve makes m's scratch hold at least bytes bytes (contents kept). The scratch is
 * never NULL afterwards, even for 0 bytes, so pointer arithmetic on it is defined.
 */
static int
reserve(PgoMsg *m, Reader *r, size_t bytes)
{
    size_t cap;
    void *p;

    if (bytes <= m->scratch_cap && m->scratch != NULL)
        return 0;
    cap = m->scratch_cap < 256 ? 256 : m->scratch_cap;
    while (cap < bytes)
        cap *= 2;
    p = realloc(m->scratch, cap);
    if (p == NULL)
        return fail(r, "out of memory for %zu bytes of scratch", cap);
    m->scratch = p;
    m->scratch_cap = cap;
    return 0;
}

/* ---- message bodies ---------------------------------------------------------------- */

/*
 * read_tuple reads TupleData into the scratch's datums [*used, *used + ncols); the caller
 * sets tup->cols once every tuple of the message is read (the scratch may move).
 */
static int
read_tuple(PgoMsg *m, Reader *r, PgoTuple *tup, size_t *used, const char *which)
{
    uint16_t ncols;
    PgoDatum *cols;

    if (get_u16(r, &ncols, "tuple column count") < 0)
        return -1;
    if (ncols > PGO_MAX_COLUMNS)
        return fail(r, "%s tuple claims %u columns (at most %d)", which, ncols, PGO_MAX_COLUMNS);
    if (ncols > r->len - r->pos)
        return fail(r, "%s tuple claims %u columns but only %zu bytes are left", which, ncols,
                    r->len - r->pos);
    if (reserve(m, r, (*used + ncols) * sizeof(PgoDatum)) < 0)
        return -1;
    cols = (PgoDatum *) m->scratch + *used;
    for (int i = 0; i < ncols; i++)
    {
        uint8_t kind;
        uint32_t vlen;

        if (get_u8(r, &kind, "column kind") < 0)
            return -1;
        cols[i].kind = (char) kind;
        cols[i].data = NULL;
        cols[i].len = 0;
        switch (kind)
        {
            case PGO_DATUM_NULL:
            case PGO_DATUM_UNCHANGED:
                break;
            case PGO_DATUM_TEXT:
            case PGO_DATUM_BINARY:
                if (get_u32(r, &vlen, "column value length") < 0)
                    return -1;
                if (vlen > r->len - r->pos)
                    return fail(r, "%s tuple column %d claims %u bytes but %zu are left", which,
                                i + 1, vlen, r->len - r->pos);
                cols[i].data = (const char *) r->buf + r->pos;
                cols[i].len = vlen;
                r->pos += vlen;
                break;
            default:
                r->pos--;
                return fail(r, "%s tuple column %d has unknown kind 0x%02x", which, i + 1, kind);
        }
    }
    tup->ncols = ncols;
    tup->cols = NULL;
    *used += ncols;
    return 0;
}

static int
decode_relation(PgoMsg *m, Reader *r)
{
    PgoRelation *rel = &m->relation;
    uint8_t replident;
    uint16_t ncols;

    memset(rel, 0, sizeof(*rel));
    if (get_u32(r, &rel->relid, "relation id") < 0
        || get_str(r, &rel->nspname, "namespace") < 0
        || get_str(r, &rel->relname, "relation name") < 0
        || get_u8(r, &replident, "replica identity") < 0
        || get_u16(r, &ncols, "column count") < 0)
        return -1;
    rel->replident = (char) replident;
    if (ncols > PGO_MAX_COLUMNS)
        return fail(r, "relation claims %u columns (at most %d)", ncols, PGO_MAX_COLUMNS);
    /* flags, name's NUL, type oid, typmod: at least 10 bytes a column */
    if (ncols > (r->len - r->pos) / 10)
        return fail(r, "relation claims %u columns but only %zu bytes are left", ncols,
                    r->len - r->pos);
    if (reserve(m, r, ncols * sizeof(PgoColumn)) < 0)
        return -1;
    rel->cols = m->scratch;
    for (int i = 0; i < ncols; i++)
    {
        PgoColumn *c = &rel->cols[i];
        uint32_t typmod;

        if (get_u8(r, &c->flags, "column flags") < 0
            || get_str(r, &c->name, "column name") < 0
            || get_u32(r, &c->type_oid, "column type oid") < 0
            || get_u32(r, &typmod, "column type modifier") < 0)
            return -1;
        memcpy(&c->typmod, &typmod, sizeof(typmod));
    }
    rel->ncols = ncols;
    return 0;
}

/* decode_change decodes Insert, Update and Delete. */
static int
decode_change(PgoMsg *m, Reader *r)
{
    size_t used = 0;
    uint32_t relid;
    uint8_t tag;

    if (get_u32(r, &relid, "relation id") < 0 || get_u8(r, &tag, "tuple tag") < 0)
        return -1;
    if (m->type == PGO_INSERT)
    {
        m->insert.relid = relid;
        if (tag != 'N')
        {
            r->pos--;
            return fail(r, "expected new tuple tag 'N', found 0x%02x", tag);
        }
        if (read_tuple(m, r, &m->insert.newtup, &used, "new") < 0)
            return -1;
        m->insert.newtup.cols = m->scratch;
    }
    else if (m->type == PGO_UPDATE)
    {
        m->update.relid = relid;
        m->update.old_kind = 0;
        m->update.oldtup.ncols = 0;
        m->update.oldtup.cols = NULL;
        if (tag == 'K' || tag == 'O')
        {
            m->update.old_kind = (char) tag;
            if (read_tuple(m, r, &m->update.oldtup, &used, tag == 'K' ? "old key" : "old") < 0
                || get_u8(r, &tag, "new tuple tag") < 0)
                return -1;
        }
        if (tag != 'N')
        {
            r->pos--;
            return fail(r, "expected tuple tag 'K', 'O' or 'N', found 0x%02x", tag);
        }
        if (read_tuple(m, r, &m->update.newtup, &used, "new") < 0)
            return -1;
        m->update.oldtup.cols = m->update.old_kind ? m->scratch : NULL;
        m->update.newtup.cols = (PgoDatum *) m->scratch + m->update.oldtup.ncols;
    }
    else
    {
        m->delete.relid = relid;
        if (tag != 'K' && tag != 'O')
        {
            r->pos--;
            return fail(r, "expected old tuple tag 'K' or 'O', found 0x%02x", tag);
        }
        m->delete.old_kind = (char) tag;
        if (read_tuple(m, r, &m->delete.oldtup, &used, tag == 'K' ? "old key" : "old") < 0)
            return -1;
        m->delete.oldtup.cols = m->scratch;
    }
    return 0;
}

static int
decode_truncate(PgoMsg *m, Reader *r)
{
    uint32_t nrels;
    uint32_t *relids;

    if (get_u32(r, &nrels, "relation count") < 0
        || get_u8(r, &m->truncate.options, "options") < 0)
        return -1;
    if (nrels > (r->len - r->pos) / 4)
        return fail(r, "claims %u relations but only %zu bytes are left", nrels,
                    r->len - r->pos);
    if (reserve(m, r, (size_t) nrels * sizeof(uint32_t)) < 0)
        return -1;
    relids = m->scratch;
    for (uint32_t i = 0; i < nrels; i++)
        get_u32(r, &relids[i], "relation id");
    m->truncate.nrels = nrels;
    m->truncate.relids = nrels ? relids : NULL;
    return 0;
}

static int
decode_message(PgoMsg *m, Reader *r)
{
    uint32_t len;

    if (get_u8(r, &m->message.flags, "flags") < 0
        || get_u64(r, &m->message.lsn, "LSN") < 0
        || get_str(r, &m->message.prefix, "prefix") < 0
        || get_u32(r, &len, "content length") < 0)
        return -1;
    if (len > r->len - r->pos)
        return fail(r, "content claims %u bytes but %zu are left", len, r->len - r->pos);
    m->message.content = (const char *) r->buf + r->pos;
    m->message.len = len;
    r->pos += len;
    return 0;
}

/* ---- public ------------------------------------------------------------------------ */

void
pgo_msg_init(PgoMsg *m)
{
    memset(m, 0, sizeof(*m));
}

void
pgo_msg_free(PgoMsg *m)
{
    free(m->scratch);
    memset(m, 0, sizeof(*m));
}

const char *
pgo_msg_type_name(int type)
{
    switch (type)
    {
        case PGO_BEGIN: return "Begin";
        case PGO_COMMIT: return "Commit";
        case PGO_ORIGIN: return "Origin";
        case PGO_RELATION: return "Relation";
        case PGO_TYPE: return "Type";
        case PGO_INSERT: return "Insert";
        case PGO_UPDATE: return "Update";
        case PGO_DELETE: return "Delete";
        case PGO_TRUNCATE: return "Truncate";
        case PGO_MESSAGE: return "Message";
        /* protocol 2 (streaming) and 3 (two-phase), which version 1 never sends */
        case 'S': return "Stream Start";
        case 'E': return "Stream Stop";
        case 'c': return "Stream Commit";
        case 'A': return "Stream Abort";
        case 'b': return "Begin Prepare";
        case 'P': return "Prepare";
        case 'K': return "Commit Prepared";
        case 'r': return "Rollback Prepared";
        case 'p': return "Stream Prepare";
        default: return "unknown";
    }
}

int
pgo_decode(PgoMsg *m, const void *buf, size_t len, char *err, size_t errlen)
{
    Reader r = {buf, len, 0, -1, err, errlen};
    uint8_t type;
    int rc;

    if (buf == NULL || len == 0)
    {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "pgoutput message: empty (no type byte) at offset 0");
        return -1;
    }
    get_u8(&r, &type, "type");
    r.type = type;
    m->type = (PgoMsgType) type;
    switch (type)
    {
        case PGO_BEGIN:
            rc = get_u64(&r, &m->begin.final_lsn, "final LSN") < 0
                || get_i64(&r, &m->begin.commit_time, "commit timestamp") < 0
                || get_u32(&r, &m->begin.xid, "xid") < 0 ? -1 : 0;
            break;
        case PGO_COMMIT:
            rc = get_u8(&r, &m->commit.flags, "flags") < 0
                || get_u64(&r, &m->commit.commit_lsn, "commit LSN") < 0
                || get_u64(&r, &m->commit.end_lsn, "end LSN") < 0
                || get_i64(&r, &m->commit.commit_time, "commit timestamp") < 0 ? -1 : 0;
            break;
        case PGO_ORIGIN:
            rc = get_u64(&r, &m->origin.commit_lsn, "origin commit LSN") < 0
                || get_str(&r, &m->origin.name, "origin name") < 0 ? -1 : 0;
            break;
        case PGO_RELATION:
            rc = decode_relation(m, &r);
            break;
        case PGO_TYPE:
            rc = get_u32(&r, &m->type_info.oid, "type oid") < 0
                || get_str(&r, &m->type_info.nspname, "namespace") < 0
                || get_str(&r, &m->type_info.name, "type name") < 0 ? -1 : 0;
            break;
        case PGO_INSERT:
        case PGO_UPDATE:
        case PGO_DELETE:
            rc = decode_change(m, &r);
            break;
        case PGO_TRUNCATE:
            rc = decode_truncate(m, &r);
            break;
        case PGO_MESSAGE:
            rc = decode_message(m, &r);
            break;
        default:
            r.pos = 0;
            if (strcmp(pgo_msg_type_name(type), "unknown") != 0)
                return fail(&r, "not part of protocol version 1 (streaming and two-phase are "
                            "not requested)");
            return fail(&r, "unknown message type");
    }
    if (rc < 0)
        return -1;
    if (r.pos != r.len)
        return fail(&r, "%zu unexpected trailing bytes", r.len - r.pos);
    return 0;
}

/* ---- relation cache ---------------------------------------------------------------- */

/* rc_error writes a relation cache error into the caller's buffer (which may be NULL). */
static void __attribute__((format(printf, 3, 4)))
rc_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* PgoRelcache: open addressing on relid, linear probing, no deletions. */
struct PgoRelcache
{
    PgoRelation **slots;        /* cap slots, NULL when empty; entries owned (see refcount) */
    size_t cap;                 /* power of two */
    size_t count;               /* entries in use */
};

/* rel_free frees a copy made by rel_copy (one allocation). */
static void
rel_free(PgoRelation *rel)
{
    free(rel);
}

/*
 * rel_copy makes an owned copy of rel in one allocation: the PgoRelation, its columns,
 * then every string. refcount 1 (the cache's reference).
 */
static PgoRelation *
rel_copy(const PgoRelation *rel)
{
    size_t size, nsp, name, off;
    PgoRelation *copy;
    char *s;

    nsp = strlen(rel->nspname) + 1;
    name = strlen(rel->relname) + 1;
    size = sizeof(PgoRelation) + (size_t) rel->ncols * sizeof(PgoColumn) + nsp + name;
    for (int i = 0; i < rel->ncols; i++)
        size += strlen(rel->cols[i].name) + 1;
    copy = malloc(size);
    if (copy == NULL)
        return NULL;
    *copy = *rel;
    copy->cols = (PgoColumn *) (copy + 1);
    s = (char *) (copy->cols + rel->ncols);
    off = 0;
    memcpy(s + off, rel->nspname, nsp);
    copy->nspname = s + off;
    off += nsp;
    memcpy(s + off, rel->relname, name);
    copy->relname = s + off;
    off += name;
    for (int i = 0; i < rel->ncols; i++)
    {
        size_t n = strlen(rel->cols[i].name) + 1;

        copy->cols[i] = rel->cols[i];
        memcpy(s + off, rel->cols[i].name, n);
        copy->cols[i].name = s + off;
        off += n;
    }
    copy->refcount = 1;
    return copy;
}

static size_t
slot_of(const PgoRelcache *rc, uint32_t relid)
{
    size_t i = (relid * UINT32_C(2654435761)) & (rc->cap - 1);

    while (rc->slots[i] != NULL && rc->slots[i]->relid != relid)
        i = (i + 1) & (rc->cap - 1);
    return i;
}

PgoRelcache *
pgo_relcache_new(void)
{
    PgoRelcache *rc = calloc(1, sizeof(*rc));

    if (rc == NULL)
        return NULL;
    rc->cap = 16;
    rc->slots = calloc(rc->cap, sizeof(*rc->slots));
    if (rc->slots == NULL)
    {
        free(rc);
        return NULL;
    }
    return rc;
}

void
pgo_relcache_free(PgoRelcache *rc)
{
    if (rc == NULL)
        return;
    for (size_t i = 0; i < rc->cap; i++)
        if (rc->slots[i] != NULL)
            pgo_relation_release(rc->slots[i]);
    free(rc->slots);
    free(rc);
}

/* grow doubles the table. */
static int
grow(PgoRelcache *rc)
{
    PgoRelcache bigger = {NULL, rc->cap * 2, rc->count};

    bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
    if (bigger.slots == NULL)
        return -1;
    for (size_t i = 0; i < rc->cap; i++)
        if (rc->slots[i] != NULL)
            bigger.slots[slot_of(&bigger, rc->slots[i]->relid)] = rc->slots[i];
    free(rc->slots);
    *rc = bigger;
    return 0;
}

const PgoRelation *
pgo_relcache_put(PgoRelcache *rc, const PgoRelation *rel, char *err, size_t errlen)
{
    PgoRelation *copy;
    size_t i;
    int ok = 1;

    if (rel == NULL || rel->nspname == NULL || rel->relname == NULL
        || rel->ncols < 0 || rel->ncols > PGO_MAX_COLUMNS || (rel->ncols > 0 && rel->cols == NULL))
        ok = 0;
    for (int c = 0; ok && c < rel->ncols; c++)
        if (rel->cols[c].name == NULL)
            ok = 0;
    if (!ok)
    {
        rc_error(err, errlen, "pgoutput relation cache: invalid relation");
        return NULL;
    }
    if ((rc->count + 1) * 4 > rc->cap * 3 && grow(rc) < 0)
    {
        rc_error(err, errlen, "pgoutput relation cache: out of memory adding relation %u", rel->relid);
        return NULL;
    }
    copy = rel_copy(rel);
    if (copy == NULL)
    {
        rc_error(err, errlen, "pgoutput relation cache: out of memory copying relation %s.%s",
                 rel->nspname, rel->relname);
        return NULL;
    }
    i = slot_of(rc, rel->relid);
    if (rc->slots[i] != NULL)
        pgo_relation_release(rc->slots[i]);
    else
        rc->count++;
    rc->slots[i] = copy;
    return copy;
}

const PgoRelation *
pgo_relcache_get(const PgoRelcache *rc, uint32_t relid)
{
    return rc->slots[slot_of(rc, relid)];
}

size_t
pgo_relcache_count(const PgoRelcache *rc)
{
    return rc->count;
}

void
pgo_relation_retain(const PgoRelation *rel)
{
    ((PgoRelation *) rel)->refcount++;
}

void
pgo_relation_release(const PgoRelation *rel)
{
    PgoRelation *r = (PgoRelation *) rel;

    if (r != NULL && --r->refcount == 0)
        rel_free(r);
}
