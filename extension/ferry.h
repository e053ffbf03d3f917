/*
 * extension/ferry.h -- shared declarations of the ferry extension.
 *
 * Every SQL object name, setting name and SQLSTATE the C code uses is defined
 * here, once; sql/ferry--*.sql is their other half.
 */
#ifndef FERRY_H
#define FERRY_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/spi.h"
#include "nodes/bitmapset.h"
#include "storage/block.h"
#include "utils/jsonb.h"

/* ----------------------------------------------------------------
 * Names shared with sql/ferry--0.1.0.sql
 * ---------------------------------------------------------------- */
#define FERRY_SCHEMA            "ferry"
#define FERRY_COL_VERSION       "ferry_version"
#define FERRY_COL_UPDATED_AT    "ferry_updated_at"
#define FERRY_COL_DELETED_AT    "ferry_deleted_at"
#define FERRY_COL_XID           "ferry_xid"
#define FERRY_COL_CLOCK         "ferry_clock"
#define FERRY_META_PREFIX       "ferry_"

/* ----------------------------------------------------------------
 * SQLSTATEs (documented in docs/sql-api.md)
 * ---------------------------------------------------------------- */
#define ERRCODE_FERRY_TENANT_IMMUTABLE  MAKE_SQLSTATE('F','Y','0','0','1')
#define ERRCODE_FERRY_COLUMN_IMMUTABLE  MAKE_SQLSTATE('F','Y','0','0','2')
#define ERRCODE_FERRY_CANNOT_SYNC       MAKE_SQLSTATE('F','Y','0','1','0')
#define ERRCODE_FERRY_NOT_SYNCED        MAKE_SQLSTATE('F','Y','0','1','1')
#define ERRCODE_FERRY_BAD_PREDICATE     MAKE_SQLSTATE('F','Y','0','2','0')
#define ERRCODE_FERRY_DDL_REFUSED       MAKE_SQLSTATE('F','Y','0','4','0')
#define ERRCODE_FERRY_BAD_CURSOR        MAKE_SQLSTATE('F','Y','0','5','0')

/*
 * Internal SQLSTATEs: raised inside apply_mutation's subtransaction and turned
 * into `rejected` results with the matching error code; they never escape.
 */
#define ERRCODE_FERRY_M_INVALID      MAKE_SQLSTATE('F','Y','1','0','1')
#define ERRCODE_FERRY_M_TABLE        MAKE_SQLSTATE('F','Y','1','0','2')
#define ERRCODE_FERRY_M_COLUMN       MAKE_SQLSTATE('F','Y','1','0','3')
#define ERRCODE_FERRY_M_KEY          MAKE_SQLSTATE('F','Y','1','0','4')
#define ERRCODE_FERRY_M_FORBIDDEN    MAKE_SQLSTATE('F','Y','1','0','5')
#define ERRCODE_FERRY_M_NOT_FOUND    MAKE_SQLSTATE('F','Y','1','0','6')
#define ERRCODE_FERRY_M_DUPLICATE    MAKE_SQLSTATE('F','Y','1','0','7')

/* ----------------------------------------------------------------
 * Conflict rules (ferry.conflict_rules.rule)
 * ---------------------------------------------------------------- */
typedef enum FerryRule
{
	FERRY_RULE_LWW = 0,			/* newest write clock wins (default) */
	FERRY_RULE_VERSION,			/* concurrent change refuses the mutation */
	FERRY_RULE_MANUAL,			/* concurrent change surfaces to the user */
	FERRY_RULE_SET_UNION,		/* arrays: three-way merge of adds/removes */
	FERRY_RULE_COUNTER,			/* numeric: the client's delta is added */
	FERRY_RULE_IMMUTABLE		/* any change after insert is rejected */
} FerryRule;

extern bool ferry_rule_parse(const char *name, FerryRule *rule);
extern const char *ferry_rule_name(FerryRule rule);

