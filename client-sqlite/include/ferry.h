/*
 * client-sqlite/include/ferry.h -- libferry: the offline-first SQLite client of ferry.
 *
 * This is libferry's one public header (installed as <ferry.h>; pkg-config name
 * "ferry"). An app opens one SQLite file per user with ferry_open, subscribes to the
 * shapes it wants (ferry_subscribe), reads the mirror tables with plain SQL (they
 * always work offline), writes through ferry_insert / ferry_update / ferry_delete
 * (applied locally at once and queued durably), and lets the sync engine talk to
 * ferryd, either in a blocking loop (ferry_sync_run) or from its own event loop
 * (ferry_sync_fd, ferry_sync_events, ferry_sync_timeout_ms, ferry_sync_step).
 *
 * Conventions, for every function below:
 *
 *   - Functions return an int result code: FERRY_OK (0) or one of the FERRY_* codes
 *     below. They never abort or exit the host app.
 *   - Functions that take `char **errmsg` set *errmsg, on failure, to a message that
 *     names what failed and what to do about it; the caller frees it with ferry_free.
 *     On success *errmsg is set to NULL. Pass NULL to not receive it: the message is
 *     also available from ferry_errmsg until the next call on the same handle.
 *   - Strings the library returns through `char **` out-parameters are allocated by
 *     it and freed by the caller with ferry_free. Strings inside structs handed to a
 *     callback (ferry_mutation, ferry_conflict) belong to the library and are valid
 *     only during the callback.
 *   - JSON in and out is UTF-8 text. Column values are in Postgres text form, the
 *     form psql prints ("t", "{a,b}", "2024-05-01 10:00:00+00"), as JSON strings, or
 *     JSON null; inputs also accept JSON numbers, booleans, arrays (for array columns)
 *     and objects (for json/jsonb columns).
 *   - A key (KEY arguments) is the row's primary key: a JSON scalar ("42", "\"a1\"")
 *     for a one-column key, or a JSON object {"col": value, ...} for any key.
 *   - A handle is not thread-safe: use it from one thread at a time. Several
 *     processes may open the same file; only one of them syncs at a time.
 *   - Times are Unix milliseconds (int64_t).
 *
 * See client-sqlite/README.md for the data model (mirror tables, ferry_* tables),
 * the sync engine and an example app.
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(FERRY_BUILDING_LIBRARY)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

#define FERRY_VERSION "0.1.0"           /* the version of this header and library */

/* An open ferry database: one SQLite file, one user. */
typedef struct ferry ferry;

/* ---- result codes ------------------------------------------------------------------ */

#define FERRY_OK          0             /* success */
#define FERRY_ERROR       1             /* a failure not covered below (see the message) */
#define FERRY_MISUSE      2             /* bad arguments or a call out of order */
#define FERRY_NOMEM       3             /* out of memory */
#define FERRY_NOTFOUND    4             /* no such table, row, mutation or conflict */
#define FERRY_BUSY        5             /* another process syncs this file, or the mutation is in flight */
#define FERRY_INVALID     6             /* a value, key or column the table does not accept */
#define FERRY_PENDING     7             /* refused while mutations are pending (logout, unsubscribe) */
#define FERRY_OFFLINE     8             /* the server could not be reached */
#define FERRY_AUTH        9             /* the server refused the token, or the file belongs to another user */
#define FERRY_TIMEOUT     10            /* the time given ran out first */
#define FERRY_DB          11            /* SQLite failed (disk full, corrupt file, locked too long) */
#define FERRY_PROTOCOL    12            /* the server broke the protocol or speaks another version */

/* ---- opening and closing ----------------------------------------------------------- */

/*
 * ferry_open opens (creating when missing) the ferry database at `path` and sets
 * *out to a new handle, which the caller releases with ferry_close, whatever
 * ferry_open returned (on failure *out may be NULL; ferry_close(NULL) is a no-op).
 *
 * The file is a SQLite database in WAL mode with synchronous=FULL (see
 * FERRY_OPT_SYNCHRONOUS): a local write that returned FERRY_OK survives a crash of the
 * app and a power loss. On first open it gets a new client id (ferry_client_id).
 * Mutations left "inflight" by a process that died are made pending again: they will
 * be re-sent with the same ids, which the server answers as duplicates if it had
 * applied them.
 */
