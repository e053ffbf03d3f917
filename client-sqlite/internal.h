/*
 * client-sqlite/internal.h -- libferry's private declarations: the handle, shapes, modules.
 *
 * Internal names are fy_<module>_<verb> (or fy_<verb> for helpers); the shared library
 * exports only the ferry_* API (everything is built with -fvisibility=hidden). Modules:
 *
 *   db.c       open/close, errors, meta, configuration, transactions, logout
 *   values.c   values between app JSON, Postgres text form and SQLite; keys; quoting
 *   shape.c    shapes (ferry_shapes), mirror tables, subscribe/unsubscribe
 *   rows.c     server rows into mirror tables; the merge base and rebase (overlay)
 *   write.c    local writes and the queue; UUIDv7 ids; the hybrid logical clock
 *   outcome.c  mutation results; conflicts; retry, discard, resolve
 *   sync.c     the sync engine: connection state machine, the step, the API
 *   recv.c     what the server sends: one handler per message
 *   push.c     sending the queue: MutationBatches and their bookkeeping
 *   ws.c       the WebSocket transport (ws.h)
 *   status.c   status, per-record state, pending tray, listings as JSON, queries
 */
#ifndef FERRY_CLIENT_INTERNAL_H
#define FERRY_CLIENT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "ferry.h"
#include "ferry.pb-c.h"
#include "names.h"

#if defined(__GNUC__)
#define FY_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FY_PRINTF(a, b)
#endif

#define FY_MAX_TOKEN (64 * 1024)        /* the protocol's token limit */
#define FY_CLIENT_VERSION "libferry/" FERRY_VERSION

/* ---- shapes ------------------------------------------------------------------------ */

/* How a column's values are stored in its mirror table. */
typedef enum FyKind
{
	FY_TEXT = 0,				/* Postgres text form, as received */
	FY_INT,						/* smallint/integer/bigint: SQLite integer */
	FY_BOOL,					/* boolean: SQLite integer 1/0 */
	FY_REAL,					/* real/double precision: SQLite real */
} FyKind;

/* One column of a shape, from Subscribed. */
typedef struct FyColumn
{
	char	   *name;			/* column name as Postgres spells it */
	char	   *type;			/* format_type() text */
	uint32_t	oid;			/* pg_type oid */
	bool		key;			/* part of the primary key */
	bool		not_null;		/* NOT NULL on the server */
	FyKind		kind;			/* storage in the mirror */
	bool		array;			/* an array type ("...[]") */
	bool		json;			/* json or jsonb */
} FyColumn;

/* One subscribed shape: a row of ferry_shapes plus per-connection state. */
typedef struct FyShape
{
	int64_t		id;				/* ferry_shapes.id, the wire's subscription_id */
	char	   *tbl;			/* "schema.table" */
	char	   *mirror;			/* mirror table name */
	char	   *where;			/* WHERE text, "" = none */
	char	   *columns;		/* requested columns, comma-separated, "" = all */
	char	   *handle;			/* last Subscribed.handle, "" = none */
	char	   *offset;			/* last offset applied, "-1" = none */
	bool		refetch;		/* rows are being fetched again (merge bases stale) */
	char	   *error;			/* the server refused the shape (not retried), or NULL */
	int64_t		last_sync_ms;	/* last UpToDate */
	/* the columns, from the last Subscribed (ncols 0 until one arrived) */
	int			ncols;
	FyColumn   *cols;
	int			nkeys;
	int		   *keys;			/* indexes into cols of the key columns, in order */
	int			version_col;	/* index of ferry_version in cols, or -1 */
	int			clock_col;		/* index of ferry_clock in cols, or -1 */
	/* per connection */
	bool		sent;			/* Subscribe sent on this connection */
	bool		ready;			/* Subscribed received on this connection */
	bool		up_to_date;		/* UpToDate received since the last change */
	bool		resubscribe;	/* after Unsubscribed, subscribe again from "-1" */
	int64_t		retry_at;		/* do not subscribe before this (rate limit, unavailable) */
	int			attempts;		/* failed subscribe attempts in a row */
	/* prepared statements on the mirror (finalized when the columns change) */
	sqlite3_stmt *st_upsert;	/* INSERT ... ON CONFLICT DO UPDATE, every column + version */
	sqlite3_stmt *st_delete;	/* DELETE by key */
	sqlite3_stmt *st_select;	/* SELECT every column + version by key */
} FyShape;

