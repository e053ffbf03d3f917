/*
 * gateway/shape.c -- shapes: resolved subscriptions, their logs, and routing changes to them.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "shape.h"
#include "shape_int.h"

/*
 * The routing index. A bucket holds shapes of one (table, tenant): those
 * without a usable `column = constant` term in the "general" bucket, the
 * others in the bucket of (table, tenant, column, constant) of their first
 * such term. The general bucket also counts, per column, the shapes indexed
 * by that column, so routing knows which values to look up.
 */
typedef struct ShapeList
{
	int			n;				/* shapes */
	int			cap;			/* allocated */
	Shape	  **items;			/* [n] */
	int			neq;			/* general bucket: columns with indexed shapes */
	int		   *eqcols;			/* [neq] column indexes */
	int		   *eqrefs;			/* [neq] shapes indexed by each */
} ShapeList;

int64_t
shape_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ----------------------------------------------------------------
 * Registry
 * ---------------------------------------------------------------- */

int
shape_registry_init(ShapeRegistry *r, const char *data_dir, char *err, size_t errlen)
{
	size_t		n = strlen(data_dir) + 16;

	memset(r, 0, sizeof(*r));
	r->dir = malloc(n);
	snprintf(r->dir, n, "%s/shapes", data_dir);
	if (mkdir(r->dir, 0700) != 0 && errno != EEXIST)
	{
		snprintf(err, errlen, "cannot create \"%s\": %s", r->dir, strerror(errno));
		return -1;
	}
	hmap_init(&r->by_key);
	hmap_init(&r->by_handle);
	hmap_init(&r->route);
	return 0;
}

/* Key of a general bucket (col < 0) or of an eq bucket (col, value). */
static void
route_key(uint32_t relid, const char *tenant, int col, const char *value, char *buf, size_t cap, size_t *len)
{
	size_t		tl = strlen(tenant);
	size_t		vl = value != NULL ? strlen(value) : 0;
	size_t		n = 0;

	buf[n++] = col < 0 ? 'G' : 'E';
	memcpy(buf + n, &relid, sizeof(relid));
	n += sizeof(relid);
	if (tl > cap / 2)
		tl = cap / 2;
	memcpy(buf + n, tenant, tl);
	n += tl;
	buf[n++] = '\0';
	if (col >= 0)
	{
		memcpy(buf + n, &col, sizeof(col));
		n += sizeof(col);
		if (vl > cap - n)
			vl = cap - n;
		memcpy(buf + n, value, vl);
		n += vl;
	}
	*len = n;
}

static ShapeList *
bucket(ShapeRegistry *r, const char *key, size_t len, int create)
{
	ShapeList  *l = hmap_get(&r->route, key, len);

	if (l == NULL && create)
	{
		l = calloc(1, sizeof(ShapeList));
		hmap_put(&r->route, key, len, l);
	}
	return l;
}

static void
bucket_add(ShapeList *l, Shape *s)
{
	if (l->n == l->cap)
	{
		l->cap = l->cap ? l->cap * 2 : 4;
		l->items = realloc(l->items, sizeof(Shape *) * l->cap);
	}
	l->items[l->n++] = s;
}

static void
bucket_remove(ShapeList *l, Shape *s)
{
	for (int j = 0; j < l->n; j++)
		if (l->items[j] == s)
		{
			l->items[j] = l->items[--l->n];
			return;
		}
}

static void
bucket_free_if_empty(ShapeRegistry *r, ShapeList *l, const char *key, size_t len)
{
	if (l->n > 0 || l->neq > 0)
		return;
	hmap_del(&r->route, key, len);
	free(l->items);
	free(l->eqcols);
	free(l->eqrefs);
	free(l);
}

/* The term a shape is indexed by, if any: sets *col and returns its constant. */
static const char *
index_term(const Shape *s, int *col)
{
	int			cols[1];
	const char *consts[1];

	if (s->where != NULL && expr_eq_terms(s->where, 1, cols, consts) == 1)
	{
		*col = cols[0];
		return consts[0];
	}
	*col = -1;
	return NULL;
}