FERRY_API int ferry_open(const char *path, ferry **out, char **errmsg);

/*
 * ferry_close closes the connection to the server, if any, and the file, and frees
 * the handle. Always returns FERRY_OK. Nothing queued is lost: the queue lives in
 * the file.
 */
FERRY_API int ferry_close(ferry *db);

/* ferry_errmsg returns the message of the last failed call on db (owned by db, valid
 * until the next call on it); "" when the last call succeeded. */
FERRY_API const char *ferry_errmsg(ferry *db);

/* ferry_errstr returns a short English description of a result code (static). */
FERRY_API const char *ferry_errstr(int rc);

/* ferry_free frees memory the library returned (messages, JSON, ids). NULL is fine. */
FERRY_API void ferry_free(void *p);

/* ferry_client_id returns this file's client id (owned by db). It is sent to the
 * server as Hello.client_id and names the device in mutation records. */
FERRY_API const char *ferry_client_id(ferry *db);

/* ferry_user_id returns the user this file belongs to (the token's `sub` the server
 * reported at the first successful connection), or "" before that. Owned by db. */
FERRY_API const char *ferry_user_id(ferry *db);

/*
 * ferry_sqlite returns the SQLite handle of the file, for reads of the mirror tables
 * with plain SQL (sqlite3_prepare_v2 and so on). Do not write through it: writes to
 * mirror tables that bypass ferry_insert/update/delete are not synced and are
 * overwritten by the server's rows. Owned by db; do not close it.
 */
struct sqlite3;
FERRY_API struct sqlite3 *ferry_sqlite(ferry *db);

/* ---- configuration ----------------------------------------------------------------- */

/*
 * ferry_set_url sets the server's WebSocket URL, "wss://HOST[:PORT]" (TLS, default port
 * 443) or "ws://HOST[:PORT]" (plain, default port 80), with an optional path (default
 * "/v1/ws"). The URL is stored in the file, so a later open can sync without setting it
 * again. Returns FERRY_MISUSE for a URL it cannot use. Over wss:// the server's
 * certificate must chain to a trusted CA (the system's, or ferry_set_ca_file's) and name
 * the URL's host; a refused certificate is a connection error that names the reason.
 */
FERRY_API int ferry_set_url(ferry *db, const char *url, char **errmsg);

/*
 * ferry_set_ca_file makes the CA certificates in `path` (PEM) the ones trusted for
 * wss:// instead of the system's trust store (for a private CA, or a test server);
 * NULL goes back to the system's. Kept in memory only, like the token: set it after
 * every ferry_open. Takes effect at the next connection. Returns FERRY_MISUSE when the
 * file cannot be read.
 */
FERRY_API int ferry_set_ca_file(ferry *db, const char *path, char **errmsg);

/*
 * A token callback: write a JWT (HS256, signed by the app's backend) for user_id
 * into buf (bufsize bytes, NUL-terminated) and return FERRY_OK; return anything else
 * when no token is available (the engine then reports FERRY_AUTH and asks again at
 * the next connection attempt). user_id is "" until the file knows its user. The
 * library asks for a token at each connection and when the server says the current
 * one expires soon; it never writes a token to the file and wipes its copy after
 * sending it.
 */
typedef int (*ferry_token_fn)(void *ctx, const char *user_id, char *buf, size_t bufsize);

/* ferry_set_token_callback installs the token callback (NULL removes it). */
FERRY_API int ferry_set_token_callback(ferry *db, ferry_token_fn fn, void *ctx);

/* Options for ferry_config. */
#define FERRY_OPT_STALE_AFTER_MS   1    /* status.stale when the last sync is older (default 24 h) */
#define FERRY_OPT_BACKOFF_MIN_MS   2    /* first retry delay after a failure (default 500) */
#define FERRY_OPT_BACKOFF_MAX_MS   3    /* retry delays never exceed this (default 60 000) */
#define FERRY_OPT_MAX_BATCH        4    /* mutations per MutationBatch (default 100, max 1000) */
#define FERRY_OPT_MAX_RETRIES      5    /* RETRY answers before a mutation is marked failed (default 0: never) */
#define FERRY_OPT_CONNECT_TIMEOUT_MS 6  /* connect + handshake limit (default 10 000) */
#define FERRY_OPT_SYNCHRONOUS      7    /* SQLite synchronous: 2 FULL (default), 1 NORMAL */
#define FERRY_OPT_MAX_INFLIGHT     8    /* unanswered MutationBatches at once (default 4, the server's limit) */

