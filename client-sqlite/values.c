/*
 * client-sqlite/values.c -- values between the app's JSON, Postgres text form and SQLite.
 *
 * Three forms of a value:
 *   - text form: what the protocol carries and the queue stores, the string psql
 *     prints ("t", "{a,b}", "2024-05-01 10:00:00+00"); NULL is a C NULL / JSON null;
 *   - mirror form: what a mirror table holds, typed where that is lossless:
 *     smallint/integer/bigint as SQLite integers, boolean as 1/0, real/double
 *     precision as SQLite reals, everything else (numeric, text, timestamps, uuids,
 *     arrays, json) as the text form;
 *   - app JSON: what ferry_insert/update take: text-form strings, or native JSON
 *     (numbers, booleans, arrays for array columns, objects for json/jsonb columns).
 *
 * Keys: a row's key in ferry's tables (row_key) is a JSON array of the text forms of
 * its key columns, in key-column order: ["42"], ["ws-a","7"]. The app names a row by
 * a JSON scalar (one-column keys) or object; callbacks get an object.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* fy_column_classify sets kind/array/json from the column's type oid and name. */
void
fy_column_classify(FyColumn *c)
{
	const char *t = c->type ? c->type : "";
	size_t		len = strlen(t);

	c->array = len > 2 && strcmp(t + len - 2, "[]") == 0;
	c->json = strcmp(t, "json") == 0 || strcmp(t, "jsonb") == 0 || c->oid == 114 || c->oid == 3802;
	if (c->oid == 20 || c->oid == 21 || c->oid == 23 || strcmp(t, "bigint") == 0 || strcmp(t, "integer") == 0 ||
		strcmp(t, "smallint") == 0)
		c->kind = FY_INT;
	else if (c->oid == 16 || strcmp(t, "boolean") == 0)
		c->kind = FY_BOOL;
	else if (c->oid == 700 || c->oid == 701 || strcmp(t, "real") == 0 || strcmp(t, "double precision") == 0)
		c->kind = FY_REAL;
	else
		c->kind = FY_TEXT;
}