static void
route_add(ShapeRegistry *r, Shape *s)
{
	int			col;
	const char *value = index_term(s, &col);

	for (int i = 0; i < s->ntenants; i++)
	{
		char		key[2048];
		size_t		len;
		ShapeList  *g;

		route_key(s->relid, s->tenants[i], -1, NULL, key, sizeof(key), &len);
		g = bucket(r, key, len, 1);
		if (col < 0)
		{
			bucket_add(g, s);
			continue;
		}
		{
			int			k;

			for (k = 0; k < g->neq && g->eqcols[k] != col; k++)
				;
			if (k == g->neq)
			{
				g->eqcols = realloc(g->eqcols, sizeof(int) * (g->neq + 1));
				g->eqrefs = realloc(g->eqrefs, sizeof(int) * (g->neq + 1));
				g->eqcols[k] = col;
				g->eqrefs[k] = 0;
				g->neq++;
			}
			g->eqrefs[k]++;
		}
		route_key(s->relid, s->tenants[i], col, value, key, sizeof(key), &len);
		bucket_add(bucket(r, key, len, 1), s);
	}
}

static void
route_remove(ShapeRegistry *r, Shape *s)
{
	int			col;
	const char *value = index_term(s, &col);

	for (int i = 0; i < s->ntenants; i++)
	{
		char		gkey[2048];
		char		key[2048];
		size_t		glen,
					len;
		ShapeList  *g,
				   *l;

		route_key(s->relid, s->tenants[i], -1, NULL, gkey, sizeof(gkey), &glen);
		g = bucket(r, gkey, glen, 0);
		if (g == NULL)
			continue;
		if (col < 0)
			bucket_remove(g, s);
		else
		{
			route_key(s->relid, s->tenants[i], col, value, key, sizeof(key), &len);
			if ((l = bucket(r, key, len, 0)) != NULL)
			{
				bucket_remove(l, s);
				bucket_free_if_empty(r, l, key, len);
			}
			for (int k = 0; k < g->neq; k++)
				if (g->eqcols[k] == col && --g->eqrefs[k] == 0)
				{
					g->eqcols[k] = g->eqcols[g->neq - 1];
					g->eqrefs[k] = g->eqrefs[g->neq - 1];
					g->neq--;
					break;
				}
		}
		bucket_free_if_empty(r, g, gkey, glen);
	}
}

void
shape_free(Shape *s)
{
	free(s->key);
	free(s->table);
	free(s->cols);
	free(s->keypos);
	for (int i = 0; i < s->ntenants; i++)
		free(s->tenants[i]);
	free(s->tenants);
	free(s->where_sql);
	free(s->claims_json);
	free(s->rules_sql);
	expr_free(s->where);
	expr_free(s->rules);
	free(s->snap_xip);
	free(s->pending_txn_lsn);
	free(s->pending_txn_xid);
	free(s->subs);
	free(s->invalid_reason);
	free(s->pending_dir);
	free(s);
}

/* The directory of a shape's log, or of its pending log with suffix ".pending". */
static void
shape_dir(const ShapeRegistry *r, const char *handle, const char *suffix, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s%s", r->dir, handle, suffix ? suffix : "");
}

void
shape_drop(ShapeRegistry *r, Shape *s)
{
	char		dir[4096];
	char		err[256];

	/* by_key may already name a newer shape with the same definition */
	if (hmap_get(&r->by_key, s->key, strlen(s->key)) == s)
		hmap_del(&r->by_key, s->key, strlen(s->key));
	hmap_del(&r->by_handle, s->handle, strlen(s->handle));
	route_remove(r, s);
	for (int i = 0; i < r->ndirty; i++)
		if (r->dirty[i] == s)
		{
			r->dirty[i] = r->dirty[--r->ndirty];
			break;
		}
	slog_close(s->log);
	slog_close(s->pending);
	shape_dir(r, s->handle, ".pending", dir, sizeof(dir));
	slog_destroy(dir, err, sizeof(err));
	shape_dir(r, s->handle, NULL, dir, sizeof(dir));
	if (slog_destroy(dir, err, sizeof(err)) != SLOG_OK)
		log_warn("shape", "removing %s: %s", dir, err);
	shape_snap_path(r, s->handle, dir, sizeof(dir));
	unlink(dir);
	r->count--;
	shape_free(s);
}