/* ---- the sync engine's state --------------------------------------------------------- */

typedef enum FyConn
{
	FY_CONN_OFFLINE = 0,		/* no socket */
	FY_CONN_CONNECTING,			/* TCP connect and WebSocket upgrade under way */
	FY_CONN_HELLO,				/* Hello sent, waiting for Welcome */
	FY_CONN_READY,				/* welcomed */
} FyConn;

/* A MutationBatch sent and not fully answered. */
typedef struct FyBatch
{
	struct FyBatch *next;		/* the next (younger) batch */
	int			n;				/* mutations in it */
	int			answered;		/* results received for it */
	char	  **ids;			/* their ids, in order (owned) */
} FyBatch;

typedef struct FySync
{
	FyConn		conn;			/* connection state */
	struct FyWs *ws;			/* the socket, or NULL */
	int			lock_fd;		/* "<path>-ferry-lock", flock(LOCK_EX) while syncing; -1 */
	int64_t		connect_started;	/* when the current attempt began */
	int64_t		next_connect_at;	/* offline: when to try again */
	int			attempts;		/* failed connection attempts in a row */
	int64_t		retry_after_ms; /* the last Error's retry_after_ms, for the next backoff */
	int64_t		last_recv;		/* when the last frame arrived */
	int64_t		last_heartbeat; /* when the last Heartbeat left */
	uint32_t	heartbeat_ms;	/* Welcome.heartbeat_interval_ms */
	uint32_t	idle_ms;		/* Welcome.idle_timeout_ms */
	uint32_t	server_max_batch;	/* Welcome.max_mutations_per_batch */
	int64_t		token_expires_at;	/* Welcome/TokenRefreshed (Unix s) */
	bool		refresh_sent;	/* RefreshToken sent, no answer yet */
	FyBatch    *inflight;		/* oldest unanswered batch */
	FyBatch    *inflight_tail;	/* youngest */
	int			ninflight;		/* batches in flight */
	int64_t		next_send_at;	/* earliest next_attempt_at among waiting mutations */
	int			fatal;			/* FERRY_AUTH / FERRY_PROTOCOL / FERRY_BUSY: needs the app; 0 */
	bool		fatal_new;		/* fatal was set during this step */
	int			disconnects;	/* connections lost or refused so far */
	int64_t		refresh_at;		/* ask for a new token again at this time; 0 none */
	bool		closing;		/* a fatal Error arrived: the server closes next */
	int64_t		data_version;	/* PRAGMA data_version at the last look (other processes' writes) */
	int64_t		data_version_at;	/* when that look was (fy_mono_ms) */
	char		last_error[512];	/* for the status */
	char		last_error_mutation[64];	/* its mutation, "" none */
} FySync;

/* A row change to report through the change callback after commit. */
typedef struct FyNote
{
	struct FyNote *next;
	char	   *table;			/* mirror table */
	char	   *key;			/* key as a JSON object */
	int			op;				/* FERRY_OP_* */
	int			origin;			/* FERRY_ORIGIN_* */
} FyNote;

/* Statements prepared once per handle (fy_cached). */
typedef enum FyStmt
{
	FY_Q_BASE_GET = 0,			/* merge base of a row */
	FY_Q_QUEUE_ROW,				/* queue entries of a row, in order */
	FY_Q_QUEUE_HAS,				/* does a row have queue entries */
	FY_Q_SENDABLE,				/* is anything left to send (status.c) */
	FY_Q_BASE_UPDATE,			/* merge base from a server row (rows.c) */
	FY_Q_BASE_DELETE,			/* drop a merge base (rows.c) */
	FY_Q_ENTRY_GET,				/* one queue entry by id (outcome.c) */
	FY_Q_ENTRY_DELETE,			/* remove a queue entry by id (outcome.c) */
	FY_Q_CONFLICT_DELETE,		/* remove a conflict record by mutation id (outcome.c) */
	FY_Q_DATA_VERSION,			/* PRAGMA data_version (sync.c) */
	FY_Q_PARTIAL_ADD,			/* keep a part of a split transaction (recv.c) */
	FY_Q_PARTIAL_GET,			/* the parts kept for a table, in order (recv.c) */
	FY_Q_PARTIAL_CLEAR,			/* forget a table's parts (recv.c, rows.c) */
	FY_Q_BASE_INSERT,			/* a new merge base (rows.c) */
	FY_Q_QUEUE_INSERT,			/* append to the queue (write.c) */
	FY_Q_META_SET,				/* set a ferry_meta value (db.c) */
	FY_Q__COUNT
} FyStmt;

