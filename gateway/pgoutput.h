/*
 * gateway/pgoutput.h -- decoder of PostgreSQL's pgoutput logical replication messages.
 *
 * One call, pgo_decode(), turns one pgoutput message -- the payload of an XLogData ('w')
 * message on a replication connection, or one row of pg_logical_slot_get_binary_changes()
 * -- into a PgoMsg. Protocol version 1 (proto_version '1', no streaming, no two-phase).
 * The decoder depends on nothing but libc, allocates only a scratch array that grows to
 * the widest message seen (bounded: at most PGO_MAX_COLUMNS columns per tuple), and never
 * reads outside the buffer it is given: a malformed message is an error naming the message
 * type and the offset where decoding stopped.
 *
 * Zero copy: every string and value in a decoded PgoMsg points into the caller's buffer,
 * which must outlive the use of the PgoMsg. Strings (names, prefixes) are NUL-terminated
 * in the wire format, so they are C strings; column values (PgoDatum) are pointer +
 * length and are NOT NUL-terminated.
 *
 *     PgoMsg m;
 *     char err[256];
 *
 *     pgo_msg_init(&m);
 *     if (pgo_decode(&m, buf, len, err, sizeof(err)) < 0)
 *         ... err says e.g. "pgoutput Insert ('I') message: truncated at offset 9 ..."
 *     else if (m.type == PGO_INSERT)
 *         ... m.insert.relid, m.insert.newtup.cols[i].kind / .data / .len
 *     pgo_msg_free(&m);                       // frees the scratch, not the buffer
 *
 * The relation cache (PgoRelcache, at the end) keeps an owned copy of the latest Relation
 * message of each table, which Insert/Update/Delete messages refer to by relid.
 *
 * Message formats: PostgreSQL docs, "Logical Replication Message Formats"
 * (protocol-logicalrep-message-formats).
 */
#ifndef FERRY_GATEWAY_PGOUTPUT_H
#define FERRY_GATEWAY_PGOUTPUT_H

#include <stddef.h>
#include <stdint.h>

#define PGO_MAX_COLUMNS 1664    /* Postgres's MaxTupleAttributeNumber: more is malformed */

/* Microseconds between the Unix epoch and the Postgres epoch (2000-01-01 00:00 UTC). */
#define PGO_EPOCH_OFFSET_US INT64_C(946684800000000)

/* The message types of protocol version 1; the value is the message's first byte. */
typedef enum PgoMsgType
{
    PGO_BEGIN = 'B',            /* a transaction starts */
    PGO_COMMIT = 'C',           /* the transaction commits */
    PGO_ORIGIN = 'O',           /* the transaction came from a replication origin */
    PGO_RELATION = 'R',         /* a table's description (sent before its first change) */
    PGO_TYPE = 'Y',             /* a non-builtin type's name (sent before its first use) */
    PGO_INSERT = 'I',           /* a row was inserted */
    PGO_UPDATE = 'U',           /* a row was updated */
    PGO_DELETE = 'D',           /* a row was deleted */
    PGO_TRUNCATE = 'T',         /* one or more tables were truncated */
    PGO_MESSAGE = 'M'           /* pg_logical_emit_message() (only with messages 'true') */
} PgoMsgType;

/* PgoDatum.kind: how a column of a tuple is sent. */
#define PGO_DATUM_NULL 'n'      /* SQL NULL: no value */
#define PGO_DATUM_UNCHANGED 'u' /* unchanged TOASTed value: not sent, see PgoDatum */
#define PGO_DATUM_TEXT 't'      /* the value in the type's text output format */
#define PGO_DATUM_BINARY 'b'    /* the value in the type's binary format (binary 'true') */

/* PgoColumn.flags */
#define PGO_COLUMN_KEY 1        /* the column is part of the replica identity (all with FULL) */

/* Truncate options (PgoMsg.truncate.options) */
#define PGO_TRUNCATE_CASCADE 1  /* TRUNCATE ... CASCADE */
#define PGO_TRUNCATE_RESTART_IDENTITY 2 /* TRUNCATE ... RESTART IDENTITY */

/* Message flags (PgoMsg.message.flags) */
#define PGO_MESSAGE_TRANSACTIONAL 1 /* emitted with transactional = true */