void
shape_registry_destroy(ShapeRegistry *r)
{
	for (long i = hmap_next(&r->by_handle, 0); i >= 0; i = hmap_next(&r->by_handle, i + 1))
	{
		Shape	   *s = r->by_handle.slots[i].value;

		slog_close(s->log);
		slog_close(s->pending);
		shape_free(s);
	}
	for (long i = hmap_next(&r->route, 0); i >= 0; i = hmap_next(&r->route, i + 1))
	{
		ShapeList  *l = r->route.slots[i].value;

		free(l->items);
		free(l->eqcols);
		free(l->eqrefs);
		free(l);
	}
	hmap_destroy(&r->by_key);
	hmap_destroy(&r->by_handle);
	hmap_destroy(&r->route);
	free(r->dirty);
	free(r->dir);
}

Shape *
shape_by_handle(ShapeRegistry *r, const char *handle)
{
	return hmap_get(&r->by_handle, handle, strlen(handle));
}

void
shape_invalidate(Shape *s, const char *reason)
{
	char		err[256];

	if (s->state == SHAPE_INVALID)
		return;
	s->state = SHAPE_INVALID;
	/* Shapes are looked up by definition for new subscriptions: not this one any more. */
	if (s->registry != NULL && hmap_get(&s->registry->by_key, s->key, strlen(s->key)) == s)
		hmap_del(&s->registry->by_key, s->key, strlen(s->key));
	free(s->invalid_reason);
	s->invalid_reason = strdup(reason);
	if (s->log != NULL)
		slog_set_state(s->log, SLOG_STATE_INVALID, err, sizeof(err));
	log_info("shape", "shape %s on %s must be refetched: %s", s->handle, s->table, reason);
}

void
shape_route(ShapeRegistry *r, uint32_t relid, const char *tenant, const char *const *old_values,
			const char *const *new_values, shape_fn fn, void *arg)
{
	static uint64_t epoch = 0;
	char		key[2048];
	size_t		len;
	ShapeList  *g;

	route_key(relid, tenant, -1, NULL, key, sizeof(key), &len);
	g = hmap_get(&r->route, key, len);
	if (g == NULL)
		return;
	/* fn may invalidate shapes but never removes them from the index. */
	epoch++;
	for (int i = 0; i < g->n; i++)
		fn(g->items[i], arg);
	for (int k = 0; k < g->neq; k++)
	{
		const char *const *rows[2] = {old_values, new_values};

		for (int v = 0; v < 2; v++)
		{
			ShapeList  *l;

			if (rows[v] == NULL || rows[v][g->eqcols[k]] == NULL)
				continue;
			route_key(relid, tenant, g->eqcols[k], rows[v][g->eqcols[k]], key, sizeof(key), &len);
			if ((l = hmap_get(&r->route, key, len)) == NULL)
				continue;
			for (int i = 0; i < l->n; i++)
			{
				/* an update whose old and new values are equal finds a shape twice */
				if (l->items[i]->route_epoch == epoch)
					continue;
				l->items[i]->route_epoch = epoch;
				fn(l->items[i], arg);
			}
		}
	}
}

void
shape_each(ShapeRegistry *r, uint32_t relid, shape_fn fn, void *arg)
{
	int			n = 0;
	Shape	  **all = malloc(sizeof(Shape *) * (r->count + 1));

	/* Collected first: fn may drop shapes. */
	for (long i = hmap_next(&r->by_handle, 0); i >= 0; i = hmap_next(&r->by_handle, i + 1))
	{
		Shape	   *s = r->by_handle.slots[i].value;

		if (relid == 0 || s->relid == relid)
			all[n++] = s;
	}
	for (int i = 0; i < n; i++)
		fn(all[i], arg);
	free(all);
}

/* ----------------------------------------------------------------
 * Resolving a subscription
 * ---------------------------------------------------------------- */

