/*
 * client-sqlite/names.h -- every name libferry puts into a user's SQLite file, in one place.
 *
 * Everything libferry adds to the file is prefixed ferry_ (tables, indexes, the extra
 * column of mirror tables). Mirror tables themselves are named after the server's
 * tables. FY_SCHEMA_SQL creates the ferry_* tables; FY_FORMAT is the layout's version,
 * stored in ferry_meta, so that a later library can migrate the file.
 */
#ifndef FERRY_CLIENT_NAMES_H
#define FERRY_CLIENT_NAMES_H

#define FY_FORMAT "1"                       /* layout version of the ferry_* tables */

/* Keys of ferry_meta. */
#define FY_META_FORMAT "format"             /* FY_FORMAT */
#define FY_META_CLIENT_ID "client_id"       /* this install's id (Hello.client_id) */
#define FY_META_USER_ID "user_id"           /* the token's sub at the first Welcome */
#define FY_META_SCHEMA_VERSION "schema_version" /* server schema version the cache was built with */
#define FY_META_URL "url"                   /* the server's WebSocket URL */
#define FY_META_HLC "hlc"                   /* the hybrid logical clock, saved by the engine (fy_hlc_save) */
#define FY_META_LAST_SYNC "last_sync_ms"    /* when every shape was last up to date */

/* The column every mirror table has besides the server's: the row's ferry_version. */
#define FY_VERSION_COLUMN "ferry_version"
/* The server column with per-column write clocks, when a shape carries it. */
#define FY_CLOCK_COLUMN "ferry_clock"
/* Server columns start with this; clients cannot write them. */
#define FY_RESERVED_PREFIX "ferry_"

/* Queue statuses. */
#define FY_ST_PENDING "pending"
#define FY_ST_INFLIGHT "inflight"
#define FY_ST_FAILED "failed"
#define FY_ST_CONFLICT "conflict"

/*
 * The ferry_* tables.
 *
 * ferry_meta       key/value facts about the file.
 * ferry_shapes     one row per subscribed shape; id is the wire's subscription_id.
 *                  `schema` is the Subscribed column list as JSON
 *                  [{"name","type","oid","key","not_null"}]; `refetch` is 1 while the
 *                  rows are being fetched again from "-1" (merge bases are stale).
 * ferry_queue      the mutation queue, FIFO by seq (a plain rowid: only the order of
 *                  the entries present matters, and it costs no sqlite_sequence write).
 *                  `row_key` is the row's key as a JSON array of text-form values in
 *                  key-column order. `changes` is {"col": {"old": v, "new": v}} in text
 *                  form ("old" absent in inserts).
 * ferry_base       the merge base: the server's copy of each row that has mutations in
 *                  the queue (a row here iff the queue has a mutation for it). `row` is
 *                  a JSON object of text-form values, NULL when the server never had the
 *                  row; `deleted` when the server deleted it (or it left the shape), the
 *                  last values kept; `stale` while a refetch has not re-sent it.
 * ferry_conflicts  one per queue entry in status conflict, side by side.
 * ferry_partial    the parts received so far of a transaction the server split over
 *                  several batches (ChangeBatch.partial), each Change as its protobuf
 *                  encoding, in order; applied with the last part, so the mirror only ever
 *                  shows whole transactions. Kept with the offset of the last part, so
 *                  a restart resumes inside the transaction without losing its first parts.
 */
#define FY_SCHEMA_SQL \
	"CREATE TABLE IF NOT EXISTS ferry_meta (\n" \
	"  key TEXT PRIMARY KEY,\n" \
	"  value TEXT\n" \
	") WITHOUT ROWID;\n" \
	"CREATE TABLE IF NOT EXISTS ferry_shapes (\n" \
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,\n" \
	"  tbl TEXT NOT NULL UNIQUE,\n" \
	"  mirror TEXT NOT NULL UNIQUE,\n" \
	"  where_sql TEXT NOT NULL DEFAULT '',\n" \
	"  columns TEXT NOT NULL DEFAULT '',\n" \
	"  handle TEXT NOT NULL DEFAULT '',\n" \
	"  offset TEXT NOT NULL DEFAULT '-1',\n" \
	"  schema TEXT,\n" \
	"  refetch INTEGER NOT NULL DEFAULT 0,\n" \
	"  last_sync_ms INTEGER NOT NULL DEFAULT 0,\n" \
	"  error TEXT\n" \
	");\n" \
	"CREATE TABLE IF NOT EXISTS ferry_queue (\n" \
	"  seq INTEGER PRIMARY KEY,\n" \
	"  id TEXT NOT NULL UNIQUE,\n" \
	"  tbl TEXT NOT NULL,\n" \
	"  row_key TEXT NOT NULL,\n" \
	"  op TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),\n" \
	"  changes TEXT NOT NULL,\n" \
	"  base_version INTEGER,\n" \
	"  clock TEXT NOT NULL,\n" \
	"  created_at INTEGER NOT NULL,\n" \
	"  status TEXT NOT NULL DEFAULT 'pending'\n" \
	"    CHECK (status IN ('pending', 'inflight', 'failed', 'conflict')),\n" \
	"  retry_count INTEGER NOT NULL DEFAULT 0,\n" \
	"  last_error TEXT,\n" \
	"  error_code TEXT,\n" \
	"  next_attempt_at INTEGER NOT NULL DEFAULT 0\n" \
	");\n" \
	"CREATE INDEX IF NOT EXISTS ferry_queue_row ON ferry_queue (tbl, row_key, seq);\n" \
	"CREATE INDEX IF NOT EXISTS ferry_queue_status ON ferry_queue (status, seq);\n" \
	"CREATE TABLE IF NOT EXISTS ferry_base (\n" \
	"  tbl TEXT NOT NULL,\n" \
	"  row_key TEXT NOT NULL,\n" \
	"  row TEXT,\n" \
	"  version INTEGER,\n" \
	"  deleted INTEGER NOT NULL DEFAULT 0,\n" \
	"  stale INTEGER NOT NULL DEFAULT 0,\n" \
	"  PRIMARY KEY (tbl, row_key)\n" \
	") WITHOUT ROWID;\n" \
	"CREATE TABLE IF NOT EXISTS ferry_conflicts (\n" \
	"  mutation_id TEXT PRIMARY KEY,\n" \
	"  tbl TEXT NOT NULL,\n" \
	"  row_key TEXT NOT NULL,\n" \
	"  op TEXT NOT NULL,\n" \
	"  columns TEXT NOT NULL,\n" \
	"  mine TEXT NOT NULL,\n" \
	"  theirs TEXT NOT NULL,\n" \
	"  base TEXT NOT NULL,\n" \
	"  applied TEXT NOT NULL DEFAULT '[]',\n" \
	"  created_at INTEGER NOT NULL\n" \
	") WITHOUT ROWID;\n" \
	"CREATE TABLE IF NOT EXISTS ferry_partial (\n" \
	"  tbl TEXT NOT NULL,\n" \
	"  seq INTEGER NOT NULL,\n" \
	"  change BLOB NOT NULL,\n" \
	"  PRIMARY KEY (tbl, seq)\n" \
	") WITHOUT ROWID;\n"

#endif
