/*
 * test/client/fake_server.h -- feed libferry server frames without a server, for unit tests.
 *
 * Header only. Builds ServerMessages (proto/ferry.proto), packs them and hands the
 * bytes to fy_sync_handle_frame, the engine's own entry point for every frame it
 * receives, so the unit tests run the real handling code on a real SQLite file.
 *
 *     srv_welcome(db, 1, 1, "u1");                       // READY: shapes are "sent"
 *     srv_subscribed(db, 1, "public.todos", "h1", false, "id:integer:k,title:text");
 *     Chg rows[] = {{INS, 1, "1|one"}, {INS, 1, "2|two"}};
 *     srv_batch(db, 1, "0_1", rows, 2);
 *     srv_up_to_date(db, 1, "0_1");
 */
#ifndef FERRY_TEST_FAKE_SERVER_H
#define FERRY_TEST_FAKE_SERVER_H

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tap.h"

#define INS FERRY__V1__OP__INSERT
#define UPD FERRY__V1__OP__UPDATE
#define DEL FERRY__V1__OP__DELETE

/* One change: op, version, values joined by '|' ("\N" is NULL). */
typedef struct Chg
{
	int			op;
	int64_t		version;
	const char *values;
} Chg;

/* One mutation result. */
typedef struct Res
{
	const char *id;
	int			status;			/* FERRY__V1__MUTATION_STATUS__* */
	const char *error_code;
	const char *result_json;
	uint32_t	retry_after_ms;
} Res;

static inline int
srv_send(ferry *db, Ferry__V1__ServerMessage *m)
{
	size_t		n = ferry__v1__server_message__get_packed_size(m);
	uint8_t    *buf = malloc(n + 1);
	int			rc;

	ferry__v1__server_message__pack(m, buf);
	rc = fy_sync_handle_frame(db, buf, n);
	free(buf);
	return rc;
}

static inline int
srv_welcome(ferry *db, int64_t schema, int64_t min, const char *user)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__Welcome w = FERRY__V1__WELCOME__INIT;

	w.protocol_version = 1;
	w.schema_version = schema;
	w.min_schema_version = min;
	w.user_id = (char *) user;
	w.heartbeat_interval_ms = 15000;
	w.idle_timeout_ms = 45000;
	w.max_mutations_per_batch = 1000;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_WELCOME;
	m.welcome = &w;
	db->sync.conn = FY_CONN_HELLO;
	return srv_send(db, &m);
}

/* cols: "name:type[:k],..." */
static inline int
srv_subscribed(ferry *db, uint32_t id, const char *table, const char *handle, int resumed, const char *cols)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__Subscribed s = FERRY__V1__SUBSCRIBED__INIT;
	Ferry__V1__Column col[32];
	Ferry__V1__Column *cp[32];
	char	   *copy = strdup(cols);
	char	   *save = NULL;
	size_t		n = 0;
	int			rc;

	for (char *tok = strtok_r(copy, ",", &save); tok && n < 32; tok = strtok_r(NULL, ",", &save))
	{
		char	   *t = strchr(tok, ':');
		char	   *k;

		ferry__v1__column__init(&col[n]);
		*t++ = '\0';
		k = strchr(t, ':');
		if (k)
			*k++ = '\0';
		col[n].name = tok;
		col[n].type = t;
		col[n].key = k != NULL;
		cp[n] = &col[n];
		n++;
	}
	s.subscription_id = id;
	s.handle = (char *) handle;
	s.table = (char *) table;
	s.resumed = resumed;
	s.offset = (char *) (resumed ? "" : "-1");
	s.n_columns = n;
	s.columns = cp;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED;
	m.subscribed = &s;
	rc = srv_send(db, &m);
	free(copy);
	return rc;
}