/* ----------------------------------------------------------------
 * catalog.c: the per-backend cache of synced tables
 * ---------------------------------------------------------------- */
typedef struct FerryColumn
{
	char		name[NAMEDATALEN];	/* attribute name */
	AttrNumber	attnum;			/* attribute number in the relation */
	int			pos;			/* 0-based position among live columns (t.*) */
	Oid			typid;			/* type */
	int32		typmod;			/* type modifier */
	Oid			collation;		/* collation, for comparisons */
	FerryRule	rule;			/* conflict rule */
	bool		is_key;			/* part of the primary key */
	bool		is_tenant;		/* the tenant column */
	bool		is_meta;		/* one of the ferry_* columns */
} FerryColumn;

typedef struct FerryPlan
{
	Bitmapset  *cols;			/* positions the statement writes */
	SPIPlanPtr	plan;			/* kept plan */
	struct FerryPlan *next;		/* next plan of the same kind */
} FerryPlan;

typedef struct FerryTable
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false after an invalidation */
	bool		buried;			/* mcxt and plans are in the graveyard */
	uint64		generation;		/* bumped by every invalidation */
	BlockNumber planned_blocks; /* table size when the plans were made */
	bool		synced;			/* false: cached "not a synced table" */
	MemoryContext mcxt;			/* owns everything below */
	char	   *qualname;		/* quoted schema.table */
	int			ncols;			/* live columns, in attnum order */
	FerryColumn *cols;			/* [ncols] */
	int			tenant;			/* position of the tenant column */
	int			nkeys;			/* primary key columns */
	int		   *keys;			/* [nkeys] positions, in key order */
	int			col_version;	/* position of ferry_version */
	int			col_updated;	/* position of ferry_updated_at */
	int			col_deleted;	/* position of ferry_deleted_at */
	int			col_xid;		/* position of ferry_xid */
	int			col_clock;		/* position of ferry_clock */
	bool		has_immutable;	/* some column is `immutable` */
	bool		has_version;	/* some column is `version` */
	char	   *read_pred;		/* OR of read rules, "true" when none */
	char	   *write_pred;		/* OR of write rules, "true" when none */
	SPIPlanPtr	plan_tombstone; /* trigger: tombstone by ctid */
	SPIPlanPtr	plan_resurrect; /* trigger: drop a tombstone by key */
	SPIPlanPtr	plan_fetch;		/* mutation: lock a row by key */
	SPIPlanPtr	plan_delete;	/* mutation: tombstone by ctid */
	FerryPlan  *plans_update;	/* mutation: UPDATE by written columns */
	FerryPlan  *plans_insert;	/* mutation: INSERT by written columns */
} FerryTable;

extern void ferry_catalog_init(void);
extern FerryTable *ferry_table_get(Oid relid);
extern FerryColumn *ferry_table_column(FerryTable *t, const char *name);
extern SPIPlanPtr ferry_keep_plan(FerryTable *t, const char *sql, int nargs, Oid *argtypes);
extern char *ferry_key_condition(FerryTable *t, int first_param);

/* ----------------------------------------------------------------
 * ferry.c: claims and settings
 * ---------------------------------------------------------------- */
typedef struct FerryClaims
{
	char	   *sub;			/* user id */
	char	   *role;			/* role, or NULL */
	int			ntenants;		/* number of tenants */
	char	  **tenants;		/* [ntenants] */
	Jsonb	   *raw;			/* the whole claims object */
} FerryClaims;

extern int	ferry_idempotency_ttl;	/* seconds */
extern int	ferry_max_clock_skew;	/* seconds */
extern FerryClaims *ferry_current_claims;	/* set while ferry functions run */

extern bool ferry_claims_parse(Jsonb *jb, FerryClaims *out, char **why);
extern bool ferry_claims_allow_tenant(FerryClaims *c, const char *tenant);
extern ArrayType *ferry_claims_tenant_array(FerryClaims *c);