/* ---- the handle -------------------------------------------------------------------- */

struct ferry
{
	sqlite3    *db;				/* the file */
	char	   *path;			/* its path */
	char		errmsg[1024];	/* the last error, "" none */
	char		client_id[64];	/* ferry_meta.client_id */
	char		user_id[257];	/* ferry_meta.user_id, "" unknown */
	char	   *url;			/* ferry_meta.url, or NULL */
	char	   *ca_file;		/* CA certificates trusted for wss://, NULL: the system's */
	int64_t		schema_version; /* ferry_meta.schema_version, 0 none */
	int64_t		hlc_ms;			/* hybrid logical clock: physical part */
	int64_t		hlc_n;			/* and counter */
	bool		hlc_dirty;		/* advanced by a server clock since last stored */
	int64_t		last_sync_ms;	/* ferry_meta.last_sync_ms */
	int			nshapes;
	FyShape   **shapes;			/* subscribed shapes, in id order */
	/* options (FERRY_OPT_*) */
	int64_t		stale_after_ms;
	int64_t		backoff_min_ms;
	int64_t		backoff_max_ms;
	int			max_batch;
	int			max_retries;
	int64_t		connect_timeout_ms;
	int			synchronous;
	int			max_inflight;
	/* callbacks */
	ferry_token_fn token_fn;
	void	   *token_ctx;
	ferry_change_fn change_fn;
	void	   *change_ctx;
	ferry_status_fn status_fn;
	void	   *status_ctx;
	FyNote	   *notes;			/* changes of the open transaction, reported at commit */
	FyNote	  **notes_tail;
	int			in_tx;			/* nesting of fy_begin */
	bool		relaxed;		/* the transaction's commit does not wait for the disk */
	int			tx_aborts;		/* transactions rolled back so far */
	ferry_status last_status;	/* last status reported to status_fn */
	bool		have_status;	/* last_status is set */
	FySync		sync;			/* the sync engine */
	sqlite3_stmt *cache[FY_Q__COUNT];	/* fy_cached statements */
};

/* ---- db.c -------------------------------------------------------------------------- */

int			fy_err(ferry *db, int rc, const char *fmt, ...) FY_PRINTF(3, 4);
int			fy_sqlerr(ferry *db, const char *what);
int			fy_finish(ferry *db, int rc, char **errmsg);
int			fy_begin(ferry *db);
int			fy_begin_relaxed(ferry *db);
int			fy_hlc_save(ferry *db);
int			fy_commit(ferry *db);
void		fy_rollback(ferry *db);
int			fy_exec(ferry *db, const char *sql);
sqlite3_stmt *fy_cached(ferry *db, FyStmt slot, const char *sql);
int			fy_meta_get(ferry *db, const char *key, char **value);
int			fy_meta_set(ferry *db, const char *key, const char *value);
int			fy_meta_set_int(ferry *db, const char *key, int64_t value);
int			fy_lock_open(ferry *db);
int			fy_reload(ferry *db);
int64_t		fy_now_ms(void);
int64_t		fy_mono_ms(void);
void		fy_random(void *buf, size_t n);
char	   *fy_strdup(const char *s);
char	   *fy_sprintf(const char *fmt, ...) FY_PRINTF(1, 2);
void		fy_note(ferry *db, const char *table, const char *key, int op, int origin);

/* ---- values.c ---------------------------------------------------------------------- */

void		fy_column_classify(FyColumn *c);
int			fy_json_to_text(const json_t *v, const FyColumn *c, char **text, char *err, size_t errlen);
int			fy_bind_text(sqlite3_stmt *st, int idx, const FyColumn *c, const char *text);
char	   *fy_value_text(sqlite3_stmt *st, int idx, const FyColumn *c);
char	   *fy_real_text(double d);
json_t	   *fy_text_json(const char *text);
char	   *fy_json_dump(const json_t *v);
char	   *fy_quote_ident(const char *name);
int			fy_key_parse(ferry *db, const FyShape *s, const char *key, char **row_key);
int			fy_key_from_values(ferry *db, const FyShape *s, const json_t *obj, char **row_key);
char	   *fy_key_object(const FyShape *s, const char *row_key);
bool		fy_text_equal(const char *a, const char *b);

