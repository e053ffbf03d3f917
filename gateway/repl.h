/*
 * gateway/repl.h -- the gateway's logical replication client (libpq, pgoutput, non-blocking).
 *
 * A Repl is one replication connection (replication=database) streaming a logical slot
 * with the pgoutput plugin, protocol version 1, for one publication. Setup -- connect,
 * check wal_level, IDENTIFY_SYSTEM, check the publication, find or create the slot,
 * START_REPLICATION -- can run blocking (repl_open) or as a state machine driven by
 * socket readiness (repl_start + repl_connect_poll). Streaming is always non-blocking, so
 * the socket (repl_socket) can join an event loop such as libwebsockets':
 *
 *     Repl *r = repl_open("", "ferry_gw1", "ferry", err, sizeof(err));    // NULL: err says why
 *     ... on POLLIN:   repl_read(r, on_data, ctx, err, sizeof(err));     // calls on_data per 'w'
 *     ... on a timer:  repl_tick(r, repl_now_ms(), err, sizeof(err));    // status updates
 *     ... on POLLOUT when repl_wants_write(r): repl_flush(r, err, sizeof(err));
 *     ... once changes up to a commit's end_lsn are durable: repl_confirm(r, end_lsn);
 *     repl_close(r);
 *
 * on_data receives each XLogData payload: one pgoutput message, to decode with
 * pgo_decode (gateway/pgoutput.h). The position reported to the server as flushed (which
 * lets it drop WAL, and from which the slot restarts) never passes what the caller gave
 * repl_confirm, with one exception that loses nothing: when the caller has confirmed
 * everything it was sent and no transaction is open, the server's keepalive position
 * is confirmed too (WAL with nothing for this publication), so an idle or unrelated-write
 * workload does not make the slot hold WAL forever. ReplOptions.no_idle_advance turns it off.
 *
 * Not thread-safe: one thread drives a Repl.
 */
#ifndef FERRY_GATEWAY_REPL_H
#define FERRY_GATEWAY_REPL_H

#include <stddef.h>
#include <stdint.h>

typedef struct Repl Repl;

/* Room for a formatted LSN, "FFFFFFFF/FFFFFFFF" and its NUL. */
#define REPL_LSN_BUFLEN 18

/* The longest slot or publication name Postgres keeps (NAMEDATALEN - 1). */
#define REPL_NAME_MAX 63

/* What kind of failure an error was: tells the caller whether retrying can help. */
typedef enum ReplErrKind
{
    REPL_OK = 0,                /* no error */
    REPL_ERR_CONNECT,           /* unreachable, authentication, connection lost: retry later */
    REPL_ERR_CONFIG,            /* wal_level, publication, slot, privileges: an operator must fix it */
    REPL_ERR_SLOT_IN_USE,       /* another process streams the slot: retry once it is gone */
    REPL_ERR_TIMEOUT,           /* repl_open's setup_timeout_ms elapsed */
    REPL_ERR_PROTOCOL,          /* the server sent something this client does not understand */
    REPL_ERR_HANDLER,           /* the caller's data handler returned an error */
    REPL_ERR_MEMORY,            /* out of memory */
    REPL_ERR_USAGE              /* invalid argument or call in the wrong state */
} ReplErrKind;

/* Everything repl_start / repl_open_opts need. Fill with repl_options_init first. */
typedef struct ReplOptions
{
    const char *conninfo;       /* libpq conninfo or URI; "" or NULL: PG* environment. replication=database is added */
    const char *slot;           /* slot name: 1-63 of [a-z0-9_] */
    const char *publication;    /* publication to stream (must exist), e.g. "ferry" */
    uint64_t start_lsn;         /* 0: resume at the slot's confirmed position; else skip transactions committed before it */
    int no_create_slot;         /* 1: a missing slot is an error instead of being created */
    int no_idle_advance;        /* 1: never confirm keepalive positions the caller did not confirm */
    int status_interval_ms;     /* standby status update period when something changed (default 1000) */
    int setup_timeout_ms;       /* repl_open_opts only: give up setup after this (default 60000; 0 = none) */
    const char *application_name; /* shown in pg_stat_replication (default "ferryd") */
} ReplOptions;

/*
 * The caller's handler for one XLogData message. wal_start is the LSN the server
 * attaches to the message (the commit's end LSN for a Commit, the change's LSN for a
 * change, 0 for Relation and Type messages); wal_end the same or 0. payload/len is one
 * pgoutput message, valid during the call. Return REPL_DONE (0) when done with it,
 * REPL_KEEP (1) to keep the buffer -- then free it with repl_payload_free(payload) -- or
 * -1 with a message in err to stop repl_read with REPL_ERR_HANDLER.
 */
typedef int (*repl_data_fn)(void *arg, uint64_t wal_start, uint64_t wal_end,
                            const char *payload, size_t len, char *err, size_t errlen);
#define REPL_DONE 0             /* handler: repl_read frees the payload */
#define REPL_KEEP 1             /* handler: the caller owns the payload (repl_payload_free) */

/* repl_connect_poll results besides 0 (streaming) and -1 (failed): what to wait for (a mask). */
#define REPL_WANT_READ 1        /* wait until repl_socket is readable, call again */
#define REPL_WANT_WRITE 2       /* wait until repl_socket is writable, call again */

/* ---- setup ------------------------------------------------------------------------- */

/* repl_options_init fills o with the defaults (conninfo "", no slot, publication "ferry"). */
void repl_options_init(ReplOptions *o);