/*
 * ferry_config sets option `op` to `value` for this handle (not stored in the file).
 * Returns FERRY_MISUSE for an unknown option or a value out of range.
 */
FERRY_API int ferry_config(ferry *db, int op, int64_t value);

/* ---- shapes ------------------------------------------------------------------------ */

/*
 * ferry_subscribe adds (or replaces) the shape of `table`: "schema.table", or "table"
 * for schema public, an optional `where` (SQL boolean expression, in the subset the
 * server accepts; NULL or "" for all rows) and optional `columns` (comma-separated;
 * NULL or "" for every column; key columns are always included). It is stored in the
 * file and takes effect at once when connected, otherwise at the next connection.
 *
 * The rows arrive in a mirror table named after the table ("todos" for public.todos,
 * "app.todos" — one quoted identifier — for app.todos), created from the columns the
 * server reports, plus a column ferry_version. One shape per table: subscribing again
 * with another where or column list drops the mirror's rows and refetches them
 * (pending mutations are kept and laid on top again).
 */
FERRY_API int ferry_subscribe(ferry *db, const char *table, const char *where, const char *columns,
                              char **errmsg);

/*
 * ferry_unsubscribe removes the shape of `table` and drops its mirror table. Refused
 * with FERRY_PENDING while the queue holds mutations for the table, unless flags has
 * FERRY_FORCE (which discards them).
 */
FERRY_API int ferry_unsubscribe(ferry *db, const char *table, int flags, char **errmsg);

#define FERRY_FORCE 1                   /* flag: go ahead even though mutations are pending */

/* ---- local writes ------------------------------------------------------------------ */

/*
 * ferry_insert inserts a row into the mirror of `table` and appends the mutation to
 * the queue, in one SQLite transaction. `values` is a JSON object {"column": value},
 * which must give every key column. The table's shape must have been received once
 * (its columns are known); columns named ferry_* are maintained by the server and
 * cannot be written. When mutation_id is not NULL, *mutation_id is set to the new
 * mutation's id (a UUIDv7; free with ferry_free).
 *
 * FERRY_INVALID: unknown column, missing key, a value that is not valid JSON, or a
 * row with that key is already visible. FERRY_NOTFOUND: no shape for the table.
 */
FERRY_API int ferry_insert(ferry *db, const char *table, const char *values, char **mutation_id,
                           char **errmsg);

/*
 * ferry_update changes columns of the visible row with key `key`. `changes` is a JSON
 * object {"column": new value}. For each column the mutation records the value the
 * edit was based on (the visible value now) and the new one, so that the server
 * decides per column (docs/conflict-rules.md). Columns whose value does not change are
 * left out; when nothing changes, no mutation is queued (*mutation_id is NULL).
 * Key columns cannot change. FERRY_NOTFOUND: no visible row with that key.
 */
FERRY_API int ferry_update(ferry *db, const char *table, const char *key, const char *changes,
                           char **mutation_id, char **errmsg);

/* ferry_delete deletes the visible row with key `key` (locally at once; queued). */
FERRY_API int ferry_delete(ferry *db, const char *table, const char *key, char **mutation_id,
                           char **errmsg);

/* ---- the sync engine --------------------------------------------------------------- */

