/*
 * gateway/catalog.c -- what ferryd knows of the database: synced tables, rules, schema versions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"

#define TABLES_SQL \
	"SELECT s.tbl::oid, n.nspname, c.relname, s.tenant_column::text, s.key_columns::text[], " \
	"       quote_ident(n.nspname) || '.' || quote_ident(c.relname) " \
	"  FROM ferry.synced_tables s JOIN pg_class c ON c.oid = s.tbl " \
	"  JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY s.tbl::oid"

#define COLUMNS_SQL \
	"SELECT a.attrelid, a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod) " \
	"  FROM pg_attribute a JOIN ferry.synced_tables s ON s.tbl = a.attrelid " \
	" WHERE a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum"

#define RULES_SQL \
	"SELECT tbl::oid, read_predicate FROM ferry.rules ORDER BY tbl::oid, name"

#define STATE_SQL \
	"SELECT schema_version, min_client_schema_version, 'ferry.rules'::regclass::oid, " \
	"       'ferry.synced_tables'::regclass::oid, 'ferry.state'::regclass::oid FROM ferry.state"

static PGresult *
query(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
			snprintf(err, errlen, "the ferry extension is not installed in this database: "
					 "run CREATE EXTENSION ferry");
		else
			snprintf(err, errlen, "reading ferry's catalog failed: %s", PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Splits a text[] literal of simple identifiers "{a,b}" (as Postgres prints it). */
static int
split_array(const char *lit, char ***out)
{
	int			n = 0;
	const char *p = lit;
	char	  **items = calloc(strlen(lit) / 2 + 2, sizeof(char *));

	if (*p == '{')
		p++;
	while (*p && *p != '}')
	{
		const char *start;
		char	   *item;
		size_t		len = 0;

		if (*p == '"')
		{
			/* quoted element: backslash escapes */
			start = ++p;
			item = malloc(strlen(start) + 1);
			while (*p && *p != '"')
			{
				if (*p == '\\' && p[1])
					p++;
				item[len++] = *p++;
			}
			if (*p == '"')
				p++;
		}
		else
		{
			start = p;
			while (*p && *p != ',' && *p != '}')
				p++;
			len = p - start;
			item = malloc(len + 1);
			memcpy(item, start, len);
		}
		item[len] = '\0';
		items[n++] = item;
		if (*p == ',')
			p++;
	}
	*out = items;
	return n;
}

static void
free_names(int ntables, char **tenant_names, char ***key_names, CatTable *tables)
{
	for (int i = 0; i < ntables; i++)
	{
		free(tenant_names[i]);
		if (key_names[i] != NULL)
			for (int k = 0; k < tables[i].nkeys; k++)
				free(key_names[i][k]);
		free(key_names[i]);
	}
	free(tenant_names);
	free(key_names);
}

static CatTable *
find_table(Catalog *cat, uint32_t relid)
{
	for (int i = 0; i < cat->ntables; i++)
		if (cat->tables[i].relid == relid)
			return &cat->tables[i];
	return NULL;
}

