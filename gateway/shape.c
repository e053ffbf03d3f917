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

#include <jansson.h>

#include "log.h"
#include "shape.h"

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

static int64_t
now_us(void)
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

static void
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

/*
 * The snapshot's visibility lives beside the log in "<handle>.snap", so a
 * restart still knows which replayed transactions the snapshot had.
 */
static void
snap_path(const ShapeRegistry *r, const char *handle, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s.snap", r->dir, handle);
}

static int
snap_write(const Shape *s, char *err, size_t errlen)
{
	char		path[4096];
	char		tmp[4200];
	FILE	   *f;
	int			ok;

	snap_path(s->registry, s->handle, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
	{
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return -1;
	}
	fprintf(f, "%" PRIu64 " %" PRIu64 ":%" PRIu64 ":", s->snap_lsn, s->snap_xmin, s->snap_xmax);
	for (int i = 0; i < s->snap_nxip; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", s->snap_xip[i]);
	fputc('\n', f);
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) != 0)
	{
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int
snap_read(Shape *s, const ShapeRegistry *r, const char *handle)
{
	char		path[4096];
	char	   *text = NULL;
	size_t		cap = 0;
	FILE	   *f;
	uint64_t	lsn;
	char	   *sp;
	int			rc = -1;

	snap_path(r, handle, path, sizeof(path));
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (getline(&text, &cap, f) > 0)
	{
		text[strcspn(text, "\n")] = '\0';
		lsn = strtoull(text, &sp, 10);
		if (sp != text && *sp == ' ')
			rc = shape_parse_snapshot(s, sp + 1, lsn);
	}
	free(text);
	fclose(f);
	return rc;
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
	snap_path(r, s->handle, dir, sizeof(dir));
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
static Shape *
build_shape(const Catalog *cat, const ShapeRequest *req, const ShapeClaims *claims,
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

static void
register_shape(ShapeRegistry *r, Shape *s)
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
	s = build_shape(cat, req, claims, kind, err, errlen);
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
			 hmap_hash(s->key, strlen(s->key)), now_us());
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
	register_shape(r, s);
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
 * Snapshots
 * ---------------------------------------------------------------- */

int
shape_parse_snapshot(Shape *s, const char *text, uint64_t lsn)
{
	/* "xmin:xmax:xip1,xip2,..." */
	char	   *end;
	const char *p = text;

	s->snap_lsn = lsn;
	s->snap_xmin = strtoull(p, &end, 10);
	if (end == p || *end != ':')
		return -1;
	p = end + 1;
	s->snap_xmax = strtoull(p, &end, 10);
	if (end == p || *end != ':')
		return -1;
	p = end + 1;
	s->snap_nxip = 0;
	free(s->snap_xip);
	s->snap_xip = NULL;
	while (*p)
	{
		uint64_t	x = strtoull(p, &end, 10);

		if (end == p)
			return -1;
		s->snap_xip = realloc(s->snap_xip, sizeof(uint64_t) * (s->snap_nxip + 1));
		s->snap_xip[s->snap_nxip++] = x;
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end != '\0')
			return -1;
	}
	return 0;
}

/* The 64-bit xid of a 32-bit one, taking the epoch nearest to the snapshot's xmax. */
static uint64_t
widen_xid(uint64_t ref, uint32_t xid)
{
	uint64_t	full = (ref & ~(uint64_t) 0xFFFFFFFF) | xid;

	if (full > ref && full - ref > 0x80000000ULL && full >= 0x100000000ULL)
		full -= 0x100000000ULL;
	else if (full < ref && ref - full > 0x80000000ULL)
		full += 0x100000000ULL;
	return full;
}

int
shape_snapshot_saw(const Shape *s, uint32_t xid)
{
	uint64_t	full = widen_xid(s->snap_xmax, xid);

	if (full >= s->snap_xmax)
		return 0;
	if (full < s->snap_xmin)
		return 1;
	for (int i = 0; i < s->snap_nxip; i++)
		if (s->snap_xip[i] == full)
			return 0;
	return 1;
}

int
shape_snapshot_has(const Shape *s, uint64_t commit_lsn, uint32_t xid)
{
	/* Commits after the snapshot's WAL position were not in it, whatever their xid. */
	return s->snap_lsn != 0 && commit_lsn < s->snap_lsn && shape_snapshot_saw(s, xid);
}

int
shape_finish_snapshot(Shape *s, char *err, size_t errlen)
{
	SlogCursor *c;
	SlogEntry	e;
	int			rc;
	int			t = 0;

	if (s->pending != NULL)
	{
		if (slog_sync(s->pending, NULL, err, errlen) != SLOG_OK)
			return -1;
		rc = slog_cursor_open(s->pending, SLOG_OFFSET_START, &c, err, errlen);
		if (rc == SLOG_OK)
		{
			while ((rc = slog_cursor_next(c, &e, err, errlen)) == SLOG_OK)
			{
				while (t < s->npending_txns && s->pending_txn_lsn[t] < e.lsn)
					t++;
				/* Transactions the snapshot saw are in it already. */
				if (t < s->npending_txns && s->pending_txn_lsn[t] == e.lsn &&
					shape_snapshot_has(s, e.lsn, (uint32_t) s->pending_txn_xid[t]))
					continue;
				if (slog_append(s->log, e.lsn, e.op, e.kind, e.payload, e.len, err, errlen) != SLOG_OK)
				{
					slog_cursor_close(c);
					return -1;
				}
				s->last_lsn = e.lsn;
				s->last_op = e.op;
			}
			slog_cursor_close(c);
			if (rc != SLOG_END)
				return -1;
		}
		else if (rc != SLOG_GONE)
			return -1;
	}
	/* The visibility first: a LIVE log always has it. */
	if (slog_sync(s->log, NULL, err, errlen) != SLOG_OK || snap_write(s, err, errlen) != 0 ||
		slog_set_state(s->log, SLOG_STATE_LIVE, err, errlen) != SLOG_OK)
		return -1;
	if (s->pending != NULL)
	{
		char		derr[256];

		slog_close(s->pending);
		s->pending = NULL;
		if (s->pending_dir != NULL && slog_destroy(s->pending_dir, derr, sizeof(derr)) != SLOG_OK)
			log_warn("shape", "removing %s: %s", s->pending_dir, derr);
	}
	free(s->pending_txn_lsn);
	free(s->pending_txn_xid);
	s->pending_txn_lsn = NULL;
	s->pending_txn_xid = NULL;
	s->npending_txns = 0;
	s->state = SHAPE_READY;
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

/* ----------------------------------------------------------------
 * Restart
 * ---------------------------------------------------------------- */

/* Splits a stored definition into its NUL-separated fields. */
static int
split_definition(const char *def, size_t len, const char **fields, int n)
{
	size_t		pos = 0;

	for (int i = 0; i < n; i++)
	{
		const char *nul;

		if (pos >= len || (nul = memchr(def + pos, '\0', len - pos)) == NULL)
			return -1;
		fields[i] = def + pos;
		pos = nul - def + 1;
	}
	return 0;
}

/*
 * Rebuilds the shape kept in dir (named handle). Returns 0 when it was
 * loaded, -1 when it must be removed (why in err).
 */
static int
load_one(ShapeRegistry *r, const Catalog *cat, const char *handle, const char *dir, char *err, size_t errlen)
{
	SlogLog    *log;
	const char *f[5];
	size_t		dlen;
	const char *def;
	json_t	   *claims_js;
	json_error_t jerr;
	ShapeClaims claims = {0};
	ShapeRequest req = {0};
	ShapeErr	kind;
	Shape	   *s;
	char	   *cols;
	SlogOffset	last;
	int			rc = -1;

	if (slog_open(&log, dir, NULL, 0, NULL, 0, err, errlen) != SLOG_OK)
		return -1;
	if (slog_state(log) != SLOG_STATE_LIVE)
	{
		snprintf(err, errlen, "its snapshot never finished or it was invalidated");
		slog_close(log);
		return -1;
	}
	def = slog_definition(log, &dlen);
	if (split_definition(def, dlen, f, 5) != 0 ||
		(claims_js = json_loads(f[2], 0, &jerr)) == NULL)
	{
		snprintf(err, errlen, "its definition is unreadable");
		slog_close(log);
		return -1;
	}
	claims.sub = json_string_value(json_object_get(claims_js, "sub"));
	claims.role = json_string_value(json_object_get(claims_js, "role"));
	claims.json = f[2];
	{
		json_t	   *ts = json_object_get(claims_js, "tenants");

		claims.ntenants = (int) json_array_size(ts);
		claims.tenants = calloc(claims.ntenants + 1, sizeof(char *));
		for (int i = 0; i < claims.ntenants; i++)
			claims.tenants[i] = (char *) json_string_value(json_array_get(ts, i));
	}
	req.table = f[1];
	req.where = f[4];
	cols = strdup(f[3]);
	req.columns = calloc(strlen(cols) + 2, sizeof(char *));
	for (char *c = strtok(cols, ","); c != NULL; c = strtok(NULL, ","))
		req.columns[req.ncolumns++] = c;

	s = build_shape(cat, &req, &claims, &kind, err, errlen);
	if (s != NULL && strcmp(s->key, f[0]) != 0)
	{
		snprintf(err, errlen, "its table, columns or rules changed while ferryd was stopped");
		shape_free(s);
		s = NULL;
	}
	if (s != NULL && snap_read(s, r, handle) != 0)
	{
		snprintf(err, errlen, "its snapshot's visibility (%s.snap) is missing", handle);
		shape_free(s);
		s = NULL;
	}
	if (s != NULL)
	{
		snprintf(s->handle, sizeof(s->handle), "%s", handle);
		s->log = log;
		s->state = SHAPE_READY;
		last = slog_last(log);
		s->last_lsn = last.lsn;
		s->last_op = last.op;
		s->idle_since_us = now_us();
		register_shape(r, s);
		rc = 0;
	}
	else
		slog_close(log);
	free(cols);
	free(req.columns);
	free(claims.tenants);
	json_decref(claims_js);
	return rc;
}

int
shape_registry_load(ShapeRegistry *r, const Catalog *cat, char *err, size_t errlen)
{
	DIR		   *d = opendir(r->dir);
	struct dirent *de;
	int			loaded = 0,
				dropped = 0;

	if (d == NULL)
	{
		snprintf(err, errlen, "cannot read \"%s\": %s", r->dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL)
	{
		char		dir[4096];
		char		why[512];
		char		derr[256];
		size_t		n = strlen(de->d_name);

		if (de->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", r->dir, de->d_name);
		if (n > 5 && strcmp(de->d_name + n - 5, ".snap") == 0)
			continue;			/* read with its shape; orphans go below */
		if (n > 8 && strcmp(de->d_name + n - 8, ".pending") == 0)
		{
			/* a pending log outlives only an unfinished snapshot */
			slog_destroy(dir, derr, sizeof(derr));
			continue;
		}
		if (n >= sizeof(((Shape *) 0)->handle) || load_one(r, cat, de->d_name, dir, why, sizeof(why)) != 0)
		{
			log_info("shape", "dropping shape %s: %s", de->d_name, n >= 48 ? "bad name" : why);
			if (slog_destroy(dir, derr, sizeof(derr)) != SLOG_OK)
				log_warn("shape", "removing %s: %s", dir, derr);
			dropped++;
			continue;
		}
		loaded++;
	}
	/* visibility files of shapes that are gone */
	rewinddir(d);
	while ((de = readdir(d)) != NULL)
	{
		size_t		n = strlen(de->d_name);
		char		handle[64];
		char		path[4096];

		if (n <= 5 || n - 5 >= sizeof(handle) || strcmp(de->d_name + n - 5, ".snap") != 0)
			continue;
		memcpy(handle, de->d_name, n - 5);
		handle[n - 5] = '\0';
		if (shape_by_handle(r, handle) == NULL)
		{
			snprintf(path, sizeof(path), "%s/%s", r->dir, de->d_name);
			unlink(path);
		}
	}
	closedir(d);
	log_info("shape", "%d shapes resumed from %s, %d dropped", loaded, r->dir, dropped);
	return 0;
}