/*
 * ferry_sync_run drives the sync engine, blocking, for at most timeout_ms (< 0: no
 * limit): connects (retrying with exponential backoff and jitter while the server is
 * unreachable), authenticates with a token from the token callback, subscribes or
 * resumes every shape, applies change batches (rows and offset in one transaction),
 * sends the queue and applies the results.
 *
 * flags:
 *   FERRY_SYNC_UNTIL_SYNCED  return FERRY_OK as soon as everything is synced: every
 *                            shape up to date, nothing in flight, and no pending
 *                            mutation that could still be sent (failed mutations,
 *                            conflicts and the mutations queued behind them on the
 *                            same row wait for the app and do not count)
 *   FERRY_SYNC_ONCE          one connection attempt: return FERRY_OFFLINE when the
 *                            server cannot be reached or the connection drops
 *                            (otherwise the engine retries until the time runs out)
 *
 * Returns FERRY_OK (synced, or the time ran out with flags 0), FERRY_TIMEOUT (the time
 * ran out before FERRY_SYNC_UNTIL_SYNCED was met), FERRY_OFFLINE (FERRY_SYNC_ONCE),
 * FERRY_AUTH (the token was refused or is missing, or the file belongs to another
 * user), FERRY_PROTOCOL (the server speaks another protocol version), FERRY_BUSY
 * (another process syncs this file), FERRY_MISUSE (no URL set) or FERRY_DB. The
 * connection stays open after it returns; ferry_sync_stop closes it.
 */
FERRY_API int ferry_sync_run(ferry *db, int timeout_ms, int flags, char **errmsg);

#define FERRY_SYNC_UNTIL_SYNCED 1       /* flag: return once synced */
#define FERRY_SYNC_ONCE         2       /* flag: do not retry a failed connection */

/*
 * For a host event loop: ferry_sync_step does, without blocking, whatever is due:
 * starts or continues connecting, reads and applies what the server sent, sends what
 * is queued, sends heartbeats, notices a dead connection. Call it when
 * ferry_sync_fd is ready for ferry_sync_events, and at the latest after
 * ferry_sync_timeout_ms. Returns FERRY_OK, or the codes of ferry_sync_run for errors
 * that need the app (FERRY_AUTH, FERRY_PROTOCOL, FERRY_BUSY, FERRY_MISUSE, FERRY_DB);
 * an unreachable server is not an error of ferry_sync_step: the state becomes
 * offline and the engine retries later by itself.
 */
FERRY_API int ferry_sync_step(ferry *db, char **errmsg);

/* ferry_sync_fd returns the socket to watch, or -1 when there is none (offline:
 * just wait ferry_sync_timeout_ms). */
FERRY_API int ferry_sync_fd(ferry *db);

/* ferry_sync_events returns the poll(2) events (POLLIN, POLLOUT) to wait for on
 * ferry_sync_fd. */
FERRY_API int ferry_sync_events(ferry *db);

/* ferry_sync_timeout_ms returns how long the host may wait before the next
 * ferry_sync_step (ms, >= 0). */
FERRY_API int ferry_sync_timeout_ms(ferry *db);

/* ferry_sync_stop closes the connection (the status becomes offline) and releases the
 * sync lock; the next ferry_sync_step or ferry_sync_run connects again. */
FERRY_API int ferry_sync_stop(ferry *db);

/* ---- status ------------------------------------------------------------------------ */

#define FERRY_STATE_OFFLINE 0           /* not connected (no network, server down, not started) */
#define FERRY_STATE_SYNCING 1           /* connected; catching up or sending `pending + inflight` */
#define FERRY_STATE_SYNCED  2           /* connected, every shape up to date, nothing to send */
#define FERRY_STATE_ERROR   3           /* needs the app: token refused, wrong user, failed mutations or conflicts */

/* What an app shows about sync. Filled by ferry_get_status; owns no memory. */
typedef struct ferry_status
{
    int state;                          /* FERRY_STATE_* */
    int connected;                      /* a live connection the server welcomed */
    int pending;                        /* mutations waiting to be sent (or re-sent) */
    int inflight;                       /* mutations sent, not answered yet */
    int failed;                         /* mutations the server rejected: retry or discard */
    int conflicts;                      /* mutations in conflict: resolve */
    int queue_length;                   /* every mutation in the queue (the four above) */
    int64_t oldest_pending_age_ms;      /* age of the oldest mutation in the queue; 0 when empty */
    int64_t last_sync_ms;               /* when every shape was last known up to date; 0 never */
    int stale;                          /* last_sync_ms older than FERRY_OPT_STALE_AFTER_MS */
    int shapes;                         /* shapes subscribed */
    int shapes_up_to_date;              /* of them, up to date on the live connection */
    int64_t next_attempt_ms;            /* offline: when the engine tries to connect again; 0 none */
    char last_error[512];               /* the last sync error, "" when none */
    char last_error_mutation[64];       /* the mutation it belongs to, "" when none */
    char user_id[257];                  /* the user this file belongs to, "" not known yet */
} ferry_status;

