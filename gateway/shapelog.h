/*
 * gateway/shapelog.h -- the on-disk log of one shape: append, sync, resume from an offset, retention.
 *
 * A shape log is an append-only sequence of entries in a directory of its own (the
 * caller's choice, e.g. <data dir>/shapes/<handle>/). Each entry has an offset (lsn, op),
 * strictly increasing: snapshot rows use lsn 0 and op 0..N ("0_N"), live changes the
 * commit LSN and their index in the transaction. A client holds the offset of the last
 * entry it got and resumes strictly after it, after a disconnect or a ferryd restart.
 * An offset the log cannot resume from exactly -- older than what retention kept, never
 * an offset of this log, or any offset once the log is invalidated -- is SLOG_GONE: the
 * caller answers must-refetch.
 *
 *     SlogLog *log;
 *     SlogOffset at, durable;
 *     SlogCursor *c;
 *     SlogEntry e;
 *     char err[256];
 *
 *     if (slog_open(&log, dir, NULL, SLOG_CREATE, def, def_len, err, sizeof(err)) != SLOG_OK)
 *         ... err says why
 *     slog_append(log, 0, 0, KIND_ROW, row, row_len, err, sizeof(err));  // snapshot row "0_0"
 *     slog_append(log, lsn, 0, KIND_INSERT, p, n, err, sizeof(err));     // change "<lsn>_0"
 *     slog_sync(log, &durable, err, sizeof(err));   // fsync; readers now see up to durable
 *     slog_offset_parse("-1", 2, &at, err, sizeof(err));
 *     if (slog_cursor_open(log, at, &c, err, sizeof(err)) == SLOG_GONE)
 *         ... must-refetch
 *     while (slog_cursor_next(c, &e, err, sizeof(err)) == SLOG_OK)
 *         ... send e.payload/e.len; the client's new offset is (e.lsn, e.op)
 *     slog_cursor_close(c);
 *     slog_close(log);
 *
 * Durability. slog_append writes to the OS; slog_sync makes everything appended durable
 * (fdatasync, plus the directory when a segment was created) and returns the last offset
 * now durable: the caller syncs every log it appended to before confirming an LSN to
 * Postgres. Cursors see only entries up to the last slog_sync (or, after a reopen, every
 * entry that survived), so an offset a client holds is always one the log still has
 * after a crash. After a crash, slog_open cuts a torn tail: from the first partial or
 * bad record of the segment being written. A bad record that a later valid one shows
 * to have been synced (each record notes how much of its segment was durable) is damage,
 * not a crash: SLOG_ECORRUPT, and the caller rebuilds the shape; so is a bad header,
 * seal or chain of segments. Record checksums of sealed segments are checked as cursors
 * read them (SLOG_ECORRUPT from slog_cursor_next), not at open, which reads three small
 * pieces of each sealed segment (header, footer, seal: about 2 KiB at the defaults) and
 * all of the segment being written. A crash may leave the durable prefix of a
 * transaction that was not synced: replay the transaction and append only its entries
 * past slog_last().
 *
 * Memory. A log holds no I/O buffer: 128 bytes, its directory name and definition, 64
 * bytes per segment file, and 16 bytes per index_stride of the segment being written
 * (2 KiB at the defaults); e.g. about 3 KiB for a log of 64 MiB in 8 MiB segments. A
 * cursor holds 88 bytes, plus a 32 KiB read buffer while it has entries to read (freed
 * when it reaches SLOG_END, so an idle caught-up cursor costs 88 bytes; grown to the size
 * of a larger entry while that entry is returned). A log holds one file descriptor (the
 * segment being written); a cursor holds one while it reads a sealed segment.
 *
 * Not thread-safe: one thread at a time uses a log and its cursors. A log must outlive
 * its cursors.
 *
 * On-disk format (integers little-endian), version 1:
 *
 *   meta                "FRYSLMET", u32 version, u32 state, i64 created_at (Unix s),
 *                       u32 def_len, def bytes, u32 CRC32C of everything before it.
 *                       Replaced atomically (meta.tmp, fsync, rename, fsync directory).
 *   <seq:%016x>.seg     segments, numbered 1, 2, 3... without gaps. Each starts with a
 *                       40-byte header: "FRYSLSEG", u32 version, u32 flags (1: the segment
 *                       starts the log), u64 seq, u64 prev_lsn, u32 prev_op (the offset
 *                       just before its first entry: "-1" with flag 1), u32 CRC32C of
 *                       the 36 bytes before. Then records.
 *   record              28-byte header: u32 CRC32C of header bytes 4..27 and the payload,
 *                       u32 payload length, u64 lsn, u32 op, u8 kind, u8 type (1 entry,
 *                       2 seal), u16 zero, u32 durable (bytes of the segment known durable
 *                       when the record was written). Then the payload.
 *   seal                the last record of every segment but the one being written; its
 *                       lsn/op are the segment's last entry; payload: u64 entries,
 *                       i64 newest_at (Unix s of its newest entry), u32 nindex, u32 zero,
 *                       nindex x (u64 lsn, u32 op, u32 file position) -- the sparse index,
 *                       one entry per index_stride bytes --, u32 position of the seal
 *                       record, u32 "SEAL". A segment is sealed and fdatasynced before
 *                       the next one is created.
 *
 * Retention deletes whole sealed segments, oldest first; the header of the oldest
 * segment left names the exact offset a client may still resume from.
 */