static inline int
srv_batch_part(ferry *db, uint32_t id, const char *offset, const Chg *chg, int nchg, bool partial)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__ChangeBatch b = FERRY__V1__CHANGE_BATCH__INIT;
	Ferry__V1__Change ch[64];
	Ferry__V1__Change *cp[64];
	char	   *vals[64][32];
	uint32_t	nulls[64][32];
	char	   *copies[64];
	int			rc;

	for (int i = 0; i < nchg; i++)
	{
		char	   *save = NULL;
		size_t		nv = 0,
					nn = 0;

		ferry__v1__change__init(&ch[i]);
		copies[i] = strdup(chg[i].values);
		for (char *p = copies[i], *tok; (tok = strsep(&p, "|")) != NULL && nv < 32;)
		{
			if (strcmp(tok, "\\N") == 0)
			{
				nulls[i][nn++] = (uint32_t) nv;
				tok[0] = '\0';
			}
			vals[i][nv++] = tok;
		}
		(void) save;
		ch[i].op = chg[i].op;
		ch[i].version = chg[i].version;
		ch[i].n_values = nv;
		ch[i].values = vals[i];
		ch[i].n_nulls = nn;
		ch[i].nulls = nulls[i];
		cp[i] = &ch[i];
	}
	b.subscription_id = id;
	b.offset = (char *) offset;
	b.n_changes = (size_t) nchg;
	b.changes = cp;
	b.partial = partial;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_CHANGES;
	m.changes = &b;
	rc = srv_send(db, &m);
	for (int i = 0; i < nchg; i++)
		free(copies[i]);
	return rc;
}

/* One whole transaction's batch. */
static inline int
srv_batch(ferry *db, uint32_t id, const char *offset, const Chg *chg, int nchg)
{
	return srv_batch_part(db, id, offset, chg, nchg, false);
}

static inline int
srv_up_to_date(ferry *db, uint32_t id, const char *offset)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__UpToDate u = FERRY__V1__UP_TO_DATE__INIT;

	u.subscription_id = id;
	u.offset = (char *) offset;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE;
	m.up_to_date = &u;
	return srv_send(db, &m);
}

static inline int
srv_must_refetch(ferry *db, uint32_t id)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__MustRefetch r = FERRY__V1__MUST_REFETCH__INIT;

	r.subscription_id = id;
	r.reason = "test";
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_MUST_REFETCH;
	m.must_refetch = &r;
	return srv_send(db, &m);
}

static inline int
srv_results(ferry *db, const Res *res, int n)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__MutationResults rs = FERRY__V1__MUTATION_RESULTS__INIT;
	Ferry__V1__MutationResult r[64];
	Ferry__V1__MutationResult *rp[64];

	for (int i = 0; i < n; i++)
	{
		ferry__v1__mutation_result__init(&r[i]);
		r[i].id = (char *) res[i].id;
		r[i].status = res[i].status;
		r[i].error_code = (char *) (res[i].error_code ? res[i].error_code : "");
		r[i].result_json = (char *) (res[i].result_json ? res[i].result_json : "");
		r[i].retry_after_ms = res[i].retry_after_ms;
		rp[i] = &r[i];
	}
	rs.n_results = (size_t) n;
	rs.results = rp;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_MUTATION_RESULTS;
	m.mutation_results = &rs;
	return srv_send(db, &m);
}

/* ---- reading the file ----------------------------------------------------------------- */

/* The first column of the first row of sql as a malloc'd string ("" no row, "NULL" null). */
static inline char *
q1(ferry *db, const char *sql)
{
	sqlite3_stmt *st;
	char	   *out;

	if (sqlite3_prepare_v2(ferry_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK)
		return strdup(sqlite3_errmsg(ferry_sqlite(db)));
	if (sqlite3_step(st) != SQLITE_ROW)
		out = strdup("");
	else if (sqlite3_column_type(st, 0) == SQLITE_NULL)
		out = strdup("NULL");
	else
		out = strdup((const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out;
}

static inline long long
qint(ferry *db, const char *sql)
{
	char	   *v = q1(db, sql);
	long long	n = atoll(v);

	free(v);
	return n;
}

/* is_str on a query's first value; frees it. */
#define is_q(db, sql, want, ...) \
	do { \
		char *got_ = q1((db), (sql)); \
		is_str(got_, (want), __VA_ARGS__); \
		free(got_); \
	} while (0)

#endif