/* ----------------------------------------------------------------
 * hlc.c: hybrid logical clocks "<physical ms>-<logical>-<node>"
 * ---------------------------------------------------------------- */
#define FERRY_HLC_NODE_MAX 64

typedef struct FerryHlc
{
	int64		ms;				/* physical part, ms since the Unix epoch */
	int32		logical;		/* logical counter */
	char		node[FERRY_HLC_NODE_MAX + 1];	/* writer's node id */
} FerryHlc;

extern bool ferry_hlc_parse(const char *s, int len, FerryHlc *out);
extern int	ferry_hlc_cmp(const FerryHlc *a, const FerryHlc *b);
extern char *ferry_hlc_format(const FerryHlc *h);
extern int64 ferry_hlc_now_ms(void);
extern void ferry_hlc_server_next(const FerryHlc *prev, FerryHlc *out);

/* ----------------------------------------------------------------
 * values.c: JSON <-> Datum, rows as JSON
 * ---------------------------------------------------------------- */
extern const char *ferry_error_column;	/* column being converted, for errors */

extern Datum ferry_json_to_datum(JsonbValue *v, Oid typid, int32 typmod,
								 const char *column, bool *isnull);
extern char *ferry_datum_text(Datum d, Oid typid);
extern JsonbValue *ferry_push_row(JsonbParseState **ps, TupleDesc desc, HeapTuple tup, int first, int natts);
extern Jsonb *ferry_row_jsonb(TupleDesc desc, HeapTuple tup, int first, int natts);
extern void ferry_push_key(JsonbParseState **ps, const char *key);
extern void ferry_push_string(JsonbParseState **ps, const char *s);
extern void ferry_push_int(JsonbParseState **ps, int64 v);
extern void ferry_push_bool(JsonbParseState **ps, bool v);
extern void ferry_push_names(JsonbParseState **ps, List *names);
extern JsonbValue *ferry_json_get(Jsonb *jb, const char *key, JsonbValue *buf);
extern JsonbValue *ferry_json_get_in(JsonbValue *obj, const char *key, JsonbValue *buf);
extern char *ferry_json_string(JsonbValue *v);
extern bool ferry_datum_equal(Datum a, bool anull, Datum b, bool bnull, Oid typid, Oid collation);

/* ----------------------------------------------------------------
 * trigger.c
 * ---------------------------------------------------------------- */
extern const FerryHlc *ferry_write_clock;	/* mutation clock, or NULL */

extern void ferry_clocks_read(FerryTable *t, Datum d, bool isnull, FerryHlc *clocks, bool *has);

/* ----------------------------------------------------------------
 * merge.c: per-column conflict rules
 * ---------------------------------------------------------------- */
typedef enum FerryMergeOutcome
{
	FERRY_MERGE_TAKE,			/* write the merged value */
	FERRY_MERGE_KEEP,			/* keep the server's value */
	FERRY_MERGE_OVERRIDDEN,		/* lww: the server's newer value wins */
	FERRY_MERGE_CONFLICT,		/* version/manual conflict */
	FERRY_MERGE_IMMUTABLE		/* immutable column changed */
} FerryMergeOutcome;

typedef struct FerryMergeInput
{
	FerryColumn *col;			/* column and its rule */
	Datum		cur;			/* server's current value */
	bool		cur_null;
	Datum		base;			/* client's base value */
	bool		base_null;
	Datum		new;			/* client's new value */
	bool		new_null;
	const FerryHlc *clock;		/* mutation clock */
	const FerryHlc *cur_clock;	/* column's clock on the server, or NULL */
} FerryMergeInput;

extern FerryMergeOutcome ferry_merge_column(FerryMergeInput *in, Datum *out, bool *out_null);

/* ----------------------------------------------------------------
 * predicate.c
 * ---------------------------------------------------------------- */
extern void ferry_validate_predicate(Oid relid, const char *pred);

#endif							/* FERRY_H */