#ifndef FERRY_GATEWAY_SHAPELOG_H
#define FERRY_GATEWAY_SHAPELOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes. Errors are negative and come with a message in the caller's err. */
#define SLOG_OK 0               /* done; slog_cursor_next: an entry was returned */
#define SLOG_END 1              /* slog_cursor_next: caught up; more may come after a sync */
#define SLOG_GONE 2             /* the offset cannot be resumed from: answer must-refetch */
#define SLOG_ERR (-1)           /* I/O or system error (errno's message in err); or the log failed earlier */
#define SLOG_EINVAL (-2)        /* invalid argument: bad offset text, out-of-order or oversized entry */
#define SLOG_ENOENT (-3)        /* slog_open: no shape log in that directory (or no directory) */
#define SLOG_EEXIST (-4)        /* slog_open with SLOG_CREATE: the directory already holds a log */
#define SLOG_ECORRUPT (-5)      /* synced data is damaged: destroy the log and rebuild the shape */

#define SLOG_MAX_PAYLOAD (64u << 20)    /* largest entry payload: 64 MiB */
#define SLOG_MAX_DEFINITION (1u << 20)  /* largest shape definition kept in meta: 1 MiB */
#define SLOG_OFFSET_BUFLEN 32   /* room for a formatted offset ("<20 digits>_<10 digits>") and its NUL */
#define SLOG_DEFAULT_SEGMENT_BYTES (8u << 20)   /* a segment is sealed once past 8 MiB */
#define SLOG_DEFAULT_INDEX_STRIDE (64u << 10)   /* one sparse index entry per 64 KiB */
#define SLOG_SEGMENT_HEADER 40  /* bytes of a segment header (format above) */
#define SLOG_RECORD_HEADER 28   /* bytes of a record header (format above) */

/* slog_open flags */
#define SLOG_CREATE 1           /* create a new log; SLOG_EEXIST if the directory holds one */

typedef struct SlogLog SlogLog;
typedef struct SlogCursor SlogCursor;

/* The state kept in meta; a new log starts in SLOG_STATE_SNAPSHOT. */
typedef enum SlogState
{
    SLOG_STATE_SNAPSHOT = 1,    /* the snapshot is being appended: SLOG_END does not mean up to date */
    SLOG_STATE_LIVE = 2,        /* the snapshot is complete; live changes follow */
    SLOG_STATE_INVALID = 3      /* TRUNCATE or schema change: every cursor gets SLOG_GONE */
} SlogState;