/*
 * repl_open connects with conninfo (plus replication=database), checks wal_level and the
 * publication, creates slot_name if missing, and starts streaming from the slot's
 * confirmed position. Blocks until streaming or failed (at most 60 s). Returns the Repl,
 * or NULL with err saying what failed and what to do (e.g. "wal_level is replica...").
 */
Repl *repl_open(const char *conninfo, const char *slot_name, const char *publication,
                char *err, size_t errlen);

/* repl_open_opts is repl_open with every option; *kind (may be NULL) gets the error kind. */
Repl *repl_open_opts(const ReplOptions *opts, ReplErrKind *kind, char *err, size_t errlen);

/*
 * repl_start begins a non-blocking setup: returns a Repl in the connecting state (NULL
 * with err only for invalid options or no memory). Drive it with repl_connect_poll.
 * The options' strings are copied.
 */
Repl *repl_start(const ReplOptions *opts, char *err, size_t errlen);

/*
 * repl_connect_poll advances the setup. Returns 0 once streaming; a mask of REPL_WANT_READ
 * and REPL_WANT_WRITE (wait until repl_socket() -- which may change until streaming, with
 * a multi-host conninfo -- is ready for one of them, and call again); or -1 with err set
 * (repl_error_kind says which kind; close the Repl). The caller enforces any timeout.
 */
int repl_connect_poll(Repl *r, char *err, size_t errlen);

/* ---- streaming --------------------------------------------------------------------- */

/* repl_socket returns the connection's socket (-1 when there is none). */
int repl_socket(const Repl *r);

/*
 * repl_read reads what the socket has and handles every complete message: XLogData goes
 * to fn (in order), keepalives update repl_server_wal_end and are answered when the
 * server asks. Call it when the socket is readable. Returns the number of XLogData
 * messages handed to fn (0 when none was complete), or -1 with err set: connection lost,
 * stream ended by the server, protocol error, or fn failed (repl_error_kind tells).
 * After -1 the Repl is unusable: close it and open a new one.
 */
int repl_read(Repl *r, repl_data_fn fn, void *arg, char *err, size_t errlen);

/*
 * repl_confirm records that everything up to flush_lsn (a Commit's end_lsn) is durable on
 * the caller's side, so the server may discard WAL before it and the slot resumes after
 * it. A value below the current one is ignored. It is sent by the next status update
 * (repl_tick, a server request, or repl_send_status).
 */
void repl_confirm(Repl *r, uint64_t flush_lsn);

/*
 * repl_tick sends a standby status update when one is due: every status_interval_ms when
 * the positions changed, and every 10 s regardless (so the server never times us out).
 * now_ms is a monotonic clock in milliseconds (repl_now_ms). Returns 0, or -1 with err
 * (connection lost). Call it at least every status_interval_ms while streaming.
 */
int repl_tick(Repl *r, int64_t now_ms, char *err, size_t errlen);

/* repl_send_status sends a standby status update now. 0 or -1 with err. */
int repl_send_status(Repl *r, char *err, size_t errlen);

/* repl_wants_write says whether output is waiting for the socket to be writable. */
int repl_wants_write(const Repl *r);

/* repl_flush sends pending output: 0 all sent, 1 some left (wait for writable), -1 error. */
int repl_flush(Repl *r, char *err, size_t errlen);

/*
 * repl_close sends a last status update (best effort, so the slot keeps the newest
 * confirmed position) and closes the connection. NULL is allowed. The server releases the
 * slot when its walsender exits, a moment after.
 */
void repl_close(Repl *r);

/* repl_payload_free frees a payload a handler kept with REPL_KEEP. NULL is allowed. */
void repl_payload_free(const char *payload);

/* ---- state ------------------------------------------------------------------------- */

ReplErrKind repl_error_kind(const Repl *r); /* kind of the last failure, REPL_OK if none */
uint64_t repl_received_lsn(const Repl *r);  /* highest LSN of an XLogData received */
uint64_t repl_confirmed_lsn(const Repl *r); /* highest LSN given to repl_confirm (or the slot's at start) */
uint64_t repl_flushed_lsn(const Repl *r);   /* the flush position last sent to the server */
uint64_t repl_server_wal_end(const Repl *r); /* server's WAL position from its last message */
int64_t repl_server_time(const Repl *r);    /* server clock of its last message (us since 2000) */
uint64_t repl_start_lsn(const Repl *r);     /* the position streaming started from */
int repl_slot_created(const Repl *r);       /* 1 when repl_open created the slot */
const char *repl_system_id(const Repl *r);  /* IDENTIFY_SYSTEM systemid ("" before it ran) */
int repl_timeline(const Repl *r);           /* IDENTIFY_SYSTEM timeline */

/* ---- helpers ----------------------------------------------------------------------- */

/* repl_lsn_parse parses "X/Y" (hex, as Postgres prints pg_lsn). 0 on success, -1 if invalid. */
int repl_lsn_parse(const char *s, uint64_t *lsn);

/* repl_lsn_format writes lsn as "X/Y" into buf (REPL_LSN_BUFLEN bytes) and returns buf. */
char *repl_lsn_format(uint64_t lsn, char buf[REPL_LSN_BUFLEN]);

/* repl_now_ms returns CLOCK_MONOTONIC in milliseconds, for repl_tick. */
int64_t repl_now_ms(void);

#endif                          /* FERRY_GATEWAY_REPL_H */