/*
 * PgoDatum: one column of a tuple. For 't' and 'b' data/len are the value's bytes in the
 * message buffer (not NUL-terminated; len may be 0 for an empty string). For 'n' and
 * 'u' data is NULL and len 0.
 *
 * 'u' appears in the NEW tuple of an Update when a TOASTed column was not changed by the
 * UPDATE: its value is whatever the old row had. With REPLICA IDENTITY FULL the OLD tuple
 * ('O') carries the full value, so the caller takes it from there.
 */
typedef struct PgoDatum
{
    const char *data;           /* value bytes inside the buffer; NULL for 'n' and 'u' */
    uint32_t len;               /* number of bytes at data */
    char kind;                  /* PGO_DATUM_NULL, _UNCHANGED, _TEXT or _BINARY */
} PgoDatum;

/* PgoTuple: the columns of one row, in the order of the relation's columns. */
typedef struct PgoTuple
{
    PgoDatum *cols;             /* ncols entries, in the PgoMsg's scratch (owned by the PgoMsg) */
    int ncols;                  /* number of columns sent (0..PGO_MAX_COLUMNS) */
} PgoTuple;

/* PgoColumn: one column of a Relation message. */
typedef struct PgoColumn
{
    const char *name;           /* column name (C string) */
    uint32_t type_oid;          /* pg_type oid of the column's type */
    int32_t typmod;             /* atttypmod (-1 when none) */
    uint8_t flags;              /* PGO_COLUMN_KEY or 0 */
} PgoColumn;

/*
 * PgoRelation: a table as described by a Relation message. In a decoded PgoMsg the strings
 * point into the message buffer and cols into the PgoMsg's scratch; in a PgoRelcache every
 * part is an owned copy (see pgo_relcache_put).
 */
typedef struct PgoRelation
{
    uint32_t relid;             /* the table's oid: Insert/Update/Delete/Truncate use it */
    const char *nspname;        /* schema name ("" means pg_catalog) */
    const char *relname;        /* table name */
    char replident;             /* replica identity: 'd' default, 'n' nothing, 'f' full, 'i' index */
    int ncols;                  /* number of columns (dropped and generated ones are not sent) */
    PgoColumn *cols;            /* ncols columns */
    int refcount;               /* relcache entries only: see pgo_relation_retain; 0 in a PgoMsg */
} PgoRelation;

/*
 * PgoMsg: one decoded message. type selects the member of the anonymous union that is
 * set. Initialise with pgo_msg_init, reuse for any number of pgo_decode calls, release
 * with pgo_msg_free. Everything it points to is valid until the next pgo_decode on the
 * same PgoMsg, pgo_msg_free, or the release of the buffer it was decoded from.
 */
typedef struct PgoMsg
{
    PgoMsgType type;            /* which member below is set */
    union
    {
        struct
        {
            uint64_t final_lsn; /* LSN of the commit record of the transaction */
            int64_t commit_time; /* commit time, microseconds since 2000-01-01 UTC */
            uint32_t xid;       /* transaction id */
        } begin;                /* PGO_BEGIN */
        struct
        {
            uint64_t commit_lsn; /* LSN of the commit record (= Begin's final_lsn) */
            uint64_t end_lsn;   /* end of the commit record: resume/confirm point */
            int64_t commit_time; /* commit time, microseconds since 2000-01-01 UTC */
            uint8_t flags;      /* unused, 0 */
        } commit;               /* PGO_COMMIT */
        struct
        {
            uint64_t commit_lsn; /* LSN of the commit on the origin server */
            const char *name;   /* origin name (C string) */
        } origin;               /* PGO_ORIGIN */
        PgoRelation relation;   /* PGO_RELATION (cols in the scratch, strings in the buffer) */
        struct
        {
            uint32_t oid;       /* the type's oid */
            const char *nspname; /* schema name ("" means pg_catalog) */
            const char *name;   /* type name */
        } type_info;            /* PGO_TYPE */
        struct
        {
            uint32_t relid;     /* the table */
            PgoTuple newtup;    /* the new row */
        } insert;               /* PGO_INSERT */
        struct
        {
            uint32_t relid;     /* the table */
            char old_kind;      /* 'K' old key only, 'O' old row (REPLICA IDENTITY FULL), 0 none */
            PgoTuple oldtup;    /* the old key or row; ncols 0 when old_kind is 0 */
            PgoTuple newtup;    /* the new row ('u' for unchanged TOASTed columns) */
        } update;               /* PGO_UPDATE */
        struct
        {
            uint32_t relid;     /* the table */
            char old_kind;      /* 'K' old key only, 'O' old row (REPLICA IDENTITY FULL) */
            PgoTuple oldtup;    /* the old key or row */
        } delete;               /* PGO_DELETE */
        struct
        {
            const uint32_t *relids; /* nrels table oids, in the scratch */
            uint32_t nrels;     /* number of tables */
            uint8_t options;    /* PGO_TRUNCATE_CASCADE | PGO_TRUNCATE_RESTART_IDENTITY */
        } truncate;             /* PGO_TRUNCATE */
        struct
        {
            uint64_t lsn;       /* LSN of the message */
            const char *prefix; /* prefix given to pg_logical_emit_message (C string) */
            const char *content; /* len bytes in the buffer, not NUL-terminated */
            uint32_t len;       /* content length */
            uint8_t flags;      /* PGO_MESSAGE_TRANSACTIONAL or 0 */
        } message;              /* PGO_MESSAGE */
    };
    /* decoder scratch: owned by the PgoMsg, freed by pgo_msg_free */
    void *scratch;              /* tuple columns, relation columns, truncate relids */
    size_t scratch_cap;         /* bytes allocated at scratch */
} PgoMsg;