/*
 * SlogOffset: a position in a log, the offset of the last entry a client has. Text form
 * "<lsn>_<op>" in decimal, or "-1" (start) for "before the first entry". Compare with
 * slog_offset_cmp, not memcmp.
 */
typedef struct SlogOffset
{
    uint64_t lsn;               /* commit LSN of the entry; 0 for snapshot entries */
    uint32_t op;                /* its index in the transaction (or the snapshot) */
    bool start;                 /* true: "-1", before every entry (lsn and op are 0) */
} SlogOffset;

/* The offset "-1". */
#define SLOG_OFFSET_START ((SlogOffset) {0, 0, true})

/* SlogEntry: one entry returned by slog_cursor_next. */
typedef struct SlogEntry
{
    uint64_t lsn;               /* its offset: lsn... */
    uint32_t op;                /* ...and op */
    uint8_t kind;               /* the caller's kind, as appended */
    const void *payload;        /* its bytes, in the cursor's buffer: valid until the next call on the cursor */
    size_t len;                 /* bytes at payload */
} SlogEntry;

/* SlogOptions: settings of an open log; NULL or zeroed fields take the defaults. */
typedef struct SlogOptions
{
    uint32_t segment_bytes;     /* seal a segment once it passes this (default 8 MiB; 128 B .. 1 GiB) */
    uint32_t index_stride;      /* bytes between sparse index entries (default 64 KiB; at most 65536 per segment) */
} SlogOptions;

/* SlogStats: what slog_stats reports. */
typedef struct SlogStats
{
    uint64_t bytes;             /* bytes in segment files */
    uint64_t entries;           /* entries retained */
    uint32_t segments;          /* segment files */
    bool has_beginning;         /* retention dropped nothing: "-1" can be served */
    SlogOffset floor;           /* oldest offset to resume from: the one just before the first entry kept */
    SlogOffset last;            /* last entry appended (floor when the log is empty) */
    SlogOffset durable;         /* last entry made durable and visible to cursors */
    SlogState state;            /* as kept in meta */
    int64_t created_at;         /* Unix seconds when the log was created */
    size_t mem_bytes;           /* heap held by the log (cursors not included) */
} SlogStats;

/* ---- offsets ------------------------------------------------------------------------ */

/*
 * slog_offset_parse reads an offset from text[0..len): exactly "-1", or "<lsn>_<op>" with
 * lsn a decimal uint64 and op a decimal uint32, no sign, no space, no leading zero (so
 * an offset has one spelling), no overflow. SLOG_OK, or SLOG_EINVAL with err saying why.
 */
int slog_offset_parse(const char *text, size_t len, SlogOffset *out, char *err, size_t errlen);

/* slog_offset_format writes the text of off into buf (SLOG_OFFSET_BUFLEN bytes); returns buf. */
char *slog_offset_format(SlogOffset off, char *buf);

/* slog_offset_cmp orders offsets: negative, 0 or positive as a is before, at or after b. */
int slog_offset_cmp(SlogOffset a, SlogOffset b);

/* ---- a log -------------------------------------------------------------------------- */

/*
 * slog_open opens the log in directory dir into *out. With SLOG_CREATE it creates a new
 * one first (the directory too, whose parent must exist), keeping def/def_len (opaque,
 * at most SLOG_MAX_DEFINITION bytes) in its meta, in state SLOG_STATE_SNAPSHOT; without,
 * def is ignored and the log must exist (SLOG_ENOENT otherwise). Opening recovers from a
 * crash (see above): SLOG_ECORRUPT when synced data is damaged. opts may be NULL. The
 * caller closes the log with slog_close.
 */
int slog_open(SlogLog **out, const char *dir, const SlogOptions *opts, int flags,
              const void *def, size_t def_len, char *err, size_t errlen);

/* slog_close closes the log (without syncing: call slog_sync first to keep what was
 * appended) and frees it. Every cursor on it must be closed. NULL is a no-op. */
void slog_close(SlogLog *log);

/*
 * slog_destroy removes the log in dir from disk: its files, then the directory. The log
 * must not be open. A missing directory is SLOG_OK; files that are not the log's are
 * left, and the directory with them (SLOG_ERR).
 */
