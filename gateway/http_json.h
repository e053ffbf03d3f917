/*
 * gateway/http_json.h -- JSON output of ferryd's HTTP API: strings, change messages, the schema header.
 */
#ifndef FERRY_HTTP_JSON_H
#define FERRY_HTTP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "shape.h"
#include "wire.h"

#define HTTP_MAX_VALUES 1700	/* values in one Change (Postgres allows 1600 columns) */

/* A decoded ferry.v1.Change; values point into the payload it was decoded from. */
typedef struct HttpChange
{
	int			op;				/* WIRE_OP_* */
	int			n;				/* values */
	int64_t		version;		/* ferry_version */
	const char *values[HTTP_MAX_VALUES];	/* [n], not NUL-terminated */
	uint32_t	lens[HTTP_MAX_VALUES];	/* [n] */
	uint8_t		null[HTTP_MAX_VALUES];	/* [n] 1 when NULL */
} HttpChange;

/* Appends s (n bytes) as a JSON string, quotes included. */
void		http_json_str(Wbuf *b, const char *s, size_t n);
void		http_json_cstr(Wbuf *b, const char *s);

/* Decodes a Change (no commit-time prefix); 0, or -1 when malformed. */
int			http_change_decode(const uint8_t *p, size_t len, HttpChange *c);

/*
 * Appends one shape log entry (8-byte commit time + Change) of shape s on
 * table t as an Electric change message; 0, or -1 when the entry is malformed
 * (nothing useful appended: the caller skips it).
 */
int			http_json_change(Wbuf *b, const Shape *s, const CatTable *t, const uint8_t *payload, size_t len);

/* The electric-schema header's JSON for shape s (malloc'd). */
char	   *http_json_schema(const Shape *s, const CatTable *t);

#endif