/* ferry_get_status fills *out with the current status. */
FERRY_API int ferry_get_status(ferry *db, ferry_status *out);

/* ferry_state_name returns "offline", "syncing", "synced" or "error" (static). */
FERRY_API const char *ferry_state_name(int state);

/* ferry_status_json sets *json to the status as a JSON object (free with ferry_free). */
FERRY_API int ferry_status_json(ferry *db, char **json);

#define FERRY_RECORD_SYNCED   0         /* the row is the server's row */
#define FERRY_RECORD_PENDING  1         /* local changes not yet confirmed by the server */
#define FERRY_RECORD_FAILED   2         /* a local change the server rejected */
#define FERRY_RECORD_CONFLICT 3         /* a local change in conflict */

/*
 * ferry_record_state sets *state to the FERRY_RECORD_* state of the row with `key`
 * in `table` (conflict before failed before pending). FERRY_NOTFOUND when the row is
 * neither visible nor in the queue.
 */
FERRY_API int ferry_record_state(ferry *db, const char *table, const char *key, int *state);

/* ferry_record_state_name returns "synced", "pending", "failed" or "conflict". */
FERRY_API const char *ferry_record_state_name(int state);

/* ---- the pending tray -------------------------------------------------------------- */

/* One queued mutation, as the pending tray lists it. Strings owned by the library. */
typedef struct ferry_mutation
{
    const char *id;                     /* the mutation's id (UUIDv7) */
    const char *table;                  /* "schema.table" */
    const char *key;                    /* the row's key, a JSON object */
    const char *op;                     /* "insert", "update" or "delete" */
    const char *changes;                /* JSON {"column": {"old": v, "new": v}} */
    const char *status;                 /* "pending", "inflight", "failed" or "conflict" */
    int retry_count;                    /* RETRY answers and failed sends so far */
    const char *error_code;             /* the server's code ("forbidden", "rate_limited"...), "" none */
    const char *last_error;             /* the last error's message, "" none */
    int64_t created_at_ms;              /* when the app made the change */
    int64_t next_attempt_ms;            /* not sent before this time; 0 = at once */
} ferry_mutation;

/* A callback for ferry_pending_each: return 0 to go on, anything else to stop. */
typedef int (*ferry_mutation_fn)(void *ctx, const ferry_mutation *m);

/* ferry_pending_each calls fn for every mutation in the queue, oldest first. */
FERRY_API int ferry_pending_each(ferry *db, ferry_mutation_fn fn, void *ctx);

/* ferry_pending_json sets *json to the queue as a JSON array of the fields above. */
FERRY_API int ferry_pending_json(ferry *db, char **json);

/*
 * ferry_retry sends a failed mutation again, as a new mutation (new id) with the
 * same changes. FERRY_NOTFOUND: no such mutation; FERRY_MISUSE: it is not failed.
 */
FERRY_API int ferry_retry(ferry *db, const char *mutation_id, char **errmsg);

/*
 * ferry_discard drops a mutation from the queue (pending, failed or in conflict; not
 * while in flight: FERRY_BUSY) and restores the row to the server's copy with the
 * row's other pending changes laid on top. A pending mutation that had been sent
 * before may still have been applied by the server; the server's row then arrives as
 * usual.
 */
FERRY_API int ferry_discard(ferry *db, const char *mutation_id, char **errmsg);

/* ---- conflicts --------------------------------------------------------------------- */

/* One conflict, side by side. Strings owned by the library. */
typedef struct ferry_conflict
{
    const char *mutation_id;            /* the mutation in conflict (its id names the conflict) */
    const char *table;                  /* "schema.table" */
    const char *key;                    /* the row's key, a JSON object */
    const char *op;                     /* the mutation's op */
    const char *columns;                /* JSON array: the columns in conflict */
    const char *mine;                   /* JSON object: my new values of the mutation's columns */
    const char *theirs;                 /* JSON object: the server's row when it refused */
    const char *base;                   /* JSON object: the values my edit was based on */
    const char *applied;                /* JSON array: columns the server applied anyway (manual rule) */
    int64_t created_at_ms;              /* when the conflict was recorded */
} ferry_conflict;

