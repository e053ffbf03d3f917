/*
 * gateway/shape.h -- shapes: resolved subscriptions, their logs, and routing changes to them.
 *
 * A shape is a table, the subscriber's WHERE clause, a column list, and the
 * subscriber's claims as they affect rows: the tenants and the table's read
 * rules with ferry.claim() resolved. Subscriptions whose resolved definitions
 * are equal share one shape (and one log). Changes reach shapes through an
 * index by (table, tenant value), so the cost of a change grows with the
 * shapes it may belong to, not with all shapes.
 *
 * Life of a shape: SNAPSHOTTING (a worker copies its rows from a REPEATABLE
 * READ snapshot into the log; live changes meanwhile go to a pending log),
 * then READY (live changes appended as they commit), INVALID (TRUNCATE,
 * schema or rule change: subscribers get must-refetch, the shape is dropped).
 */
#ifndef FERRY_SHAPE_H
#define FERRY_SHAPE_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "expr.h"
#include "hmap.h"
#include "shapelog.h"
#include "wire.h"

typedef enum ShapeState
{
	SHAPE_SNAPSHOTTING,			/* initial rows being copied */
	SHAPE_READY,				/* streaming */
	SHAPE_INVALID				/* must be refetched; being dropped */
} ShapeState;

/* Shape log entry kinds (the `kind` byte of shapelog entries). */
#define SHAPE_ENTRY_SNAPSHOT 1	/* a snapshot row: an INSERT Change */
#define SHAPE_ENTRY_CHANGE 2	/* a live Change, payload = 8-byte commit ms + Change */

struct Subscription;
struct SnapshotJob;

struct ShapeRegistry;

typedef struct Shape
{
	struct ShapeRegistry *registry;	/* the registry it is in */
	char		handle[48];		/* "<16 hex of the definition hash>-<creation us>" */
	char	   *key;			/* the resolved definition, the registry key */
	uint32_t	relid;			/* the table */
	char	   *table;			/* "schema.table", as subscribers see it */
	int			ncols;			/* columns of the shape, in table order */
	int		   *cols;			/* [ncols] table column indexes */
	int		   *keypos;			/* [table nkeys] positions of key columns in cols */
	int			ntenants;		/* tenants the claims allow */
	char	  **tenants;		/* [ntenants] */
	char	   *where_sql;		/* subscriber's WHERE, or NULL */
	char	   *claims_json;	/* claims, for the snapshot's ferry.claims */
	Expr	   *where;			/* compiled WHERE, or NULL */
	Expr	   *rules;			/* compiled OR of read rules, or NULL when none */
	char	   *rules_sql;		/* the same, as SQL for the snapshot, or NULL */
	uint64_t	cat_generation; /* table generation the shape was built on */
	ShapeState	state;			/* see above */
	SlogLog    *log;			/* the shape's log */
	SlogLog    *pending;		/* changes during the snapshot, or NULL */
	char	   *pending_dir;	/* its directory */
	uint64_t	last_lsn;		/* (lsn, op) of the last entry appended */
	uint32_t	last_op;
	uint64_t	visible_lsn;	/* readers stop after entries of this commit LSN */
	int			dirty;			/* appended since the last sync */
	/* snapshot visibility (xid8 values), valid once the snapshot started */
	uint64_t	snap_xmin;		/* oldest xid still running at snapshot time */
	uint64_t	snap_xmax;		/* first xid not yet assigned */
	int			snap_nxip;		/* running xids */
	uint64_t   *snap_xip;		/* [snap_nxip] */
	uint64_t	snap_lsn;		/* WAL insert position right after the snapshot was taken;
								 * 0 while unknown. A commit at or after it is never in the
								 * snapshot; one before it is when the snapshot saw its xid. */
	int			npending_txns;	/* transactions in the pending log */
	uint64_t   *pending_txn_lsn;	/* [npending_txns] their commit LSNs */
	uint64_t   *pending_txn_xid;	/* [npending_txns] their xids (32 bit, as Begin gives) */
	double		snapshot_started;	/* monotonic seconds */
	struct SnapshotJob *snapshot_job;	/* the running snapshot, or NULL */
	struct Subscription **subs; /* subscribers */
	int			nsubs;
	int			subs_cap;
	int64_t		idle_since_us;	/* when the last subscriber left (0 while subscribed) */
	int64_t		retained_at_us; /* last retention pass */
	uint64_t	route_epoch;	/* shape_route's visit marker */
	int			on_dirty_list;	/* in registry->dirty */
	uint64_t	hidden_above;	/* after a restart: entries from this commit LSN on are hidden
								 * until the replay has passed it (0: none) */
	char	   *invalid_reason; /* why it became INVALID */
} Shape;

/* The claims a shape is resolved with. */
typedef struct ShapeClaims
{
	const char *sub;			/* user */
	const char *role;			/* role or NULL */
	int			ntenants;		/* tenants */
	char	  **tenants;		/* [ntenants] */
	const char *json;			/* {"sub","tenants","role"} as ferry.apply_mutation takes them */
} ShapeClaims;

typedef struct ShapeRequest
{
	const char *table;			/* table name as given */
	const char *where;			/* WHERE or NULL/"" */
	int			ncolumns;		/* requested columns (0 = all) */
	char	  **columns;		/* [ncolumns] */
} ShapeRequest;