typedef struct ClaimLookup
{
	const ShapeClaims *claims;	/* the subscriber's claims */
	char		buf[64];		/* scratch */
} ClaimLookup;

static const char *
claim_fn(void *arg, const char *name)
{
	ClaimLookup *cl = arg;

	if (strcmp(name, "sub") == 0)
		return cl->claims->sub;
	if (strcmp(name, "role") == 0)
		return cl->claims->role;
	if (strcmp(name, "tenants") == 0)
		return NULL;			/* as JSON text: not comparable usefully; absent */
	return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	while (*len + n + 1 > *cap)
	{
		*cap = *cap ? *cap * 2 : 256;
		*buf = realloc(*buf, *cap);
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
}

/* Builds the OR of the table's rules as SQL, or NULL when it has none. */
static char *
rules_sql(const CatTable *t)
{
	char	   *buf = NULL;
	size_t		len = 0,
				cap = 0;

	if (t->nrules == 0)
		return NULL;
	for (int i = 0; i < t->nrules; i++)
	{
		if (i > 0)
			append(&buf, &len, &cap, " OR ", 4);
		append(&buf, &len, &cap, "(", 1);
		append(&buf, &len, &cap, t->rules[i], strlen(t->rules[i]));
		append(&buf, &len, &cap, "\n)", 2);
	}
	return buf;
}

/*
 * Builds a shape (not registered, no log) for a request and claims: columns,
 * compiled expressions, tenants, and its definition key.
 */
Shape *
shape_build(const Catalog *cat, const ShapeRequest *req, const ShapeClaims *claims,
			ShapeErr *kind, char *err, size_t errlen)
{
	const CatTable *t = cat_table_by_name(cat, req->table);
	Shape	   *s;
	ExprColumn *ecols;
	ExprSchema	schema;
	ClaimLookup cl = {claims, {0}};
	char	   *key = NULL;
	size_t		klen = 0,
				kcap = 0;
	char	   *canon;
	int		   *want;
	char		num[64];

	*kind = SHAPE_OK;
	if (t == NULL)
	{
		*kind = SHAPE_ERR_TABLE;
		snprintf(err, errlen, "table \"%s\" does not exist or is not synced", req->table);
		return NULL;
	}

	s = calloc(1, sizeof(Shape));
	s->relid = t->relid;
	s->cat_generation = t->generation;
	s->table = malloc(strlen(t->schema) + strlen(t->name) + 2);
	sprintf(s->table, "%s.%s", t->schema, t->name);

	/* Columns: requested ones (key always), in table order; all when none requested. */
	want = calloc(t->ncols + 1, sizeof(int));
	for (int i = 0; i < req->ncolumns; i++)
	{
		int			c = cat_column(t, req->columns[i]);

		if (c < 0)
		{
			*kind = SHAPE_ERR_COLUMN;
			snprintf(err, errlen, "table %s has no column \"%s\"", s->table, req->columns[i]);
			free(want);
			shape_free(s);
			return NULL;
		}
		want[c] = 1;
	}
	s->cols = malloc(sizeof(int) * (t->ncols + 1));
	s->keypos = malloc(sizeof(int) * (t->nkeys + 1));
	for (int i = 0; i < t->ncols; i++)
		if (req->ncolumns == 0 || want[i] || t->cols[i].is_key)
			s->cols[s->ncols++] = i;
	free(want);
	for (int k = 0; k < t->nkeys; k++)
		for (int i = 0; i < s->ncols; i++)
			if (s->cols[i] == t->keys[k])
				s->keypos[k] = i;

	/* Expressions over the table's columns. */
	ecols = malloc(sizeof(ExprColumn) * (t->ncols + 1));
	for (int i = 0; i < t->ncols; i++)
	{
		ecols[i].name = t->cols[i].name;
		ecols[i].type_oid = t->cols[i].type_oid;
	}
	schema.ncols = t->ncols;
	schema.cols = ecols;
	if (req->where != NULL && req->where[0] != '\0')
	{
		if (expr_compile(req->where, &schema, NULL, NULL, &s->where, err, errlen) != 0)
		{
			*kind = SHAPE_ERR_WHERE;
			free(ecols);
			shape_free(s);
			return NULL;
		}
		s->where_sql = strdup(req->where);
	}
	s->rules_sql = rules_sql(t);
	if (s->rules_sql != NULL &&
		expr_compile(s->rules_sql, &schema, claim_fn, &cl, &s->rules, err, errlen) != 0)
	{
		*kind = SHAPE_ERR_RULES;
		free(ecols);
		shape_free(s);
		return NULL;
	}
	free(ecols);

	/* Tenants, sorted so equal claims give equal keys. */
	s->tenants = malloc(sizeof(char *) * (claims->ntenants + 1));
	for (int i = 0; i < claims->ntenants; i++)
		s->tenants[i] = strdup(claims->tenants[i]);
	qsort(s->tenants, claims->ntenants, sizeof(char *), cmp_str);
	s->ntenants = claims->ntenants;
	s->claims_json = strdup(claims->json);

	/* The key: everything that decides which rows and columns the shape holds. */
	snprintf(num, sizeof(num), "v1\ntable %u\ncolumns", t->relid);
	append(&key, &klen, &kcap, num, strlen(num));
	for (int i = 0; i < s->ncols; i++)
	{
		const CatColumn *c = &t->cols[s->cols[i]];

		snprintf(num, sizeof(num), ":%u ", c->type_oid);
		append(&key, &klen, &kcap, num, strlen(num));
		append(&key, &klen, &kcap, c->name, strlen(c->name));
	}
	append(&key, &klen, &kcap, "\ntenants", 8);
	for (int i = 0; i < s->ntenants; i++)
	{
		append(&key, &klen, &kcap, "\n ", 2);
		append(&key, &klen, &kcap, s->tenants[i], strlen(s->tenants[i]));
	}
	append(&key, &klen, &kcap, "\nwhere ", 7);
	if (s->where != NULL)
	{
		canon = expr_canonical(s->where);
		append(&key, &klen, &kcap, canon, strlen(canon));
		free(canon);
	}
	append(&key, &klen, &kcap, "\nrules ", 7);
	if (s->rules != NULL)
	{
		canon = expr_canonical(s->rules);
		append(&key, &klen, &kcap, canon, strlen(canon));
		free(canon);
	}
	s->key = key;
	return s;
}

/* The definition kept in the log's meta: what a restart needs to rebuild the shape. */
static char *
definition(const Shape *s, const CatTable *t, size_t *len)
{
	char	   *def = NULL;
	size_t		dlen = 0,
				dcap = 0;
	const char *where = s->where_sql != NULL ? s->where_sql : "";

	/* NUL-separated: key, table, claims, columns, where */
	append(&def, &dlen, &dcap, s->key, strlen(s->key) + 1);
	append(&def, &dlen, &dcap, s->table, strlen(s->table) + 1);
	append(&def, &dlen, &dcap, s->claims_json, strlen(s->claims_json) + 1);
	for (int i = 0; i < s->ncols; i++)
	{
		const char *name = t->cols[s->cols[i]].name;

		append(&def, &dlen, &dcap, i ? "," : "", i ? 1 : 0);
		append(&def, &dlen, &dcap, name, strlen(name));
	}
	append(&def, &dlen, &dcap, "", 1);
	append(&def, &dlen, &dcap, where, strlen(where) + 1);
	*len = dlen;
	return def;
}

void
shape_register(ShapeRegistry *r, Shape *s)
{
	s->registry = r;
	hmap_put(&r->by_key, s->key, strlen(s->key), s);
	hmap_put(&r->by_handle, s->handle, strlen(s->handle), s);
	route_add(r, s);
	r->count++;
}

Shape *
shape_resolve(ShapeRegistry *r, const Catalog *cat, const ShapeRequest *req, const ShapeClaims *claims,
			  int *created, ShapeErr *kind, char *err, size_t errlen)
{
	Shape	   *s;
	Shape	   *found;
	char		dir[4096];
	char		serr[512];
	char	   *def;
	size_t		dlen;
	int			rc;

	*created = 0;
	s = shape_build(cat, req, claims, kind, err, errlen);
	if (s == NULL)
		return NULL;

	/* An equal shape exists: share it. */
	found = hmap_get(&r->by_key, s->key, strlen(s->key));
	if (found != NULL && found->state != SHAPE_INVALID)
	{
		shape_free(s);
		return found;
	}

	snprintf(s->handle, sizeof(s->handle), "%016" PRIx64 "-%" PRId64,
			 hmap_hash(s->key, strlen(s->key)), shape_now_us());
	def = definition(s, cat_table_by_relid(cat, s->relid), &dlen);
	shape_dir(r, s->handle, NULL, dir, sizeof(dir));
	rc = slog_open(&s->log, dir, NULL, SLOG_CREATE, def, dlen, serr, sizeof(serr));
	free(def);
	if (rc == SLOG_OK)
	{
		shape_dir(r, s->handle, ".pending", dir, sizeof(dir));
		s->pending_dir = strdup(dir);
		rc = slog_open(&s->pending, dir, NULL, SLOG_CREATE, "", 0, serr, sizeof(serr));
	}
	if (rc != SLOG_OK)
	{
		*kind = SHAPE_ERR_STORAGE;
		snprintf(err, errlen, "cannot create the shape's log: %s", serr);
		slog_close(s->log);
		shape_free(s);
		return NULL;
	}
	s->state = SHAPE_SNAPSHOTTING;
	shape_register(r, s);
	*created = 1;
	log_info("shape", "shape %s created on %s (%d columns, %d tenants%s%s)", s->handle, s->table,
			 s->ncols, s->ntenants, s->where ? ", where" : "", s->rules ? ", rules" : "");
	return s;
}

/* ----------------------------------------------------------------
 * Rows
 * ---------------------------------------------------------------- */

int
shape_matches(const Shape *s, const CatTable *t, const char *const *values)
{
	if (values[t->col_deleted] != NULL)
		return 0;				/* tombstones are deletes */
	if (s->where != NULL && expr_eval(s->where, values) != EXPR_TRUE)
		return 0;
	if (s->rules != NULL && expr_eval(s->rules, values) != EXPR_TRUE)
		return 0;
	return 1;
}

void
shape_encode_change(const Shape *s, const CatTable *t, int op, const char *const *values,
					const uint32_t *lens, Wbuf *out)
{
	const char *v[1700];
	uint32_t	l[1700];
	int			n = 0;
	int64_t		version = 0;

	if (values[t->col_version] != NULL)
		version = strtoll(values[t->col_version], NULL, 10);
	if (op == WIRE_OP_DELETE)
	{
		for (int k = 0; k < t->nkeys; k++)
		{
			v[n] = values[t->keys[k]];
			l[n++] = lens[t->keys[k]];
		}
	}
	else
		for (int i = 0; i < s->ncols && n < 1700; i++)
		{
			v[n] = values[s->cols[i]];
			l[n++] = lens[s->cols[i]];
		}
	wire_change(out, op, n, v, l, version);
}

/* ----------------------------------------------------------------
 * Appending
 * ---------------------------------------------------------------- */

static int
append_entry(SlogLog *log, uint64_t lsn, uint32_t op, uint8_t kind, int64_t commit_ms,
			 const uint8_t *change, size_t len, char *err, size_t errlen)
{
	uint8_t		small[4096];
	uint8_t    *buf = len + 8 <= sizeof(small) ? small : malloc(len + 8);
	int			rc;

	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t) ((uint64_t) commit_ms >> (8 * i));
	memcpy(buf + 8, change, len);
	rc = slog_append(log, lsn, op, kind, buf, len + 8, err, errlen);
	if (buf != small)
		free(buf);
	return rc;
}

