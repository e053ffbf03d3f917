/*
 * gateway/catalog.h -- what ferryd knows of the database: synced tables, rules, schema versions.
 *
 * Loaded over a normal libpq connection from ferry.synced_tables, ferry.rules
 * and ferry.state, and loaded again whenever the replication stream shows a
 * change to one of those tables or a new Relation message for a synced table,
 * so rule changes take effect at the right point of the stream, without a
 * restart.
 */
#ifndef FERRY_CATALOG_H
#define FERRY_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

typedef struct CatColumn
{
	char	   *name;			/* column name */
	uint32_t	type_oid;		/* type */
	char	   *type_name;		/* format_type(), e.g. "text[]" */
	int			is_key;			/* part of the primary key */
} CatColumn;

typedef struct CatTable
{
	uint32_t	relid;			/* pg_class oid */
	char	   *schema;			/* namespace */
	char	   *name;			/* relation name */
	char	   *qualname;		/* quoted "schema"."name" for SQL */
	int			ncols;			/* live columns, in attnum order */
	CatColumn  *cols;			/* [ncols] */
	int			tenant;			/* index of the tenant column */
	int			nkeys;			/* primary key columns */
	int		   *keys;			/* [nkeys] column indexes, in key order */
	int			col_deleted;	/* index of ferry_deleted_at */
	int			col_version;	/* index of ferry_version */
	int			nrules;			/* read rules */
	char	  **rules;			/* [nrules] read predicates (ORed) */
	uint64_t	generation;		/* bumped when columns or rules change */
} CatTable;

typedef struct Catalog
{
	int			ntables;		/* synced tables */
	CatTable   *tables;			/* [ntables] */
	int64_t		schema_version; /* ferry.schema_version() */
	int64_t		min_client_schema_version;	/* ferry.min_client_schema_version() */
	uint32_t	rules_relid;	/* oid of ferry.rules */
	uint32_t	synced_relid;	/* oid of ferry.synced_tables */
	uint32_t	state_relid;	/* oid of ferry.state */
} Catalog;

/*
 * cat_load reads the catalog over conn into a new Catalog. Returns NULL and
 * a message in err when the extension is missing or a query fails.
 */
Catalog    *cat_load(PGconn *conn, char *err, size_t errlen);
void		cat_free(Catalog *cat);

/* Lookups; NULL when not synced. name may be "table" (schema public) or "schema.table". */
const CatTable *cat_table_by_relid(const Catalog *cat, uint32_t relid);
const CatTable *cat_table_by_name(const Catalog *cat, const char *name);
int			cat_column(const CatTable *t, const char *name);

/* True when relid is one of ferry's own catalog tables. */
int			cat_is_ferry_table(const Catalog *cat, uint32_t relid);

/*
 * cat_same_columns says whether a and b have the same columns, types and key
 * (a shape built on a stays valid on b).
 */
int			cat_same_columns(const CatTable *a, const CatTable *b);
int			cat_same_rules(const CatTable *a, const CatTable *b);

#endif