Catalog *
cat_load(PGconn *conn, char *err, size_t errlen)
{
	Catalog    *cat = calloc(1, sizeof(Catalog));
	PGresult   *res;
	static uint64_t generation = 0;
	char	  **tenant_names = NULL;	/* [ntables], until resolved to indexes */
	char	 ***key_names = NULL;	/* [ntables][nkeys], likewise */

	if ((res = query(conn, STATE_SQL, err, errlen)) == NULL)
		goto fail;
	if (PQntuples(res) == 1)
	{
		cat->schema_version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		cat->min_client_schema_version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		cat->rules_relid = (uint32_t) strtoul(PQgetvalue(res, 0, 2), NULL, 10);
		cat->synced_relid = (uint32_t) strtoul(PQgetvalue(res, 0, 3), NULL, 10);
		cat->state_relid = (uint32_t) strtoul(PQgetvalue(res, 0, 4), NULL, 10);
	}
	PQclear(res);

	if ((res = query(conn, TABLES_SQL, err, errlen)) == NULL)
		goto fail;
	cat->ntables = PQntuples(res);
	cat->tables = calloc(cat->ntables + 1, sizeof(CatTable));
	tenant_names = calloc(cat->ntables + 1, sizeof(char *));
	key_names = calloc(cat->ntables + 1, sizeof(char **));
	for (int i = 0; i < cat->ntables; i++)
	{
		CatTable   *t = &cat->tables[i];

		t->relid = (uint32_t) strtoul(PQgetvalue(res, i, 0), NULL, 10);
		t->schema = strdup(PQgetvalue(res, i, 1));
		t->name = strdup(PQgetvalue(res, i, 2));
		t->qualname = strdup(PQgetvalue(res, i, 5));
		/* tenant and key names are resolved to indexes once columns are in */
		t->tenant = -1;
		t->nkeys = split_array(PQgetvalue(res, i, 4), &key_names[i]);
		tenant_names[i] = strdup(PQgetvalue(res, i, 3));
		t->generation = ++generation;
	}
	PQclear(res);

	if ((res = query(conn, COLUMNS_SQL, err, errlen)) == NULL)
		goto fail;
	for (int i = 0; i < PQntuples(res); i++)
	{
		CatTable   *t = find_table(cat, (uint32_t) strtoul(PQgetvalue(res, i, 0), NULL, 10));
		CatColumn  *c;

		if (t == NULL)
			continue;
		t->cols = realloc(t->cols, sizeof(CatColumn) * (t->ncols + 1));
		c = &t->cols[t->ncols++];
		c->name = strdup(PQgetvalue(res, i, 1));
		c->type_oid = (uint32_t) strtoul(PQgetvalue(res, i, 2), NULL, 10);
		c->type_name = strdup(PQgetvalue(res, i, 3));
		c->is_key = 0;
	}
	PQclear(res);

	/* Resolve tenant and key names to column indexes. */
	for (int i = 0; i < cat->ntables; i++)
	{
		CatTable   *t = &cat->tables[i];

		t->tenant = cat_column(t, tenant_names[i]);
		t->keys = calloc(t->nkeys + 1, sizeof(int));
		for (int k = 0; k < t->nkeys; k++)
		{
			t->keys[k] = cat_column(t, key_names[i][k]);
			if (t->keys[k] >= 0)
				t->cols[t->keys[k]].is_key = 1;
		}
		t->col_deleted = cat_column(t, "ferry_deleted_at");
		t->col_version = cat_column(t, "ferry_version");
		if (t->tenant < 0 || t->col_deleted < 0 || t->col_version < 0)
		{
			snprintf(err, errlen, "synced table %s lacks its tenant or ferry_ columns; "
					 "call ferry.disable_sync and ferry.enable_sync again", t->qualname);
			goto fail;
		}
		for (int k = 0; k < t->nkeys; k++)
			if (t->keys[k] < 0)
			{
				snprintf(err, errlen, "synced table %s lost a key column", t->qualname);
				goto fail;
			}
	}

	if ((res = query(conn, RULES_SQL, err, errlen)) == NULL)
		goto fail;
	for (int i = 0; i < PQntuples(res); i++)
	{
		CatTable   *t = find_table(cat, (uint32_t) strtoul(PQgetvalue(res, i, 0), NULL, 10));

		if (t == NULL)
			continue;
		t->rules = realloc(t->rules, sizeof(char *) * (t->nrules + 1));
		t->rules[t->nrules++] = strdup(PQgetvalue(res, i, 1));
	}
	PQclear(res);
	free_names(cat->ntables, tenant_names, key_names, cat->tables);
	return cat;

fail:
	if (tenant_names != NULL)
		free_names(cat->ntables, tenant_names, key_names, cat->tables);
	cat_free(cat);
	return NULL;
}

void
cat_free(Catalog *cat)
{
	if (cat == NULL)
		return;
	for (int i = 0; i < cat->ntables; i++)
	{
		CatTable   *t = &cat->tables[i];

		free(t->schema);
		free(t->name);
		free(t->qualname);
		for (int c = 0; c < t->ncols; c++)
		{
			free(t->cols[c].name);
			free(t->cols[c].type_name);
		}
		free(t->cols);
		for (int r = 0; r < t->nrules; r++)
			free(t->rules[r]);
		free(t->rules);
		free(t->keys);
	}
	free(cat->tables);
	free(cat);
}

const CatTable *
cat_table_by_relid(const Catalog *cat, uint32_t relid)
{
	return find_table((Catalog *) cat, relid);
}

const CatTable *
cat_table_by_name(const Catalog *cat, const char *name)
{
	const char *dot = strchr(name, '.');

	for (int i = 0; i < cat->ntables; i++)
	{
		const CatTable *t = &cat->tables[i];

		if (dot == NULL)
		{
			if (strcmp(t->schema, "public") == 0 && strcmp(t->name, name) == 0)
				return t;
		}
		else if (strlen(t->schema) == (size_t) (dot - name) &&
				 strncmp(t->schema, name, dot - name) == 0 && strcmp(t->name, dot + 1) == 0)
			return t;
	}
	return NULL;
}

int
cat_column(const CatTable *t, const char *name)
{
	for (int i = 0; i < t->ncols; i++)
		if (strcmp(t->cols[i].name, name) == 0)
			return i;
	return -1;
}

int
cat_is_ferry_table(const Catalog *cat, uint32_t relid)
{
	return relid != 0 && (relid == cat->rules_relid || relid == cat->synced_relid || relid == cat->state_relid);
}

int
cat_same_columns(const CatTable *a, const CatTable *b)
{
	if (a->ncols != b->ncols || a->nkeys != b->nkeys || a->tenant != b->tenant)
		return 0;
	for (int i = 0; i < a->ncols; i++)
		if (strcmp(a->cols[i].name, b->cols[i].name) != 0 || a->cols[i].type_oid != b->cols[i].type_oid)
			return 0;
	for (int i = 0; i < a->nkeys; i++)
		if (a->keys[i] != b->keys[i])
			return 0;
	return 1;
}

int
cat_same_rules(const CatTable *a, const CatTable *b)
{
	if (a->nrules != b->nrules)
		return 0;
	for (int i = 0; i < a->nrules; i++)
		if (strcmp(a->rules[i], b->rules[i]) != 0)
			return 0;
	return 1;
}