int
shape_append_change(Shape *s, uint64_t lsn, uint32_t op, uint32_t xid, int64_t commit_ms,
					const uint8_t *change, size_t len, char *err, size_t errlen)
{
	SlogLog    *log = s->state == SHAPE_SNAPSHOTTING ? s->pending : s->log;
	SlogOffset	last;

	if (s->state == SHAPE_INVALID || log == NULL)
		return 0;
	/*
	 * A transaction the snapshot saw is in the log already, however late the
	 * stream brings it (replication lag, a replay after a restart).
	 */
	if (shape_snapshot_has(s, lsn, xid))
		return 0;
	last = slog_last(log);
	if (!last.start && (lsn < last.lsn || (lsn == last.lsn && op <= last.op)))
		return 0;				/* replayed after a restart: already in the log */
	if (append_entry(log, lsn, op, SHAPE_ENTRY_CHANGE, commit_ms, change, len, err, errlen) != SLOG_OK)
		return -1;
	if (s->state == SHAPE_SNAPSHOTTING &&
		(s->npending_txns == 0 || s->pending_txn_lsn[s->npending_txns - 1] != lsn))
	{
		s->pending_txn_lsn = realloc(s->pending_txn_lsn, sizeof(uint64_t) * (s->npending_txns + 1));
		s->pending_txn_xid = realloc(s->pending_txn_xid, sizeof(uint64_t) * (s->npending_txns + 1));
		s->pending_txn_lsn[s->npending_txns] = lsn;
		s->pending_txn_xid[s->npending_txns] = xid;
		s->npending_txns++;
	}
	s->last_lsn = lsn;
	s->last_op = op;
	s->dirty = 1;
	shape_mark_dirty(s);
	return 1;
}

