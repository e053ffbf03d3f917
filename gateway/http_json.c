/*
 * gateway/http_json.c -- shape log entries as ElectricSQL's JSON messages, and the schema header.
 *
 * A shape log entry is an 8-byte commit time and a ferry.v1.Change (wire.c).
 * On the HTTP path it becomes one change message:
 *
 *   {"key":"\"public\".\"todos\"/\"1\"","value":{"id":"1","title":"x"},
 *    "headers":{"operation":"insert","relation":["public","todos"]}}
 *
 * values in Postgres text form (NULL as null), the key as Electric spells it:
 * the quoted relation, then each primary key value quoted, joined with "/".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_json.h"

void
http_json_str(Wbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	wbuf_reserve(b, n + 2);
	b->data[b->len++] = '"';
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
		{
			char		e[2] = {'\\', (char) c};

			wbuf_put(b, e, 2);
		}
		else if (c < 0x20)
		{
			char		e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

			wbuf_put(b, e, 6);
		}
		else
			wbuf_put(b, &s[i], 1);
	}
	wbuf_put(b, "\"", 1);
}

void
http_json_cstr(Wbuf *b, const char *s)
{
	http_json_str(b, s, strlen(s));
}

/* ----------------------------------------------------------------
 * Decoding a stored Change
 * ---------------------------------------------------------------- */

static int
varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7)
	{
		if (*p >= end)
			return -1;
		*v |= (uint64_t) (**p & 0x7f) << shift;
		if ((*(*p)++ & 0x80) == 0)
			return 0;
	}
	return -1;
}

int
http_change_decode(const uint8_t *p, size_t len, HttpChange *c)
{
	const uint8_t *end = p + len;

	memset(c, 0, sizeof(*c));
	while (p < end)
	{
		uint64_t	tag,
					v;

		if (varint(&p, end, &tag) != 0)
			return -1;
		switch (tag & 7)
		{
			case 0:
				if (varint(&p, end, &v) != 0)
					return -1;
				if ((tag >> 3) == 1)
					c->op = (int) v;
				else if ((tag >> 3) == 3 && v < HTTP_MAX_VALUES)
					c->null[v] = 1;
				else if ((tag >> 3) == 4)
					c->version = (int64_t) v;
				break;
			case 2:
				if (varint(&p, end, &v) != 0 || v > (uint64_t) (end - p))
					return -1;
				if ((tag >> 3) == 2)
				{
					if (c->n >= HTTP_MAX_VALUES)
						return -1;
					c->values[c->n] = (const char *) p;
					c->lens[c->n++] = (uint32_t) v;
				}
				else if ((tag >> 3) == 3)
				{
					const uint8_t *q = p,
							   *qend = p + v;

					while (q < qend)
					{
						uint64_t	k;

						if (varint(&q, qend, &k) != 0)
							return -1;
						if (k < HTTP_MAX_VALUES)
							c->null[k] = 1;
					}
				}
				p += v;
				break;
			case 1:
				if (end - p < 8)
					return -1;
				p += 8;
				break;
			case 5:
				if (end - p < 4)
					return -1;
				p += 4;
				break;
			default:
				return -1;
		}
	}
	return c->op >= 1 && c->op <= 3 ? 0 : -1;
}

/* ----------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------- */

/* "\"schema\".\"table\"" with the table's quotes doubled, for keys. */
static void
key_part(Wbuf *k, const char *s, size_t n)
{
	wbuf_put(k, "\"", 1);
	for (size_t i = 0; i < n; i++)
		wbuf_put(k, s[i] == '"' ? "\"\"" : &s[i], s[i] == '"' ? 2 : 1);
	wbuf_put(k, "\"", 1);
}

