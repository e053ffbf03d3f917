/*
 * test/gateway/ferryd_http_ws.c -- one shape registry, two transports: a WebSocket
 * subscriber and an HTTP reader (GET /v1/shape) of the same table with the same claims
 * read the same shape, with the same handle and the same offsets, and an offset from one
 * transport resumes on the other; another tenant's token never gets the shape.
 */
#include "ferryd_harness.h"

/* GET path with a bearer token; fills the named header's value and the body; returns the status. */
static int
http_get(int port, const char *path, const char *token, const char *header, char *value, size_t vcap,
		 char *body, size_t bcap)
{
	static char resp[1 << 20];
	int			status = http_request(port, path, token, resp, sizeof(resp));
	char	   *b = strstr(resp, "\r\n\r\n");

	if (value != NULL)
		value[0] = '\0';
	if (body != NULL)
		snprintf(body, bcap, "%s", b ? b + 4 : "");
	if (header != NULL && value != NULL && b != NULL)
	{
		size_t		hl = strlen(header);

		for (char *line = strstr(resp, "\r\n"); line != NULL && line < b; line = strstr(line + 2, "\r\n"))
			if (strncasecmp(line + 2, header, hl) == 0 && line[2 + hl] == ':')
			{
				char	   *v = line + 3 + hl;
				char	   *e = strstr(v, "\r\n");

				while (*v == ' ')
					v++;
				snprintf(value, vcap, "%.*s", (int) (e - v), v);
				break;
			}
	}
	return status;
}

static int
has_rows(Client *c, void *arg)
{
	return c->nrows >= *(int *) arg;
}

int
main(void)
{
	int			four = 3;
	PGconn	   *db = db_connect();
	Ferryd	   *d;
	Client	   *c;
	const char *A[] = {"ws-a"};
	const char *B[] = {"ws-b"};
	char	   *tok_a = make_token("u1", A, 1, NULL, 3600);
	char	   *tok_b = make_token("u2", B, 1, NULL, 3600);
	char		path[512];
	char		handle[128],
				offset[128],
				offset2[128],
				v[128];
	static char body[65536];

	db_exec(db, "DROP TABLE IF EXISTS hw_items");
	db_exec(db, "CREATE TABLE hw_items (id int PRIMARY KEY, ws text NOT NULL, title text)");
	db_exec(db, "SELECT ferry.enable_sync('hw_items', 'ws')");
	db_exec(db, "INSERT INTO hw_items VALUES (1, 'ws-a', 'one'), (2, 'ws-a', 'two'), (3, 'ws-b', 'three')");
	d = ferryd_start(NULL);

	c = client_open(d, "u1", A, 1, NULL);
	client_subscribe(c, 1, "hw_items", NULL, NULL, NULL);
	ok(client_sync(c, 10000) && c->nrows == 2, "WebSocket: the shape's 2 rows");

	is_int(http_get(d->port, "/v1/shape?table=hw_items&offset=-1", tok_a, "electric-handle", handle, sizeof(handle),
					body, sizeof(body)), 200, "HTTP: 200");
	is_str(handle, c->handle, "HTTP reads the very shape the WebSocket subscription has (same handle)");
	http_get(d->port, "/v1/shape?table=hw_items&offset=-1", tok_a, "electric-offset", offset, sizeof(offset), NULL, 0);
	is_str(offset, c->offset, "and ends at the same offset");
	ok(strstr(body, "\"one\"") != NULL && strstr(body, "\"two\"") != NULL && strstr(body, "three") == NULL,
	   "with the same rows, none of the other tenant");

	db_exec(db, "INSERT INTO hw_items VALUES (4, 'ws-a', 'four')");
	ok(client_wait(c, has_rows, &four, 5000), "WebSocket: the live insert");
	snprintf(path, sizeof(path), "/v1/shape?table=hw_items&offset=%s&handle=%s", offset, handle);
	is_int(http_get(d->port, path, tok_a, "electric-offset", offset2, sizeof(offset2), body, sizeof(body)), 200,
		   "HTTP: resuming from the snapshot's offset");
	ok(strstr(body, "\"four\"") != NULL && strstr(body, "\"one\"") == NULL, "gets just the new row");
	is_str(offset2, c->offset, "and the same offset the WebSocket subscriber got for it");

	/* an offset from HTTP resumes a WebSocket subscription */
	client_close(c);
	c = client_open(d, "u1", A, 1, NULL);
	client_subscribe(c, 2, "hw_items", NULL, handle, offset2);
	db_exec(db, "INSERT INTO hw_items VALUES (5, 'ws-a', 'five')");
	four = 1;
	ok(client_wait(c, has_rows, &four, 5000) && c->resumed && c->nrows == 1 && find_row(c, "5") >= 0,
	   "a WebSocket resume from HTTP's offset: resumed, and only the row written after it");

	/* another tenant never gets the shape */
	snprintf(path, sizeof(path), "/v1/shape?table=hw_items&offset=%s&handle=%s", offset2, handle);
	is_int(http_get(d->port, path, tok_b, "electric-handle", v, sizeof(v), body, sizeof(body)), 409,
		   "HTTP with another tenant's token and this handle: 409");
	ok(v[0] != '\0' && strcmp(v, handle) != 0, "naming that tenant's own shape");

	client_close(c);
	ferryd_stop(d, SIGTERM);
	ferryd_cleanup(d, db);
	free(tok_a);
	free(tok_b);
	PQfinish(db);
	return done_testing();
}