int
shape_append_snapshot(Shape *s, uint32_t n, const uint8_t *change, size_t len, char *err, size_t errlen)
{
	if (append_entry(s->log, 0, n, SHAPE_ENTRY_SNAPSHOT, 0, change, len, err, errlen) != SLOG_OK)
		return -1;
	return 0;
}

void
shape_mark_dirty(Shape *s)
{
	ShapeRegistry *r = s->registry;

	if (s->on_dirty_list || r == NULL)
		return;
	if (r->ndirty == r->dirty_cap)
	{
		r->dirty_cap = r->dirty_cap ? r->dirty_cap * 2 : 64;
		r->dirty = realloc(r->dirty, sizeof(Shape *) * r->dirty_cap);
	}
	r->dirty[r->ndirty++] = s;
	s->on_dirty_list = 1;
}

void
shape_each_dirty(ShapeRegistry *r, shape_keep_fn fn, void *arg)
{
	int			n = r->ndirty;
	Shape	  **list = r->dirty;

	/* fn may mark shapes dirty again: they go on a fresh list */
	r->dirty = NULL;
	r->ndirty = r->dirty_cap = 0;
	for (int i = 0; i < n; i++)
		list[i]->on_dirty_list = 0;
	for (int i = 0; i < n; i++)
		if (fn(list[i], arg))
			shape_mark_dirty(list[i]);
	free(list);
}