/* ---- shape.c ----------------------------------------------------------------------- */

int			fy_shapes_load(ferry *db);
void		fy_shapes_free(ferry *db);
FyShape    *fy_shape_find(ferry *db, const char *table);
FyShape    *fy_shape_by_id(ferry *db, int64_t id);
char	   *fy_table_normalize(const char *table);
int			fy_shape_set_columns(ferry *db, FyShape *s, Ferry__V1__Column **cols, size_t n, bool *changed);
int			fy_shape_save_position(ferry *db, FyShape *s);
char	   *fy_shapes_signature(ferry *db, bool from_file);
int			fy_shape_column(const FyShape *s, const char *name);
void		fy_shape_finalize(FyShape *s);

/* ---- rows.c ------------------------------------------------------------------------ */

int			fy_rows_apply_change(ferry *db, FyShape *s, const Ferry__V1__Change *ch);
int			fy_row_read(ferry *db, FyShape *s, const char *row_key, json_t **row, int64_t *version);
int			fy_row_refresh(ferry *db, FyShape *s, const char *row_key, int origin);
int			fy_base_ensure(ferry *db, FyShape *s, const char *row_key);
int			fy_base_update(ferry *db, FyShape *s, const char *row_key, const json_t *row, int64_t version,
						   bool deleted);
int			fy_rows_drop(ferry *db, FyShape *s);
int			fy_rows_stage(ferry *db, FyShape *s, const Ferry__V1__Change *ch);
int			fy_rows_apply_staged(ferry *db, FyShape *s);
int			fy_rows_refetch_done(ferry *db, FyShape *s);

/* ---- write.c ----------------------------------------------------------------------- */

void		fy_uuid7(char out[37]);
void		fy_hlc_next(ferry *db, char *out, size_t outlen);
void		fy_hlc_observe(ferry *db, int64_t ms, int64_t n);
void		fy_hlc_observe_text(ferry *db, const char *clocks);
int			fy_queue_has(ferry *db, const char *tbl, const char *row_key);

/* ---- outcome.c --------------------------------------------------------------------- */

int			fy_result_apply(ferry *db, const Ferry__V1__MutationResult *r);
int			fy_queue_retry_later(ferry *db, const char *id, int64_t retry_after_ms, const char *code,
								 const char *message, bool count);
int			fy_queue_check_schema(ferry *db, FyShape *s);
int64_t		fy_backoff_ms(ferry *db, int attempts, int64_t at_least);

/* ---- sync.c ------------------------------------------------------------------------ */

void		fy_sync_init(ferry *db);
int			fy_sync_fatal(ferry *db, int rc, const char *fmt, ...) FY_PRINTF(3, 4);
int			fy_sync_send(ferry *db, Ferry__V1__ClientMessage *m);
int			fy_sync_subscribe(ferry *db, FyShape *s);
void		fy_sync_refresh(ferry *db);
void		fy_sync_close(ferry *db, const char *why, bool schedule);
int			fy_sync_handle_frame(ferry *db, const uint8_t *data, size_t len);
void		fy_sync_subscribe_now(ferry *db, FyShape *s);
void		fy_sync_unsubscribe(ferry *db, int64_t id);
void		fy_sync_set_error(ferry *db, const char *mutation_id, const char *fmt, ...) FY_PRINTF(3, 4);

/* ---- push.c ------------------------------------------------------------------------ */

void		fy_sync_send_mutations(ferry *db);
void		fy_sync_answered(ferry *db, const char *id);
int			fy_sync_batch_refused(ferry *db, Ferry__V1__Error *e);
int			fy_queue_take(ferry *db, int limit, bool any_table, char ***ids, char ***jsons);
void		fy_strings_free(char **a, int n);

/* ---- status.c ---------------------------------------------------------------------- */

void		fy_status_compute(ferry *db, ferry_status *st);
void		fy_status_changed(ferry *db);
bool		fy_sync_is_synced(ferry *db);

#endif