int
http_json_change(Wbuf *b, const Shape *s, const CatTable *t, const uint8_t *payload, size_t len)
{
	static const char *const ops[] = {"", "insert", "update", "delete"};
	static HttpChange c;		/* large: the service thread's only */
	Wbuf		key;
	int			del;

	if (len < 8 || http_change_decode(payload + 8, len - 8, &c) != 0)
		return -1;
	del = c.op == WIRE_OP_DELETE;
	if (del ? c.n != t->nkeys : c.n != s->ncols)
		return -1;

	wbuf_init(&key);
	key_part(&key, t->schema, strlen(t->schema));
	wbuf_put(&key, ".", 1);
	key_part(&key, t->name, strlen(t->name));
	for (int k = 0; k < t->nkeys; k++)
	{
		int			i = del ? k : s->keypos[k];

		wbuf_put(&key, "/", 1);
		key_part(&key, c.values[i], c.lens[i]);
	}
	wbuf_put(b, "{\"key\":", 7);
	http_json_str(b, (const char *) key.data, key.len);
	wbuf_free(&key);
	wbuf_put(b, ",\"value\":{", 10);
	for (int i = 0; i < c.n; i++)
	{
		const CatColumn *col = &t->cols[del ? t->keys[i] : s->cols[i]];

		if (i > 0)
			wbuf_put(b, ",", 1);
		http_json_cstr(b, col->name);
		wbuf_put(b, ":", 1);
		if (c.null[i])
			wbuf_put(b, "null", 4);
		else
			http_json_str(b, c.values[i], c.lens[i]);
	}
	wbuf_put(b, "},\"headers\":{\"operation\":\"", 26);
	wbuf_put(b, ops[c.op], strlen(ops[c.op]));
	wbuf_put(b, "\",\"relation\":[", 14);
	http_json_cstr(b, t->schema);
	wbuf_put(b, ",", 1);
	http_json_cstr(b, t->name);
	wbuf_put(b, "]}}", 3);
	return 0;
}

/* ----------------------------------------------------------------
 * The schema header
 * ---------------------------------------------------------------- */

/* Postgres' internal type names (pg_type.typname) of the built-in types, by OID. */
static const struct
{
	uint32_t	oid;
	const char *name;
	int			dims;
}			type_names[] = {
	{16, "bool", 0}, {17, "bytea", 0}, {18, "char", 0}, {19, "name", 0}, {20, "int8", 0},
	{21, "int2", 0}, {23, "int4", 0}, {25, "text", 0}, {26, "oid", 0}, {114, "json", 0},
	{700, "float4", 0}, {701, "float8", 0}, {1042, "bpchar", 0}, {1043, "varchar", 0},
	{1082, "date", 0}, {1083, "time", 0}, {1114, "timestamp", 0}, {1184, "timestamptz", 0},
	{1186, "interval", 0}, {1266, "timetz", 0}, {1700, "numeric", 0}, {2950, "uuid", 0},
	{3802, "jsonb", 0}, {869, "inet", 0}, {650, "cidr", 0},
	{1000, "bool", 1}, {1001, "bytea", 1}, {1005, "int2", 1}, {1007, "int4", 1}, {1009, "text", 1},
	{1014, "bpchar", 1}, {1015, "varchar", 1}, {1016, "int8", 1}, {1021, "float4", 1},
	{1022, "float8", 1}, {1115, "timestamp", 1}, {1182, "date", 1}, {1185, "timestamptz", 1},
	{1231, "numeric", 1}, {199, "json", 1}, {3807, "jsonb", 1}, {2951, "uuid", 1},
};

char *
http_json_schema(const Shape *s, const CatTable *t)
{
	Wbuf		b;

	wbuf_init(&b);
	wbuf_put(&b, "{", 1);
	for (int i = 0; i < s->ncols; i++)
	{
		const CatColumn *col = &t->cols[s->cols[i]];
		const char *name = NULL;
		int			dims = 0;
		char		tmp[64];

		for (size_t k = 0; k < sizeof(type_names) / sizeof(type_names[0]); k++)
			if (type_names[k].oid == col->type_oid)
			{
				name = type_names[k].name;
				dims = type_names[k].dims;
			}
		if (name == NULL)
		{
			/* another type: its format_type() name, one dimension per "[]" */
			size_t		n = strlen(col->type_name);

			while (n >= 2 && memcmp(col->type_name + n - 2, "[]", 2) == 0)
			{
				n -= 2;
				dims++;
			}
			snprintf(tmp, sizeof(tmp), "%.*s", (int) n, col->type_name);
			name = tmp;
		}
		if (i > 0)
			wbuf_put(&b, ",", 1);
		http_json_cstr(&b, col->name);
		wbuf_put(&b, ":{\"type\":", 9);
		http_json_cstr(&b, name);
		if (dims > 0)
		{
			snprintf(tmp, sizeof(tmp), ",\"dims\":%d", dims);
			wbuf_put(&b, tmp, strlen(tmp));
		}
		for (int k = 0; k < t->nkeys; k++)
			if (t->keys[k] == s->cols[i])
			{
				snprintf(tmp, sizeof(tmp), ",\"pk_index\":%d,\"not_null\":true", k);
				wbuf_put(&b, tmp, strlen(tmp));
			}
		wbuf_put(&b, "}", 1);
	}
	wbuf_put(&b, "}", 2);		/* with the NUL */
	return (char *) b.data;
}
