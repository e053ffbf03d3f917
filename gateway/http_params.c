/*
 * gateway/http_params.c -- the query parameters of ferryd's HTTP API, parsed and checked.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_params.h"

void
http_params_init(HttpParams *p)
{
	memset(p, 0, sizeof(*p));
}

void
http_params_free(HttpParams *p)
{
	free(p->table);
	free(p->where);
	free(p->columns);
	free(p->offset);
	free(p->handle);
	free(p->cursor);
	free(p->replica);
	free(p->log);
	free(p->since);
	free(p->limit);
	for (int i = 0; i < HTTP_MAX_WHERE_PARAMS; i++)
		free(p->wparams[i]);
	memset(p, 0, sizeof(*p));
}

static int
set_once(char **slot, const char *name, const char *v, size_t n, char *err, size_t errlen)
{
	if (*slot != NULL)
	{
		snprintf(err, errlen, "parameter \"%s\" is given twice", name);
		return -1;
	}
	*slot = malloc(n + 1);
	memcpy(*slot, v, n);
	(*slot)[n] = '\0';
	return 0;
}

static int
is_true(const char *v, size_t n)
{
	return n == 4 && memcmp(v, "true", 4) == 0;
}

int
http_params_add(HttpParams *p, const char *arg, size_t len, char *err, size_t errlen)
{
	const char *eq = memchr(arg, '=', len);
	size_t		nlen = eq != NULL ? (size_t) (eq - arg) : len;
	const char *v = eq != NULL ? eq + 1 : arg + len;
	size_t		vlen = eq != NULL ? len - nlen - 1 : 0;
	static const struct
	{
		const char *name;
		size_t		off;
	}			strs[] = {
		{"table", offsetof(HttpParams, table)},
		{"where", offsetof(HttpParams, where)},
		{"columns", offsetof(HttpParams, columns)},
		{"offset", offsetof(HttpParams, offset)},
		{"handle", offsetof(HttpParams, handle)},
		{"cursor", offsetof(HttpParams, cursor)},
		{"replica", offsetof(HttpParams, replica)},
		{"log", offsetof(HttpParams, log)},
		{"since", offsetof(HttpParams, since)},
		{"limit", offsetof(HttpParams, limit)},
	};

	if (vlen > HTTP_MAX_PARAM_BYTES)
	{
		snprintf(err, errlen, "a parameter value above %d bytes", HTTP_MAX_PARAM_BYTES);
		return -1;
	}
	if (memchr(arg, '\0', len) != NULL)
	{
		snprintf(err, errlen, "a parameter holds a NUL byte");
		return -1;
	}
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strlen(strs[i].name) == nlen && memcmp(arg, strs[i].name, nlen) == 0)
			return set_once((char **) ((char *) p + strs[i].off), strs[i].name, v, vlen, err, errlen);
	if (nlen == 4 && memcmp(arg, "live", 4) == 0)
		p->live = is_true(v, vlen);
	else if ((nlen == 8 && memcmp(arg, "live_sse", 8) == 0) ||
			 (nlen == 21 && memcmp(arg, "experimental_live_sse", 21) == 0))
		p->live_sse = p->live_sse || is_true(v, vlen);
	else if (nlen > 8 && memcmp(arg, "params[", 7) == 0 && arg[nlen - 1] == ']')
	{
		int			n = 0;

		for (size_t i = 7; i < nlen - 1; i++)
		{
			if (!isdigit((unsigned char) arg[i]) || n > HTTP_MAX_WHERE_PARAMS)
			{
				snprintf(err, errlen, "params[n] wants n from 1 to %d", HTTP_MAX_WHERE_PARAMS);
				return -1;
			}
			n = n * 10 + (arg[i] - '0');
		}
		if (n < 1 || n > HTTP_MAX_WHERE_PARAMS)
		{
			snprintf(err, errlen, "params[n] wants n from 1 to %d", HTTP_MAX_WHERE_PARAMS);
			return -1;
		}
		if (set_once(&p->wparams[n - 1], "params[n]", v, vlen, err, errlen) != 0)
			return -1;
		if (n > p->nwparams)
			p->nwparams = n;
	}
	else if (nlen > 8 && memcmp(arg, "subset__", 8) == 0)
		p->subset = 1;
	/* anything else (cache-buster, expired_handle...) is ignored */
	return 0;
}

/* ----------------------------------------------------------------
 * WHERE with $n parameters
 * ---------------------------------------------------------------- */

static void
put(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap)
	{
		while (*len + n + 1 > *cap)
			*cap = *cap ? *cap * 2 : 256;
		*b = realloc(*b, *cap);
	}
	memcpy(*b + *len, s, n);
	*len += n;
	(*b)[*len] = '\0';
}

