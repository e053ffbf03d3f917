/*
 * test/fuzz/fuzz_http_params.c -- libFuzzer target for the HTTP API's input parsers:
 * query parameters (gateway/http_params.c) and the stored-Change decoder the shape
 * endpoint reads log entries with (gateway/http_json.c).
 *
 * The input is split at '&' into arguments, as a query string is. Properties checked
 * beyond "no crash, no leak, no sanitizer report":
 *   - a refused argument comes with a message;
 *   - a WHERE clause without '$' comes back unchanged, and a refused one comes with a
 *     message;
 *   - every column name parsed is non-empty; a table name parsed is "name" or "schema.name";
 *   - a decoded Change has an op of 1-3 and at most HTTP_MAX_VALUES values.
 * A property violation aborts: that is the fuzzer's way to report it.
 *
 * Seeds: test/fuzz/corpus/fuzz_http_params/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_json.h"
#include "http_params.h"

static void
check(int cond, const char *what)
{
	if (!cond)
	{
		fprintf(stderr, "fuzz_http_params: property violated: %s\n", what);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	HttpParams	p;
	char		err[256];
	size_t		start = 0;
	static HttpChange c;

	http_params_init(&p);
	for (size_t i = 0; i <= size; i++)
	{
		if (i == size || data[i] == '&')
		{
			err[0] = '\0';
			if (http_params_add(&p, (const char *) data + start, i - start, err, sizeof(err)) != 0)
				check(err[0] != '\0', "a refused argument has a message");
			start = i + 1;
		}
	}
	{
		char	   *w = NULL;

		err[0] = '\0';
		if (http_params_where(&p, &w, err, sizeof(err)) == 0)
			check(w == NULL || strchr(p.where, '$') != NULL || strcmp(w, p.where) == 0,
				  "a WHERE without parameters is unchanged");
		else
			check(w == NULL && err[0] != '\0', "a refused WHERE has a message and no result");
		free(w);
	}
	{
		char	  **cols;
		int			n;

		if (http_params_columns(&p, &cols, &n, err, sizeof(err)) == 0)
		{
			for (int i = 0; i < n; i++)
				check(cols[i][0] != '\0', "column names are non-empty");
			http_params_free_columns(cols, n);
		}
	}
	{
		char	   *t = http_params_table(&p, err, sizeof(err));

		if (t != NULL)
		{
			check(t[0] != '\0' && t[strlen(t) - 1] != '.', "a table name is name or schema.name");
			free(t);
		}
	}
	http_params_free(&p);

	if (http_change_decode(data, size, &c) == 0)
		check(c.op >= 1 && c.op <= 3 && c.n >= 0 && c.n <= HTTP_MAX_VALUES, "a decoded Change is sane");
	return 0;
}
