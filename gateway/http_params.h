/*
 * gateway/http_params.h -- the query parameters of ferryd's HTTP API, parsed and checked.
 *
 * Every byte comes from the client: names and values are bounded, unknown
 * names are ignored, and each parse function fails with a message fit for a
 * 400 answer instead of trusting the input. No libwebsockets here, so the
 * fuzz target (test/fuzz/fuzz_http_params.c) drives it directly.
 */
#ifndef FERRY_HTTP_PARAMS_H
#define FERRY_HTTP_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_PARAM_BYTES (16 * 1024)	/* one parameter's value */
#define HTTP_MAX_WHERE_PARAMS 64	/* params[1] .. params[64] */
#define HTTP_MAX_COLUMNS 1600	/* columns=... entries (Postgres' maximum) */

typedef struct HttpParams
{
	char	   *table;			/* table=, or NULL */
	char	   *where;			/* where=, or NULL */
	char	   *columns;		/* columns=, or NULL */
	char	   *offset;			/* offset=, or NULL */
	char	   *handle;			/* handle=, or NULL */
	char	   *cursor;			/* cursor=, or NULL */
	char	   *replica;		/* replica=, or NULL */
	char	   *log;			/* log=, or NULL */
	char	   *since;			/* since= (/v1/sync), or NULL */
	char	   *limit;			/* limit= (/v1/sync), or NULL */
	int			live;			/* live=true */
	int			live_sse;		/* live_sse=true (or experimental_live_sse=true) */
	int			subset;			/* a subset__* parameter was given (not supported) */
	char	   *wparams[HTTP_MAX_WHERE_PARAMS];	/* params[n] values, [n-1]; NULL when absent */
	int			nwparams;		/* highest n given */
} HttpParams;

/* Clears p (all NULL). */
void		http_params_init(HttpParams *p);
void		http_params_free(HttpParams *p);

/*
 * http_params_add takes one decoded "name=value" argument (len bytes, may hold
 * anything). Unknown names are ignored. 0, or -1 with a message in err (a
 * repeated name, a value too long, a bad params[n] index, a NUL byte).
 */
int			http_params_add(HttpParams *p, const char *arg, size_t len, char *err, size_t errlen);

/*
 * http_params_where returns the WHERE clause with $1..$n replaced by the
 * params[n] values as SQL string literals (outside quotes and comments only),
 * malloc'd in *out (NULL when there is no WHERE). -1 with err when a $n has
 * no params[n] value.
 */
int			http_params_where(const HttpParams *p, char **out, char *err, size_t errlen);

/*
 * http_params_columns splits columns=a,"B",c into *names (malloc'd array of
 * malloc'd names; unquoted names folded to lower case, "" inside quotes a
 * quote). 0 with *n = 0 when absent; -1 with err when malformed.
 */
int			http_params_columns(const HttpParams *p, char ***names, int *n, char *err, size_t errlen);
void		http_params_free_columns(char **names, int n);

/* http_params_table: table= as "schema.table" or "table", quotes removed; malloc'd, or NULL with err. */
char	   *http_params_table(const HttpParams *p, char *err, size_t errlen);

#endif