int slog_destroy(const char *dir, char *err, size_t errlen);

/*
 * slog_append appends one entry. (lsn, op) must be after slog_last (SLOG_EINVAL
 * otherwise, as for len > SLOG_MAX_PAYLOAD or an invalidated log). Written to the OS, not
 * yet durable nor visible to cursors: see slog_sync. A failed write or sync leaves the
 * log refusing further writes (SLOG_ERR): close it and rebuild the shape.
 */
int slog_append(SlogLog *log, uint64_t lsn, uint32_t op, uint8_t kind,
                const void *payload, size_t len, char *err, size_t errlen);

/*
 * slog_sync makes every entry appended so far durable and visible to cursors, and sets
 * *durable (may be NULL) to the last of them. Cheap when there is nothing to sync.
 */
int slog_sync(SlogLog *log, SlogOffset *durable, char *err, size_t errlen);

/*
 * slog_retain drops whole old segments, oldest first, never the one being written: while
 * the segment files total more than max_bytes, and while the oldest segment's newest
 * entry is more than max_age_seconds older than now (Unix seconds). 0 disables a limit.
 * Makes what was appended durable first (not visible to cursors: that is slog_sync's
 * job). Returns the number of segments dropped (>= 0) or an error. A cursor positioned
 * in what was dropped gets SLOG_GONE, as does any offset before the new floor.
 */
int slog_retain(SlogLog *log, uint64_t max_bytes, int64_t max_age_seconds, int64_t now,
                char *err, size_t errlen);

/* slog_set_state records a new state in meta, durably. SLOG_STATE_INVALID is final. */
int slog_set_state(SlogLog *log, SlogState state, char *err, size_t errlen);

/* slog_state returns the log's state. */
SlogState slog_state(const SlogLog *log);

/* slog_last returns the offset of the last entry appended ("-1" or the floor when none). */
SlogOffset slog_last(const SlogLog *log);

/* slog_definition returns the definition given at creation (owned by the log) and its length. */
const void *slog_definition(const SlogLog *log, size_t *len);

/* slog_stats fills *st. */
void slog_stats(const SlogLog *log, SlogStats *st);

/* ---- cursors ------------------------------------------------------------------------ */

/*
 * slog_cursor_open positions a new cursor just after offset after: SLOG_OK with *out
 * set; SLOG_GONE (and *out NULL) when after is older than the floor, is not the offset
 * of an entry of this log (nor the floor), is past the last durable entry, is "-1" when
 * retention dropped the beginning, or the log is invalidated; or an error. Close the
 * cursor with slog_cursor_close.
 */
int slog_cursor_open(SlogLog *log, SlogOffset after, SlogCursor **out, char *err, size_t errlen);

/*
 * slog_cursor_next returns the next entry in *e (SLOG_OK); SLOG_END when the cursor has
 * every durable entry (call again after the next slog_sync); SLOG_GONE when retention
 * dropped what the cursor was about to read or the log was invalidated; SLOG_ECORRUPT
 * when a record fails its checksum. e->payload is valid until the next call.
 */
int slog_cursor_next(SlogCursor *c, SlogEntry *e, char *err, size_t errlen);

/* slog_cursor_offset returns the offset of the last entry returned (at first, the one opened after). */
SlogOffset slog_cursor_offset(const SlogCursor *c);

/* slog_cursor_close frees the cursor and what it holds. NULL is a no-op. */
void slog_cursor_close(SlogCursor *c);

/*
 * slog_limit_visible hides from cursors, until the next slog_sync, every entry
 * whose lsn is at or after `below` (after a crash: entries of transactions not
 * confirmed to Postgres may be incomplete until the replay appends the rest).
 * Returns 1 when something was hidden, 0 when not, or an error.
 */
int slog_limit_visible(SlogLog *log, uint64_t below, char *err, size_t errlen);

#endif                          /* FERRY_GATEWAY_SHAPELOG_H */