/* pgo_msg_init prepares an empty PgoMsg (no allocation). */
void pgo_msg_init(PgoMsg *m);

/* pgo_msg_free releases the PgoMsg's scratch; the PgoMsg may be initialised again. */
void pgo_msg_free(PgoMsg *m);

/*
 * pgo_decode decodes the pgoutput message buf[0..len) into m. Returns 0 on success; -1
 * when the message is malformed, truncated, has trailing bytes, is of a type protocol
 * version 1 does not have, or when memory runs out, with a message in err naming the
 * message type and the offset. On failure m's members are unspecified (but m may be
 * reused and must still be freed). Never reads outside buf; the scratch it may grow holds
 * at most 2 * PGO_MAX_COLUMNS datums, and never more entries than len has bytes.
 */
int pgo_decode(PgoMsg *m, const void *buf, size_t len, char *err, size_t errlen);

/* pgo_msg_type_name names a message type ("Insert"), "unknown" for others. */
const char *pgo_msg_type_name(int type);

/* pgo_time_to_unix_us converts a pgoutput timestamp to microseconds since 1970-01-01. */
static inline int64_t
pgo_time_to_unix_us(int64_t pg_time)
{
    return pg_time + PGO_EPOCH_OFFSET_US;
}

/* ---- relation cache ------------------------------------------------------------ */

/*
 * PgoRelcache maps relid to the latest Relation message seen for it. Postgres sends a
 * Relation message before the first change of a table in a replication session and again
 * whenever its description changes (e.g. ALTER TABLE ADD COLUMN), so a consumer puts every
 * Relation message here and looks the relid of each change up.
 */
typedef struct PgoRelcache PgoRelcache;

/* pgo_relcache_new returns an empty cache, NULL when out of memory. */
PgoRelcache *pgo_relcache_new(void);

/*
 * pgo_relcache_free frees the cache and every entry no caller retains (retained ones are
 * freed by their last pgo_relation_release). NULL is allowed.
 */
void pgo_relcache_free(PgoRelcache *rc);

/*
 * pgo_relcache_put stores an owned deep copy of rel (typically &msg.relation) under
 * rel->relid, replacing (and releasing) the previous entry. Returns the new entry, or NULL
 * with err set when out of memory or rel is invalid.
 */
const PgoRelation *pgo_relcache_put(PgoRelcache *rc, const PgoRelation *rel, char *err,
                                    size_t errlen);

/*
 * pgo_relcache_get returns the entry for relid or NULL. The pointer is borrowed: valid
 * until the next pgo_relcache_put for the same relid or pgo_relcache_free, unless the
 * caller retains it.
 */
const PgoRelation *pgo_relcache_get(const PgoRelcache *rc, uint32_t relid);

/* pgo_relcache_count returns the number of relations in the cache. */
size_t pgo_relcache_count(const PgoRelcache *rc);

/*
 * pgo_relation_retain keeps a cache entry alive past its replacement (e.g. while a buffered
 * transaction still refers to the description its changes were sent with); each retain
 * needs one pgo_relation_release, which frees the entry once the cache no longer holds it.
 */
void pgo_relation_retain(const PgoRelation *rel);
void pgo_relation_release(const PgoRelation *rel);

#endif                          /* FERRY_GATEWAY_PGOUTPUT_H */