/* fy_real_text returns the shortest decimal text that reads back as d (malloc'd). */
char *
fy_real_text(double d)
{
	char		buf[64];

	if (isnan(d))
		return fy_strdup("NaN");
	if (isinf(d))
		return fy_strdup(d > 0 ? "Infinity" : "-Infinity");
	for (int p = 1; p <= 17; p++)
	{
		snprintf(buf, sizeof(buf), "%.*g", p, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return fy_strdup(buf);
}

/* Appends s to a growing buffer; returns false when out of memory. */
static bool
buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap)
	{
		size_t		ncap = (*cap ? *cap * 2 : 64);
		char	   *nb;

		while (ncap < *len + n + 1)
			ncap *= 2;
		nb = realloc(*buf, ncap);
		if (nb == NULL)
			return false;
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return true;
}

/* Appends a JSON array as a Postgres array literal ({...}, elements quoted). */
static bool
array_literal(const json_t *a, char **buf, size_t *len, size_t *cap)
{
	size_t		i;
	json_t	   *e;

	if (!buf_add(buf, len, cap, "{", 1))
		return false;
	json_array_foreach(a, i, e)
	{
		if (i > 0 && !buf_add(buf, len, cap, ",", 1))
			return false;
		if (json_is_null(e))
		{
			if (!buf_add(buf, len, cap, "NULL", 4))
				return false;
		}
		else if (json_is_array(e))
		{
			if (!array_literal(e, buf, len, cap))
				return false;
		}
		else
		{
			char	   *t;
			bool		okay = buf_add(buf, len, cap, "\"", 1);

			if (json_is_string(e))
				t = fy_strdup(json_string_value(e));
			else if (json_is_integer(e))
				t = fy_sprintf("%lld", (long long) json_integer_value(e));
			else if (json_is_real(e))
				t = fy_real_text(json_real_value(e));
			else if (json_is_boolean(e))
				t = fy_strdup(json_is_true(e) ? "t" : "f");
			else
				t = fy_json_dump(e);
			if (t == NULL)
				return false;
			for (const char *p = t; okay && *p; p++)
			{
				if ((*p == '"' || *p == '\\') && !buf_add(buf, len, cap, "\\", 1))
					okay = false;
				if (okay && !buf_add(buf, len, cap, p, 1))
					okay = false;
			}
			free(t);
			if (!okay || !buf_add(buf, len, cap, "\"", 1))
				return false;
		}
	}
	return buf_add(buf, len, cap, "}", 1);
}

/*
 * fy_json_to_text converts an app's JSON value for column c into text form: *text is
 * malloc'd, or NULL for JSON null. Returns FERRY_OK or FERRY_INVALID (err says why).
 */
int
fy_json_to_text(const json_t *v, const FyColumn *c, char **text, char *err, size_t errlen)
{
	*text = NULL;
	switch (json_typeof(v))
	{
		case JSON_NULL:
			return FERRY_OK;
		case JSON_STRING:
			*text = fy_strdup(json_string_value(v));
			break;
		case JSON_TRUE:
		case JSON_FALSE:
			*text = fy_strdup(c->kind == FY_BOOL ? (json_is_true(v) ? "t" : "f") : (json_is_true(v) ? "true" : "false"));
			break;
		case JSON_INTEGER:
			if (c->kind == FY_BOOL)
				*text = fy_strdup(json_integer_value(v) ? "t" : "f");
			else
				*text = fy_sprintf("%lld", (long long) json_integer_value(v));
			break;
		case JSON_REAL:
			*text = fy_real_text(json_real_value(v));
			break;
		case JSON_ARRAY:
			if (c->json)
				*text = fy_json_dump(v);
			else if (c->array)
			{
				size_t		len = 0,
							cap = 0;

				if (!array_literal(v, text, &len, &cap))
				{
					free(*text);
					*text = NULL;
				}
			}
			else
			{
				snprintf(err, errlen, "column \"%s\" is of type %s: a JSON array cannot be its value "
						 "(give the Postgres text form as a string)", c->name, c->type);
				return FERRY_INVALID;
			}
			break;
		case JSON_OBJECT:
			if (!c->json)
			{
				snprintf(err, errlen, "column \"%s\" is of type %s: a JSON object cannot be its value "
						 "(give the Postgres text form as a string)", c->name, c->type);
				return FERRY_INVALID;
			}
			*text = fy_json_dump(v);
			break;
	}
	if (*text == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return FERRY_NOMEM;
	}
	return FERRY_OK;
}

/*
 * fy_bind_text binds the text-form value `text` (NULL: SQL NULL) for column c in its
 * mirror form.
 */
int
fy_bind_text(sqlite3_stmt *st, int idx, const FyColumn *c, const char *text)
{
	char	   *end;

	if (text == NULL)
		return sqlite3_bind_null(st, idx);
	switch (c->kind)
	{
		case FY_INT:
			{
				long long	v;

				errno = 0;
				v = strtoll(text, &end, 10);
				if (errno == 0 && end != text && *end == '\0')
					return sqlite3_bind_int64(st, idx, v);
				break;
			}
		case FY_BOOL:
			if (strcmp(text, "t") == 0 || strcmp(text, "true") == 0)
				return sqlite3_bind_int(st, idx, 1);
			if (strcmp(text, "f") == 0 || strcmp(text, "false") == 0)
				return sqlite3_bind_int(st, idx, 0);
			break;
		case FY_REAL:
			{
				double		d = strtod(text, &end);

				if (end != text && *end == '\0' && isfinite(d))
					return sqlite3_bind_double(st, idx, d);
				break;
			}
		case FY_TEXT:
			break;
	}
	return sqlite3_bind_text(st, idx, text, -1, SQLITE_TRANSIENT);
}

/* fy_value_text reads column idx of st (mirror form of c) as text form: malloc'd, or NULL. */
char *
fy_value_text(sqlite3_stmt *st, int idx, const FyColumn *c)
{
	switch (sqlite3_column_type(st, idx))
	{
		case SQLITE_NULL:
			return NULL;
		case SQLITE_INTEGER:
			if (c != NULL && c->kind == FY_BOOL)
				return fy_strdup(sqlite3_column_int64(st, idx) ? "t" : "f");
			return fy_sprintf("%lld", (long long) sqlite3_column_int64(st, idx));
		case SQLITE_FLOAT:
			return fy_real_text(sqlite3_column_double(st, idx));
		default:
			{
				const char *t = (const char *) sqlite3_column_text(st, idx);

				return fy_strdup(t ? t : "");
			}
	}
}

/* fy_text_json returns a JSON string of text, or JSON null for NULL (new reference). */
json_t *
fy_text_json(const char *text)
{
	return text == NULL ? json_null() : json_string(text);
}

/* fy_json_dump returns compact JSON text of v (malloc'd). */
char *
fy_json_dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* fy_text_equal: two text-form values (NULL = SQL NULL) are the same. */
bool
fy_text_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* fy_quote_ident returns name as a double-quoted SQL identifier (malloc'd). */
char *
fy_quote_ident(const char *name)
{
	size_t		n = strlen(name);
	char	   *out = malloc(n * 2 + 3);
	char	   *p = out;

	if (out == NULL)
		return NULL;
	*p++ = '"';
	for (const char *s = name; *s; s++)
	{
		if (*s == '"')
			*p++ = '"';
		*p++ = *s;
	}
	*p++ = '"';
	*p = '\0';
	return out;
}

/* ---- keys -------------------------------------------------------------------------- */

/* Builds row_key (JSON array of text forms) from per-key-column JSON values. */
static int
key_from(ferry *db, const FyShape *s, json_t *const *vals, char **row_key)
{
	json_t	   *arr = json_array();
	char		err[512];

	for (int k = 0; k < s->nkeys; k++)
	{
		const FyColumn *c = &s->cols[s->keys[k]];
		char	   *text;
		int			rc;

		if (vals[k] == NULL || json_is_null(vals[k]))
		{
			json_decref(arr);
			return fy_err(db, FERRY_INVALID, "the key of %s needs column \"%s\"", s->tbl, c->name);
		}
		if (json_is_object(vals[k]) || json_is_array(vals[k]))
		{
			json_decref(arr);
			return fy_err(db, FERRY_INVALID, "key column \"%s\" of %s needs a scalar value", c->name, s->tbl);
		}
		if ((rc = fy_json_to_text(vals[k], c, &text, err, sizeof(err))) != FERRY_OK)
		{
			json_decref(arr);
			return fy_err(db, rc, "%s", err);
		}
		json_array_append_new(arr, json_string(text));
		free(text);
	}
	*row_key = fy_json_dump(arr);
	json_decref(arr);
	return *row_key ? FERRY_OK : fy_err(db, FERRY_NOMEM, "out of memory");
}

/*
 * fy_key_parse turns the app's key (a JSON scalar for a one-column key, or an object
 * with every key column) into row_key (malloc'd).
 */
int
fy_key_parse(ferry *db, const FyShape *s, const char *key, char **row_key)
{
	json_error_t jerr;
	json_t	   *j;
	json_t	   *vals[64] = {0};
	int			rc;

	*row_key = NULL;
	if (key == NULL)
		return fy_err(db, FERRY_MISUSE, "no key given for a row of %s", s->tbl);
	if (s->nkeys == 0 || s->nkeys > 64)
		return fy_err(db, FERRY_INVALID, "%s has no usable primary key in its shape", s->tbl);
	j = json_loads(key, JSON_DECODE_ANY, &jerr);
	if (j == NULL)
	{
		/* A bare word is taken as a string key: `ferry delete todos abc`. */
		if (s->nkeys == 1 && key[0] != '\0' && strchr("{[\"", key[0]) == NULL)
			j = json_string(key);
		else
			return fy_err(db, FERRY_INVALID, "the key \"%s\" is not JSON: %s", key, jerr.text);
	}
	if (json_is_object(j))
	{
		const char *name;
		json_t	   *v;

		json_object_foreach(j, name, v)
		{
			int			i = fy_shape_column(s, name);

			if (i < 0 || !s->cols[i].key)
			{
				json_decref(j);
				return fy_err(db, FERRY_INVALID, "\"%s\" is not a key column of %s", name, s->tbl);
			}
		}
		for (int k = 0; k < s->nkeys; k++)
			vals[k] = json_object_get(j, s->cols[s->keys[k]].name);
	}
	else if (s->nkeys == 1)
		vals[0] = j;
	else
	{
		json_decref(j);
		return fy_err(db, FERRY_INVALID, "%s has a key of %d columns: give it as a JSON object", s->tbl, s->nkeys);
	}
	rc = key_from(db, s, vals, row_key);
	json_decref(j);
	return rc;
}

/* fy_key_from_values takes row_key from a JSON object of column values (an insert's). */
int
fy_key_from_values(ferry *db, const FyShape *s, const json_t *obj, char **row_key)
{
	json_t	   *vals[64] = {0};

	if (s->nkeys == 0 || s->nkeys > 64)
		return fy_err(db, FERRY_INVALID, "%s has no usable primary key in its shape", s->tbl);
	for (int k = 0; k < s->nkeys; k++)
		vals[k] = json_object_get(obj, s->cols[s->keys[k]].name);
	return key_from(db, s, vals, row_key);
}

/* fy_key_object returns row_key as a JSON object {"keycol": "text"} (malloc'd). */
char *
fy_key_object(const FyShape *s, const char *row_key)
{
	json_t	   *arr = json_loads(row_key, 0, NULL);
	json_t	   *obj = json_object();
	char	   *out;

	for (int k = 0; k < s->nkeys && arr != NULL; k++)
	{
		json_t	   *v = json_array_get(arr, (size_t) k);

		json_object_set(obj, s->cols[s->keys[k]].name, v ? v : json_null());
	}
	out = fy_json_dump(obj);
	json_decref(obj);
	json_decref(arr);
	return out;
}