typedef struct ShapeRegistry
{
	char	   *dir;			/* <data dir>/shapes */
	Hmap		by_key;			/* definition -> Shape */
	Hmap		by_handle;		/* handle -> Shape */
	Hmap		route;			/* "relid\0tenant" -> ShapeList */
	int			count;			/* live shapes */
	Shape	  **dirty;			/* shapes to look at in the next sync: appended to, or hidden */
	int			ndirty;
	int			dirty_cap;
} ShapeRegistry;

/* Error kinds of shape_resolve, mapped to protocol error codes by the caller. */
typedef enum ShapeErr
{
	SHAPE_OK = 0,
	SHAPE_ERR_TABLE,			/* not a synced table */
	SHAPE_ERR_COLUMN,			/* unknown column */
	SHAPE_ERR_WHERE,			/* WHERE refused or malformed */
	SHAPE_ERR_RULES,			/* a rule predicate failed to compile (server side) */
	SHAPE_ERR_STORAGE			/* the log could not be created */
} ShapeErr;

int			shape_registry_init(ShapeRegistry *r, const char *data_dir, char *err, size_t errlen);
void		shape_registry_destroy(ShapeRegistry *r);

/*
 * shape_resolve finds or creates the shape for a request and claims. *created
 * says whether the caller must start its snapshot. NULL with *kind and err on
 * failure.
 */
Shape	   *shape_resolve(ShapeRegistry *r, const Catalog *cat, const ShapeRequest *req,
						  const ShapeClaims *claims, int *created, ShapeErr *kind, char *err, size_t errlen);
Shape	   *shape_by_handle(ShapeRegistry *r, const char *handle);

/* Drops a shape: out of the registry and the index, log removed from disk. */
void		shape_drop(ShapeRegistry *r, Shape *s);

/* Marks INVALID with a reason (the caller tells subscribers, then drops). */
void		shape_invalidate(Shape *s, const char *reason);

/*
 * shape_route calls fn once for every shape that may hold a row of table
 * relid with tenant value tenant (text), before (old_values) or after
 * (new_values) a change; either may be NULL. Shapes indexed by a
 * `column = constant` term are found by the row's values.
 */
typedef void (*shape_fn) (Shape *s, void *arg);
void		shape_route(ShapeRegistry *r, uint32_t relid, const char *tenant, const char *const *old_values,
						const char *const *new_values, shape_fn fn, void *arg);
/* Calls fn for every shape of table relid (0: every shape). */
void		shape_each(ShapeRegistry *r, uint32_t relid, shape_fn fn, void *arg);

/* Row membership: values are the table's columns in text form (NULL = SQL NULL). */
int			shape_matches(const Shape *s, const CatTable *t, const char *const *values);

/*
 * shape_encode_change encodes the Change of a row for this shape: INSERT and
 * UPDATE carry the shape's columns, DELETE the key columns.
 */
void		shape_encode_change(const Shape *s, const CatTable *t, int op, const char *const *values,
								const uint32_t *lens, Wbuf *out);

/*
 * shape_append_change appends one encoded Change of transaction (lsn, xid) as
 * op number op: to the log when READY, to the pending log while
 * SNAPSHOTTING. An (lsn, op) not after the last one appended is skipped (a
 * transaction replayed after a restart). Returns 1 appended, 0 skipped, -1
 * error.
 */
int			shape_append_change(Shape *s, uint64_t lsn, uint32_t op, uint32_t xid, int64_t commit_ms,
								const uint8_t *change, size_t len, char *err, size_t errlen);
/* Appends a snapshot row (lsn 0, op n). */
int			shape_append_snapshot(Shape *s, uint32_t n, const uint8_t *change, size_t len,
								  char *err, size_t errlen);
/* Makes what was appended durable; 0 or -1. */
int			shape_sync(Shape *s, char *err, size_t errlen);
/* Puts s on the registry's list for the next sync (once). */
void		shape_mark_dirty(Shape *s);
/*
 * Calls fn on each shape of the sync list and empties it; fn returns 1 to
 * keep a shape on the list for the next sync.
 */
typedef int (*shape_keep_fn) (Shape *s, void *arg);
void		shape_each_dirty(ShapeRegistry *r, shape_keep_fn fn, void *arg);
/*
 * The snapshot is complete: move pending changes the snapshot did not see
 * into the log and become READY. 0 or -1.
 */
int			shape_finish_snapshot(Shape *s, char *err, size_t errlen);

/* Subscribers. */
void		shape_add_sub(Shape *s, struct Subscription *sub);
void		shape_remove_sub(Shape *s, struct Subscription *sub, int64_t now_us);

/*
 * Snapshot visibility: whether transaction xid (32 bit, from Begin) was
 * visible to the shape's snapshot, handling xid epochs.
 */
int			shape_snapshot_saw(const Shape *s, uint32_t xid);
/* Whether the transaction committed at commit_lsn with xid is in the shape's snapshot. */
int			shape_snapshot_has(const Shape *s, uint64_t commit_lsn, uint32_t xid);
/* Sets the snapshot ("xmin:xmax:xip,..." and the WAL position after it); 0 or -1. */
int			shape_parse_snapshot(Shape *s, const char *text, uint64_t lsn);

/* Reloads shapes from the data dir at start; shapes whose snapshot never finished are dropped. */
int			shape_registry_load(ShapeRegistry *r, const Catalog *cat, char *err, size_t errlen);

#endif