int
http_params_where(const HttpParams *p, char **out, char *err, size_t errlen)
{
	const char *w = p->where;
	char	   *b = NULL;
	size_t		len = 0,
				cap = 0;
	size_t		i = 0,
				n;

	*out = NULL;
	if (w == NULL || w[0] == '\0')
		return 0;
	n = strlen(w);
	put(&b, &len, &cap, "", 0);
	while (i < n)
	{
		char		c = w[i];

		if (c == '\'' || c == '"')
		{
			/* a literal or quoted identifier, copied whole ('' and "" stay inside) */
			size_t		j = i + 1;

			while (j < n && !(w[j] == c && (j + 1 >= n || w[j + 1] != c)))
				j += (w[j] == c) ? 2 : 1;
			j = j < n ? j + 1 : n;
			put(&b, &len, &cap, w + i, j - i);
			i = j;
		}
		else if (c == '-' && i + 1 < n && w[i + 1] == '-')
		{
			size_t		j = i;

			while (j < n && w[j] != '\n')
				j++;
			put(&b, &len, &cap, w + i, j - i);
			i = j;
		}
		else if (c == '$' && i + 1 < n && isdigit((unsigned char) w[i + 1]) &&
				 (i == 0 || !(isalnum((unsigned char) w[i - 1]) || w[i - 1] == '_')))
		{
			size_t		j = i + 1;
			long		k = 0;
			const char *v;

			while (j < n && isdigit((unsigned char) w[j]) && k <= HTTP_MAX_WHERE_PARAMS)
				k = k * 10 + (w[j++] - '0');
			if (k < 1 || k > HTTP_MAX_WHERE_PARAMS || (v = p->wparams[k - 1]) == NULL)
			{
				snprintf(err, errlen, "the where clause uses $%ld but no params[%ld] was given", k, k);
				free(b);
				return -1;
			}
			put(&b, &len, &cap, "'", 1);
			for (const char *q = v; *q; q++)
				put(&b, &len, &cap, *q == '\'' ? "''" : q, *q == '\'' ? 2 : 1);
			put(&b, &len, &cap, "'", 1);
			i = j;
		}
		else
		{
			put(&b, &len, &cap, w + i, 1);
			i++;
		}
	}
	*out = b;
	return 0;
}

/* ----------------------------------------------------------------
 * columns and table
 * ---------------------------------------------------------------- */

void
http_params_free_columns(char **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Reads one identifier at s[*i]: "quoted" or bare (folded to lower case). NULL when malformed. */
static char *
ident(const char *s, size_t n, size_t *i)
{
	char	   *out = malloc(n + 1);
	size_t		o = 0;

	if (*i < n && s[*i] == '"')
	{
		(*i)++;
		for (;;)
		{
			if (*i >= n)
			{
				free(out);
				return NULL;
			}
			if (s[*i] == '"')
			{
				if (*i + 1 < n && s[*i + 1] == '"')
				{
					out[o++] = '"';
					*i += 2;
					continue;
				}
				(*i)++;
				break;
			}
			out[o++] = s[(*i)++];
		}
	}
	else
	{
		while (*i < n && s[*i] != ',' && s[*i] != '.')
		{
			unsigned char c = (unsigned char) s[(*i)++];

			if (c == '"' || isspace(c))
			{
				free(out);
				return NULL;
			}
			out[o++] = (char) tolower(c);
		}
	}
	out[o] = '\0';
	if (o == 0)
	{
		free(out);
		return NULL;
	}
	return out;
}

int
http_params_columns(const HttpParams *p, char ***names, int *n, char *err, size_t errlen)
{
	const char *s = p->columns;
	size_t		len,
				i = 0;
	char	  **v = NULL;
	int			k = 0;

	*names = NULL;
	*n = 0;
	if (s == NULL)
		return 0;
	len = strlen(s);
	for (;;)
	{
		char	   *id = ident(s, len, &i);

		if (id == NULL || (i < len && s[i] != ',') || k >= HTTP_MAX_COLUMNS)
		{
			free(id);
			http_params_free_columns(v, k);
			snprintf(err, errlen, "columns wants a comma-separated list of column names (\"quoted\" when needed), "
					 "at most %d", HTTP_MAX_COLUMNS);
			return -1;
		}
		v = realloc(v, sizeof(char *) * (size_t) (k + 1));
		v[k++] = id;
		if (i >= len)
			break;
		i++;					/* the comma */
	}
	*names = v;
	*n = k;
	return 0;
}

char *
http_params_table(const HttpParams *p, char *err, size_t errlen)
{
	const char *s = p->table;
	size_t		len,
				i = 0;
	char	   *a,
			   *b = NULL,
			   *out;

	if (s == NULL || s[0] == '\0')
	{
		snprintf(err, errlen, "the table parameter is required (e.g. table=todos)");
		return NULL;
	}
	len = strlen(s);
	if ((a = ident(s, len, &i)) == NULL)
		goto bad;
	if (i < len && s[i] == '.')
	{
		i++;
		if ((b = ident(s, len, &i)) == NULL)
			goto bad;
	}
	/* a dot inside a quoted name could not be told from the schema's */
	if (i != len || strchr(a, '.') != NULL || (b != NULL && strchr(b, '.') != NULL))
		goto bad;
	out = malloc(strlen(a) + (b ? strlen(b) : 0) + 2);
	if (b != NULL)
		sprintf(out, "%s.%s", a, b);
	else
		strcpy(out, a);
	free(a);
	free(b);
	return out;
bad:
	free(a);
	free(b);
	snprintf(err, errlen, "table wants a table name, \"table\" or \"schema\".\"table\"");
	return NULL;
}