int
shape_sync(Shape *s, char *err, size_t errlen)
{
	/* While SNAPSHOTTING the worker owns the log; it syncs it itself. */
	if (s->state != SHAPE_SNAPSHOTTING && s->log != NULL && slog_sync(s->log, NULL, err, errlen) != SLOG_OK)
		return -1;
	if (s->pending != NULL && slog_sync(s->pending, NULL, err, errlen) != SLOG_OK)
		return -1;
	s->dirty = 0;
	return 0;
}

/* ----------------------------------------------------------------
 * Subscribers
 * ---------------------------------------------------------------- */

void
shape_add_sub(Shape *s, struct Subscription *sub)
{
	if (s->nsubs == s->subs_cap)
	{
		s->subs_cap = s->subs_cap ? s->subs_cap * 2 : 4;
		s->subs = realloc(s->subs, sizeof(*s->subs) * s->subs_cap);
	}
	s->subs[s->nsubs++] = sub;
	s->idle_since_us = 0;
}

void
shape_remove_sub(Shape *s, struct Subscription *sub, int64_t now)
{
	for (int i = 0; i < s->nsubs; i++)
		if (s->subs[i] == sub)
		{
			s->subs[i] = s->subs[--s->nsubs];
			break;
		}
	if (s->nsubs == 0)
		s->idle_since_us = now;
}