/* A callback for ferry_conflicts_each: return 0 to go on, anything else to stop. */
typedef int (*ferry_conflict_fn)(void *ctx, const ferry_conflict *c);

/* ferry_conflicts_each calls fn for every unresolved conflict, oldest first. */
FERRY_API int ferry_conflicts_each(ferry *db, ferry_conflict_fn fn, void *ctx);

/* ferry_conflicts_json sets *json to the conflicts as a JSON array. */
FERRY_API int ferry_conflicts_json(ferry *db, char **json);

#define FERRY_KEEP_MINE  1              /* re-send my values against the server's current row */
#define FERRY_USE_THEIRS 2              /* drop my change; the row becomes the server's */
#define FERRY_MERGE      3              /* send the given values against the server's current row */

/*
 * ferry_resolve resolves the conflict of mutation `mutation_id`:
 *   FERRY_KEEP_MINE   my change is sent again as a new mutation (new id, same place in
 *                     the row's order) with the columns the server did not apply: the
 *                     columns in conflict based on the server's current values (so they
 *                     do not conflict again), the others on their original base (so
 *                     their rules -- counter deltas, set merges, clocks -- still hold).
 *                     For a row deleted on the server it is an insert of my whole row,
 *                     which resurrects it
 *   FERRY_USE_THEIRS  my change is dropped and the row shows the server's values
 *   FERRY_MERGE       like FERRY_KEEP_MINE with `merged` (a JSON object {"column":
 *                     value}) laid over my values
 * `merged` must be NULL except for FERRY_MERGE. FERRY_NOTFOUND: no such mutation;
 * FERRY_MISUSE: it is not in conflict.
 */
FERRY_API int ferry_resolve(ferry *db, const char *mutation_id, int how, const char *merged, char **errmsg);

/* ---- callbacks --------------------------------------------------------------------- */

#define FERRY_OP_INSERT 1               /* a row appeared */
#define FERRY_OP_UPDATE 2               /* a row changed */
#define FERRY_OP_DELETE 3               /* a row disappeared */

#define FERRY_ORIGIN_LOCAL  1           /* the app's own write (or its resolution) */
#define FERRY_ORIGIN_SERVER 2           /* rows from the server, or a mutation's outcome */

/*
 * A row-change callback: called after the SQLite transaction that changed the visible
 * row committed, once per row: `table` is the mirror table's name, `key` the row's
 * key as a JSON object {"col": "text form"}. When a whole table was emptied at once (a
 * refetch, a schema change), it is called once with key NULL and FERRY_OP_DELETE:
 * reload the table. The callback may read the database; it must not call ferry_sync_*,
 * ferry_logout or ferry_close.
 */
typedef void (*ferry_change_fn)(void *ctx, const char *table, const char *key, int op, int origin);

/* ferry_on_change installs the row-change callback (NULL removes it). */
FERRY_API int ferry_on_change(ferry *db, ferry_change_fn fn, void *ctx);

/* A status callback: called when the status (state, counts, error) changed. */
typedef void (*ferry_status_fn)(void *ctx, const ferry_status *status);

/* ferry_on_status installs the status callback (NULL removes it). */
FERRY_API int ferry_on_status(ferry *db, ferry_status_fn fn, void *ctx);

/* ---- queries and logout ------------------------------------------------------------ */

/*
 * ferry_query_json runs one SQL statement (a read of the mirror tables, typically) and
 * sets *json to its rows as a JSON array of objects, column name -> value (integers
 * and reals as JSON numbers, NULL as null, the rest as strings). Statements that
 * write are refused with FERRY_MISUSE: write through ferry_insert/update/delete.
 */
FERRY_API int ferry_query_json(ferry *db, const char *sql, char **json, char **errmsg);

/*
 * ferry_logout wipes the file: closes the connection, deletes the database (and its
 * -wal and -shm files) and starts an empty one in its place, with a new client id,
 * so the handle stays usable for the next user. Refused with FERRY_PENDING while the
 * queue is not empty, unless flags has FERRY_FORCE.
 */
FERRY_API int ferry_logout(ferry *db, int flags, char **errmsg);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_H */
