/*
 * test/gateway/ferryd_consistency.c -- no gap and no duplicate under load.
 *
 * A writer thread (its own libpq connection) hammers a synced table for the whole
 * test: single-row and multi-row transactions, inserts (new keys and resurrected
 * tombstones), updates moving rows in and out of WHERE clauses, deletes
 * (tombstones), undeletes, TOASTed values, savepoints, rolled-back transactions,
 * and big transactions of 5,000 rows (well past the 256 KiB partial-batch cut).
 * Meanwhile, round after round, new clients connect and subscribe (WHERE clauses,
 * column lists, one to three tenants, several sharing one shape definition), each
 * keeping a replica of every subscription from its ChangeBatches; some clients
 * disconnect and resume later from their handle and offset; once, mid-load,
 * ferryd is killed with SIGKILL and restarted, and every client resumes.
 *
 * Checked as the changes arrive: an INSERT of a key the replica holds, an UPDATE
 * or DELETE of a key it does not hold, an UPDATE that does not raise the row's
 * version, a ChangeBatch whose offset is not after the previous one, a partial
 * batch not followed by the rest of its transaction (or a transaction split
 * without `partial`), an UpToDate in the middle of a transaction, a resume
 * answered other than as documented, any MustRefetch or Error. At the end the
 * writer stops; small transactions of every tenant are committed around big ones of
 * a tenant nobody follows, and once ferryd has confirmed the last of them and the
 * clients went quiet, every replica must already equal its shape (nothing left
 * undelivered). Then a marker row per tenant is inserted, every subscription waits
 * for its markers, and each replica is compared with what Postgres says the shape
 * holds, row by row and value by value (text form), version included.
 *
 * Random, but reproducible in its choices: the seed is printed ("# seed N");
 * FERRY_SEED=N runs the same choices again (timing still varies).
 * FERRY_CONSISTENCY_ROUNDS sets the number of rounds (default 10);
 * FERRY_CONSISTENCY_ALL=1 prints every failure, not the first 10 of each kind.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>

#include "ferryd_harness.h"
#include "hmap.h"

#define ROUND_MS 1500			/* one round of load */
#define KILL_ROUND 5			/* ferryd is SIGKILLed at the end of this round */
#define BIG_ROWS 5000			/* rows of a big transaction */
#define BIG_EVERY_MS 1500		/* a big transaction this often */
#define BIG_BASE 1000000		/* big transactions' keys start here; small ones stay below */
#define MARKER_BASE 900000000	/* marker rows' keys */
#define MAX_CONNS 64
#define MAX_SUBS 3
#define MAX_COLS 32

/* ---- random numbers (splitmix64): one generator per thread ---------------------------- */

typedef struct Rng
{
	uint64_t	s;
} Rng;

static uint64_t
rng_next(Rng *r)
{
	uint64_t	z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int
rng_int(Rng *r, int n)
{
	return (int) (rng_next(r) % (uint64_t) n);
}

static int
chance(Rng *r, int percent)
{
	return rng_int(r, 100) < percent;
}

static const char *const TENANTS[3] = {"t1", "t2", "t3"};

/* ---- failures found while streaming ---------------------------------------------------- */

enum
{
	F_DUP,						/* INSERT of a present key; UPDATE not raising the version */
	F_GAP,						/* UPDATE/DELETE of an absent key */
	F_ORDER,					/* offset not after the previous batch's */
	F_TXN,						/* partial/UpToDate placement inside a transaction */
	F_PROTO,					/* unexpected Error, MustRefetch, refused resume, bad frame */
	F_NKINDS
};
static const char *const FAIL_NAMES[F_NKINDS] = {"duplicate", "gap", "order", "transaction", "protocol"};
static long fails[F_NKINDS];

static void __attribute__((format(printf, 2, 3)))
failure(int kind, const char *fmt, ...)
{
	va_list		ap;

	int			shown = getenv("FERRY_CONSISTENCY_ALL") ? 1000000 : 10;

	if (fails[kind]++ >= shown)
		return;
	fprintf(stderr, "# %s: ", FAIL_NAMES[kind]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (fails[kind] == shown)
		fprintf(stderr, "# (further %s failures are counted, not shown)\n", FAIL_NAMES[kind]);
}

/* ---- offsets ---------------------------------------------------------------------------- */

typedef struct Off
{
	uint64_t	lsn;
	uint32_t	op;
	int			start;			/* "-1" */
} Off;

static int
off_parse(const char *s, Off *o)
{
	char	   *e;

	memset(o, 0, sizeof(*o));
	if (strcmp(s, "-1") == 0)
	{
		o->start = 1;
		return 0;
	}
	o->lsn = strtoull(s, &e, 10);
	if (e == s || *e != '_')
		return -1;
	s = e + 1;
	o->op = (uint32_t) strtoul(s, &e, 10);
	return e == s || *e != '\0' ? -1 : 0;
}

static int
off_cmp(Off a, Off b)
{
	if (a.start || b.start)
		return a.start == b.start ? 0 : (a.start ? -1 : 1);
	if (a.lsn != b.lsn)
		return a.lsn < b.lsn ? -1 : 1;
	return a.op == b.op ? 0 : (a.op < b.op ? -1 : 1);
}

/* ---- the writer ------------------------------------------------------------------------ */

typedef struct Undo
{
	int			id;
	uint8_t		state;
} Undo;

typedef struct Writer
{
	PGconn	   *db;
	Rng			rng;
	int			stop;			/* set by the main thread (atomic) */
	uint8_t    *state;			/* [BIG_BASE] 0 absent, 1 live, 2 tombstone (as committed) */
	uint8_t    *tenant;			/* [BIG_BASE] tenant index of the key */
	int			next_id;		/* next fresh small key */
	Undo	   *undo;			/* the open transaction's changes to state */
	int			nundo,
				undo_cap;
	int64_t		next_big_ms;	/* when the next big transaction is due */
	int			big_phase;		/* 0: insert next, 1: update next, 2: delete next */
	int			big_lo;			/* first key of the current big batch */
	int			big_tenant;
	int			big_next_base;
	long		txn_rows;		/* rows written by the open transaction */
	/* results, read by the main thread after the join (commits and bigs also before: atomic) */
	long		commits,
				rollbacks,
				rows,
				bigs,
				big_rollbacks,
				savepoint_rollbacks;
	int			errors;
	char		err[1024];
} Writer;

static void
set_state(Writer *w, int id, uint8_t st)
{
	if (w->nundo == w->undo_cap)
	{
		w->undo_cap = w->undo_cap ? w->undo_cap * 2 : 256;
		w->undo = realloc(w->undo, sizeof(Undo) * w->undo_cap);
	}
	w->undo[w->nundo].id = id;
	w->undo[w->nundo].state = w->state[id];
	w->nundo++;
	w->state[id] = st;
}

static void
undo_to(Writer *w, int mark)
{
	while (w->nundo > mark)
	{
		w->nundo--;
		w->state[w->undo[w->nundo].id] = w->undo[w->nundo].state;
	}
}

/* Runs one statement; -1 (error recorded) on failure. Returns the affected row count. */
static long
w_exec(Writer *w, const char *sql, int n, const char *const *params)
{
	PGresult   *r = PQexecParams(w->db, sql, n, NULL, params, NULL, NULL, 0);
	long		rows = -1;

	if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK)
		rows = PQcmdTuples(r)[0] ? atol(PQcmdTuples(r)) : PQntuples(r);
	else
	{
		w->errors++;
		if (w->errors == 1)
			snprintf(w->err, sizeof(w->err), "%s: %s", sql, PQerrorMessage(w->db));
	}
	PQclear(r);
	return rows;
}

static void
rand_text(Rng *r, char *buf, int len)
{
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+";

	for (int i = 0; i < len; i++)
		buf[i] = alpha[rng_int(r, 64)];
	buf[len] = '\0';
}

/* A title: text with characters that need care in text and array forms; a third start with 'a'. */
static const char *
rand_title(Rng *r, char *buf)
{
	static const char *const pieces[] = {
		"x", "b", " ", "'", "\"", ",", "\\", "{", "}", "|", "\xc3\xa9", "\xe6\x97\xa5", "NULL", "a", "%", "_",
	};
	int			n = 1 + rng_int(r, 12);

	if (chance(r, 5))
		return NULL;
	strcpy(buf, chance(r, 40) ? "a" : "z");
	for (int i = 0; i < n; i++)
		strcat(buf, pieces[rng_int(r, (int) (sizeof(pieces) / sizeof(pieces[0])))]);
	return buf;
}

/* A text[] literal, with quoting, NULL elements, empty arrays; or NULL. */
static const char *
rand_tags(Rng *r, char *buf)
{
	static const char *const tags[] = {"red", "green", "blue", "two words", "q\"uote", "back\\slash", "c,omma",
	"{brace}", "", "NULL"};
	int			n = rng_int(r, 5);
	size_t		len = 0;

	if (chance(r, 10))
		return NULL;
	buf[len++] = '{';
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			buf[len++] = ',';
		if (chance(r, 8))
		{
			memcpy(buf + len, "NULL", 4);
			len += 4;
			continue;
		}
		buf[len++] = '"';
		for (const char *p = tags[rng_int(r, (int) (sizeof(tags) / sizeof(tags[0])))]; *p; p++)
		{
			if (*p == '"' || *p == '\\')
				buf[len++] = '\\';
			buf[len++] = *p;
		}
		buf[len++] = '"';
	}
	buf[len++] = '}';
	buf[len] = '\0';
	return buf;
}

/* A note: NULL, short, or (rarely) big and incompressible enough to be TOASTed out of line. */
static const char *
rand_note(Rng *r, char *buf)
{
	int			k = rng_int(r, 100);

	if (k < 30)
		return NULL;
	if (k < 97)
	{
		rand_text(r, buf, 1 + rng_int(r, 40));
		return buf;
	}
	rand_text(r, buf, 4000 + rng_int(r, 4000));
	return buf;
}

static int
pick(Writer *w, uint8_t want)
{
	for (int i = 0; i < 40; i++)
	{
		int			id = 1 + rng_int(&w->rng, w->next_id - 1);

		if (w->state[id] == want)
			return id;
	}
	return 0;
}

static int
op_insert(Writer *w)
{
	static const char *const statuses[] = {"open", "hold", "closed", NULL};
	static const char *const prios[] = {"1", "2", "3"};
	char		ids[16],
				cnt[16],
				title[256],
				tags[512],
				*note = malloc(8200);
	const char *p[9];
	int			id = chance(&w->rng, 25) ? pick(w, 2) : 0;
	long		n;

	if (id == 0)
	{
		if (w->next_id >= BIG_BASE - 1)
		{
			free(note);
			return 0;
		}
		id = w->next_id++;
		w->tenant[id] = (uint8_t) rng_int(&w->rng, 3);
	}
	snprintf(ids, sizeof(ids), "%d", id);
	snprintf(cnt, sizeof(cnt), "%d", rng_int(&w->rng, 1000));
	p[0] = ids;
	p[1] = TENANTS[w->tenant[id]];
	p[2] = rand_title(&w->rng, title);
	p[3] = rand_note(&w->rng, note);
	p[4] = cnt;
	p[5] = chance(&w->rng, 50) ? "t" : "f";
	p[6] = rand_tags(&w->rng, tags);
	p[7] = statuses[rng_int(&w->rng, 4)];
	p[8] = prios[rng_int(&w->rng, 3)];
	/* never a unique violation: a live key is left alone (the model may lag behind) */
	n = w_exec(w, "INSERT INTO cons_items (id, tenant, title, note, counter, done, tags, status, prio) "
			   "SELECT $1::int, $2, $3, $4, $5::int, $6::boolean, $7::text[], $8, $9::smallint "
			   "WHERE NOT EXISTS (SELECT 1 FROM cons_items WHERE id = $1::int AND ferry_deleted_at IS NULL)", 9, p);
	free(note);
	if (n < 0)
		return -1;
	if (n > 0)
		set_state(w, id, 1);
	w->txn_rows += n;
	return 0;
}

static int
op_update(Writer *w)
{
	int			id = pick(w, 1);
	char		ids[16],
				v[16],
				title[256],
				tags[512],
				*note;
	const char *p[4];
	long		n = 0;

	if (id == 0)
		return 0;
	snprintf(ids, sizeof(ids), "%d", id);
	p[0] = ids;
	switch (rng_int(&w->rng, 10))
	{
		case 8:
			{
				static const char *const statuses[] = {"open", "hold", "closed", NULL};

				/* in and out of the shapes indexed by status = 'open' */
				p[1] = statuses[rng_int(&w->rng, 4)];
				n = w_exec(w, "UPDATE cons_items SET status = $2 WHERE id = $1::int", 2, p);
			}
			break;
		case 9:
			snprintf(v, sizeof(v), "%d", 1 + rng_int(&w->rng, 3));
			p[1] = v;
			n = w_exec(w, "UPDATE cons_items SET prio = $2::smallint, done = NOT done WHERE id = $1::int", 2, p);
			break;
		case 0:
		case 1:
			snprintf(v, sizeof(v), "%d", rng_int(&w->rng, 1000));
			p[1] = v;
			n = w_exec(w, "UPDATE cons_items SET counter = $2::int WHERE id = $1::int", 2, p);
			break;
		case 2:
			n = w_exec(w, "UPDATE cons_items SET done = NOT done WHERE id = $1::int", 1, p);
			break;
		case 3:
			p[1] = rand_title(&w->rng, title);
			n = w_exec(w, "UPDATE cons_items SET title = $2 WHERE id = $1::int", 2, p);
			break;
		case 4:
			p[1] = rand_tags(&w->rng, tags);
			n = w_exec(w, "UPDATE cons_items SET tags = $2::text[] WHERE id = $1::int", 2, p);
			break;
		case 5:
			note = malloc(8200);
			p[1] = rand_note(&w->rng, note);
			n = w_exec(w, "UPDATE cons_items SET note = $2 WHERE id = $1::int", 2, p);
			free(note);
			break;
		case 6:
			/* nothing changes but the version (and an unchanged TOASTed note stays on disk) */
			n = w_exec(w, "UPDATE cons_items SET counter = counter WHERE id = $1::int", 1, p);
			break;
		default:
			snprintf(v, sizeof(v), "%d", rng_int(&w->rng, 1000));
			p[1] = v;
			p[2] = rand_title(&w->rng, title);
			p[3] = chance(&w->rng, 50) ? "t" : "f";
			n = w_exec(w, "UPDATE cons_items SET counter = $2::int, title = $3, done = $4::boolean "
					   "WHERE id = $1::int", 4, p);
			break;
	}
	if (n < 0)
		return -1;
	w->txn_rows += n;
	return 0;
}

static int
op_delete(Writer *w)
{
	int			id = pick(w, 1);
	char		ids[16];
	const char *p[1] = {ids};

	if (id == 0)
		return 0;
	snprintf(ids, sizeof(ids), "%d", id);
	if (w_exec(w, "DELETE FROM cons_items WHERE id = $1::int", 1, p) < 0)
		return -1;
	set_state(w, id, 2);
	w->txn_rows++;
	return 0;
}

static int
op_undelete(Writer *w)
{
	int			id = pick(w, 2);
	char		ids[16];
	const char *p[1] = {ids};
	long		n;

	if (id == 0)
		return 0;
	snprintf(ids, sizeof(ids), "%d", id);
	n = w_exec(w, "UPDATE cons_items SET ferry_deleted_at = NULL WHERE id = $1::int AND ferry_deleted_at IS NOT NULL",
			   1, p);
	if (n < 0)
		return -1;
	if (n > 0)
		set_state(w, id, 1);
	w->txn_rows += n;
	return 0;
}

/* A multi-row statement: a slice of one tenant's rows moves across the WHERE clauses. */
static int
op_many(Writer *w)
{
	char		t[4],
				k[16],
				r[16];
	const char *p[3] = {t, k, r};
	long		n;

	snprintf(t, sizeof(t), "t%d", 1 + rng_int(&w->rng, 3));
	snprintf(k, sizeof(k), "%d", 1 + rng_int(&w->rng, 999));
	snprintf(r, sizeof(r), "%d", rng_int(&w->rng, 29));
	if (chance(&w->rng, 35))
		n = w_exec(w, "UPDATE cons_items SET counter = (counter + $2::int) % 1000, done = NOT done "
				   "WHERE tenant = $1 AND id % 29 = $3::int AND id < 1000000 AND ferry_deleted_at IS NULL", 3, p);
	else if (chance(&w->rng, 55))
		n = w_exec(w, "UPDATE cons_items SET status = CASE status WHEN 'open' THEN 'hold' WHEN 'hold' THEN 'closed' "
				   "WHEN 'closed' THEN NULL ELSE 'open' END, prio = 1 + (prio + $2::int) % 3 "
				   "WHERE tenant = $1 AND id % 29 = $3::int AND id < 1000000 AND ferry_deleted_at IS NULL", 3, p);
	else
	{
		PGresult   *res;

		/* deletes of several rows, keeping the model in step */
		res = PQexecParams(w->db, "SELECT id FROM cons_items WHERE tenant = $1 AND id % 97 = $2::int % 97 "
						   "AND id < 1000000 AND ferry_deleted_at IS NULL", 2, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (w->errors++ == 0)
				snprintf(w->err, sizeof(w->err), "selecting rows to delete: %s", PQerrorMessage(w->db));
			PQclear(res);
			return -1;
		}
		for (int i = 0; i < PQntuples(res); i++)
			set_state(w, atoi(PQgetvalue(res, i, 0)), 2);
		n = PQntuples(res);
		PQclear(res);
		if (w_exec(w, "DELETE FROM cons_items WHERE tenant = $1 AND id % 97 = $2::int % 97 AND id < 1000000",
				   2, p) < 0)
			return -1;
	}
	if (n < 0)
		return -1;
	w->txn_rows += n;
	return 0;
}

static int
op_random(Writer *w)
{
	int			k = rng_int(&w->rng, 100);

	if (k < 35)
		return op_insert(w);
	if (k < 75)
		return op_update(w);
	if (k < 88)
		return op_delete(w);
	if (k < 95)
		return op_undelete(w);
	return op_many(w);
}

/* Ends the open transaction: COMMIT (keeping the model) or ROLLBACK (undoing it). */
static void
w_end(Writer *w, int commit)
{
	if (commit && w_exec(w, "COMMIT", 0, NULL) >= 0 && PQtransactionStatus(w->db) == PQTRANS_IDLE)
	{
		__atomic_add_fetch(&w->commits, 1, __ATOMIC_RELAXED);
		w->rows += w->txn_rows;
	}
	else
	{
		if (PQtransactionStatus(w->db) != PQTRANS_IDLE)
			w_exec(w, "ROLLBACK", 0, NULL);
		w->rollbacks++;
		undo_to(w, 0);
	}
	w->nundo = 0;
	w->txn_rows = 0;
}

/* The big transactions: 5,000 rows of one tenant inserted, then updated twice, then deleted. */
static void
big_txn(Writer *w)
{
	char		lo[16],
				hi[16],
				t[4];
	const char *p[3] = {lo, hi, t};
	int			rollback = chance(&w->rng, 15);
	int			ok = 1;

	w_exec(w, "BEGIN", 0, NULL);
	if (w->big_phase == 0)
	{
		w->big_lo = w->big_next_base;
		w->big_tenant = rng_int(&w->rng, 3);
	}
	snprintf(lo, sizeof(lo), "%d", w->big_lo);
	snprintf(hi, sizeof(hi), "%d", w->big_lo + BIG_ROWS - 1);
	snprintf(t, sizeof(t), "%s", TENANTS[w->big_tenant]);
	switch (w->big_phase)
	{
		case 0:
			ok = w_exec(w, "INSERT INTO cons_items (id, tenant, title, note, counter, done, tags) "
						"SELECT g, $3, CASE WHEN g % 3 = 0 THEN 'big ' ELSE 'a big ' END || g, "
						"repeat(md5(g::text), 1 + g % 4), g % 1000, g % 5 = 0, ARRAY['big', g::text, NULL] "
						"FROM generate_series($1::int, $2::int) g", 3, p) == BIG_ROWS;
			break;
		case 1:
			/* every row twice in one transaction: in and out of the WHERE clauses */
			ok = w_exec(w, "UPDATE cons_items SET counter = (counter + 337) % 1000, done = NOT done, "
						"status = CASE WHEN status = 'open' THEN 'hold' ELSE 'open' END, prio = 1 + prio % 3 "
						"WHERE id BETWEEN $1::int AND $2::int", 2, p) == BIG_ROWS &&
				w_exec(w, "UPDATE cons_items SET title = CASE WHEN id % 2 = 0 THEN 'a' ELSE 'z' END || "
					   "coalesce(title, ''), tags = tags || 'again'::text WHERE id BETWEEN $1::int AND $2::int",
					   2, p) == BIG_ROWS;
			break;
		default:
			ok = w_exec(w, "DELETE FROM cons_items WHERE id BETWEEN $1::int AND $2::int", 2, p) >= 0;
			break;
	}
	if (!ok || rollback)
	{
		w_exec(w, "ROLLBACK", 0, NULL);
		w->big_rollbacks++;
		w->rollbacks++;
		if (!ok && w->errors == 0)
		{
			w->errors++;
			snprintf(w->err, sizeof(w->err), "big transaction (phase %d) wrote an unexpected row count",
					 w->big_phase);
		}
		return;
	}
	if (w_exec(w, "COMMIT", 0, NULL) < 0)
		return;
	__atomic_add_fetch(&w->commits, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->bigs, 1, __ATOMIC_RELAXED);
	w->rows += w->big_phase == 1 ? 2 * BIG_ROWS : BIG_ROWS;
	if (w->big_phase == 2)
		w->big_next_base += BIG_ROWS;
	w->big_phase = (w->big_phase + 1) % 3;
}

static void *
writer_main(void *arg)
{
	Writer	   *w = arg;

	w->next_big_ms = ws_now_ms() + 400;
	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED))
	{
		int			k = rng_int(&w->rng, 100);

		if (ws_now_ms() >= w->next_big_ms)
		{
			big_txn(w);
			w->next_big_ms = ws_now_ms() + BIG_EVERY_MS;
			continue;
		}
		if (k < 55)
		{
			/* one change (or one multi-row statement) in its own transaction */
			w_exec(w, "BEGIN", 0, NULL);
			w_end(w, op_random(w) == 0);
		}
		else if (k < 85)
		{
			int			n = 2 + rng_int(&w->rng, 30);
			int			good = 1;

			w_exec(w, "BEGIN", 0, NULL);
			for (int i = 0; i < n && good; i++)
				good = op_random(w) == 0;
			w_end(w, good);
		}
		else if (k < 93)
		{
			int			n = 1 + rng_int(&w->rng, 20);

			/* rolled back: none of it may ever reach a client */
			w_exec(w, "BEGIN", 0, NULL);
			for (int i = 0; i < n; i++)
				if (op_random(w) != 0)
					break;
			w_end(w, 0);
		}
		else
		{
			int			mark;
			int			good;

			/* a savepoint rolled back in the middle of a committed transaction */
			w_exec(w, "BEGIN", 0, NULL);
			good = op_random(w) == 0;
			w_exec(w, "SAVEPOINT s1", 0, NULL);
			mark = w->nundo;
			{
				long		rows_before = w->txn_rows;

				for (int i = 0; i < 5 && good; i++)
					good = op_random(w) == 0;
				w_exec(w, "ROLLBACK TO SAVEPOINT s1", 0, NULL);
				undo_to(w, mark);
				w->txn_rows = rows_before;
				w->savepoint_rollbacks++;
			}
			good = good && op_random(w) == 0;
			w_end(w, good);
		}
		usleep((useconds_t) (500 + rng_int(&w->rng, 2500)));
	}
	return NULL;
}

/* ---- clients and their replicas --------------------------------------------------------- */

/* What a subscription asks for: a WHERE clause and a column list. */
typedef struct Combo
{
	const char *where;
	const char *cols[4];
	int			ncols;
} Combo;

/*
 * Every WHERE admits the marker rows (done false, counter 0, title 'a-marker', status
 * 'open', prio 2). Top-level `column = constant` terms (NOT done, status = 'open', prio =
 * 2) put a shape in ferryd's routing index by value; the others are routed by tenant.
 */
static const Combo COMBOS[] = {
	{NULL, {NULL}, 0},
	{"NOT done", {NULL}, 0},
	{"counter < 500", {"title", "counter"}, 2},
	{"title LIKE 'a%' OR counter >= 900", {NULL}, 0},
	{NULL, {"done", "tags", "note"}, 3},
	{"done = false AND counter < 700 AND title IS NOT NULL", {"tags", "title"}, 2},
	{"done = false AND counter < 700 AND title IS NOT NULL", {"title", "tags"}, 2},	/* the same shape */
	{"status = 'open'", {NULL}, 0},
	{"prio = 2 AND status = 'open'", {"status", "prio", "counter"}, 3},
	{"'open' = status AND NOT done AND prio <> 3", {"title", "status"}, 2},
};
#define NCOMBOS ((int) (sizeof(COMBOS) / sizeof(COMBOS[0])))

/* Tenant sets a client's token may carry. */
static const int TSETS[][4] = {{1, 0}, {1, 1}, {1, 2}, {2, 0, 1}, {3, 0, 1, 2}, {2, 1, 2}};
#define NTSETS ((int) (sizeof(TSETS) / sizeof(TSETS[0])))

typedef struct RRow
{
	char	   *values;			/* the row's values joined by '|' (NULL as \N) */
	int64_t		version;
} RRow;

typedef struct Sub
{
	uint32_t	id;				/* subscription id (1..) */
	int			combo;			/* what it asks for */
	char		handle[64];		/* from Subscribed */
	char		offset[64];		/* resume point: last batch or UpToDate offset */
	Off			last;			/* offset of the last batch */
	int			has_last;
	Off			resumed_from;	/* the offset of the last resume, until a batch follows it */
	int			check_resume;
	int			last_partial;	/* the last batch was partial */
	int			awaiting;		/* Subscribe sent, Subscribed not yet received */
	int64_t		retry_at_ms;	/* RATE_LIMITED: subscribe again then (0: not waiting) */
	int			resume_asked;	/* the Subscribe carried handle and offset */
	int			subscribed;		/* Subscribed received */
	int			ncols;			/* columns, as Subscribed gave them */
	char	   *cols[MAX_COLS];
	int			iskey[MAX_COLS];
	int			keycols[MAX_COLS];
	int			nkeys;
	Hmap		rows;			/* key -> RRow */
	long		changes,		/* received */
				batches,
				partials,
				up_to_dates,
				resumes;
} Sub;

typedef struct Conn
{
	int			no;				/* for messages */
	char		user[32];
	int			tset;			/* index into TSETS */
	Client	   *c;				/* NULL while disconnected */
	int			parked;			/* disconnected, to resume later */
	int			nsubs;
	Sub			subs[MAX_SUBS];
	int64_t		last_hb_ms;
} Conn;

static Conn conns[MAX_CONNS];
static int nconns;
static Ferryd *d;
static int	ferryd_up;			/* d->pid is a running ferryd */
static Rng rng;					/* the main thread's */
static int64_t last_rx_ms;		/* when the last batch or UpToDate arrived */
static long total_rate_limited;
static long total_changes,
			total_batches,
			total_partials,
			total_resumes,
			total_disconnects;

static void
sub_desc(const Conn *k, const Sub *s, char *buf, size_t cap)
{
	const Combo *cb = &COMBOS[s->combo];
	char		tenants[32] = "";

	for (int i = 0; i < TSETS[k->tset][0]; i++)
	{
		strcat(tenants, i ? "," : "");
		strcat(tenants, TENANTS[TSETS[k->tset][1 + i]]);
	}
	snprintf(buf, cap, "conn %d (%s) sub %u [tenants %s; where %s; %d columns] handle %s", k->no, k->user, s->id,
			 tenants, cb->where ? cb->where : "-", cb->ncols, s->handle[0] ? s->handle : "?");
}

static void
replica_clear(Sub *s)
{
	for (long i = hmap_next(&s->rows, 0); i >= 0; i = hmap_next(&s->rows, i + 1))
	{
		RRow	   *r = s->rows.slots[i].value;

		free(r->values);
		free(r);
	}
	hmap_destroy(&s->rows);
	hmap_init(&s->rows);
	s->has_last = 0;
	s->last_partial = 0;
	snprintf(s->offset, sizeof(s->offset), "-1");
}

static void
send_subscribe(Conn *k, Sub *s, const char *handle, const char *offset)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Subscribe sb = FERRY__V1__SUBSCRIBE__INIT;
	const Combo *cb = &COMBOS[s->combo];

	sb.subscription_id = s->id;
	sb.table = "public.cons_items";
	sb.where = (char *) (cb->where ? cb->where : "");
	sb.n_columns = (size_t) cb->ncols;
	sb.columns = (char **) cb->cols;
	sb.handle = (char *) (handle ? handle : "");
	sb.offset = (char *) (offset ? offset : "");
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE;
	m.subscribe = &sb;
	s->awaiting = 1;
	s->resume_asked = handle != NULL;
	client_send(k->c, &m);
}

/* Subscribes again: from handle and offset when there is something to resume, else from scratch. */
static void
sub_start(Conn *k, Sub *s)
{
	if (s->handle[0] != '\0' && s->offset[0] != '\0' && strcmp(s->offset, "-1") != 0)
	{
		send_subscribe(k, s, s->handle, s->offset);
		s->check_resume = off_parse(s->offset, &s->resumed_from) == 0;
		s->resumes++;
		total_resumes++;
	}
	else
	{
		replica_clear(s);
		send_subscribe(k, s, NULL, NULL);
	}
}

static void
conn_connect(Conn *k)
{
	const char *tenants[3];

	for (int i = 0; i < TSETS[k->tset][0]; i++)
		tenants[i] = TENANTS[TSETS[k->tset][1 + i]];
	k->c = client_open(d, k->user, tenants, (size_t) TSETS[k->tset][0], NULL);
	k->parked = 0;
	k->last_hb_ms = ws_now_ms();
	for (int i = 0; i < k->nsubs; i++)
		sub_start(k, &k->subs[i]);
}

static int
pair_used(int tset, int combo)
{
	for (int i = 0; i < nconns; i++)
		for (int j = 0; j < conns[i].nsubs; j++)
			if (conns[i].tset == tset && conns[i].subs[j].combo == combo)
				return 1;
	return 0;
}

static Conn *
conn_new(int clone_of)
{
	Conn	   *k = &conns[nconns];

	memset(k, 0, sizeof(*k));
	k->no = nconns++;
	snprintf(k->user, sizeof(k->user), "user%d", k->no);
	if (clone_of >= 0)
	{
		/* the same definitions as another client: they share its shapes */
		k->tset = conns[clone_of].tset;
		k->nsubs = conns[clone_of].nsubs;
		for (int i = 0; i < k->nsubs; i++)
			k->subs[i].combo = conns[clone_of].subs[i].combo;
	}
	else if (clone_of == -2)
	{
		/* a definition no client used yet, if any is left: a new shape, a new snapshot */
		int			start = rng_int(&rng, NTSETS * NCOMBOS);

		k->nsubs = 1;
		k->tset = rng_int(&rng, NTSETS);
		k->subs[0].combo = rng_int(&rng, NCOMBOS);
		for (int n = 0; n < NTSETS * NCOMBOS; n++)
		{
			int			p = (start + n) % (NTSETS * NCOMBOS);

			if (!pair_used(p / NCOMBOS, p % NCOMBOS))
			{
				k->tset = p / NCOMBOS;
				k->subs[0].combo = p % NCOMBOS;
				break;
			}
		}
	}
	else
	{
		k->tset = rng_int(&rng, NTSETS);
		k->nsubs = 1 + rng_int(&rng, MAX_SUBS);
		for (int i = 0; i < k->nsubs; i++)
			k->subs[i].combo = rng_int(&rng, NCOMBOS);
	}
	for (int i = 0; i < k->nsubs; i++)
	{
		k->subs[i].id = (uint32_t) i + 1;
		hmap_init(&k->subs[i].rows);
		snprintf(k->subs[i].offset, sizeof(k->subs[i].offset), "-1");
	}
	conn_connect(k);
	return k;
}

static void
conn_drop(Conn *k)
{
	client_close(k->c);
	k->c = NULL;
	k->parked = 1;
	/* a Subscribe not answered yet: the next connection sends it again, from the same offset */
	for (int i = 0; i < k->nsubs; i++)
	{
		k->subs[i].awaiting = 0;
		k->subs[i].retry_at_ms = 0;
	}
}

static char *
key_of(Sub *s, Ferry__V1__Change *ch, int is_delete)
{
	int			pos[MAX_COLS];

	for (int i = 0; i < s->nkeys; i++)
		pos[i] = is_delete ? i : s->keycols[i];
	return join_values(ch, pos, s->nkeys);
}

static void
apply(Conn *k, Sub *s, Ferry__V1__Change *ch, const char *offset)
{
	char		desc[512];
	int			is_delete = ch->op == FERRY__V1__OP__DELETE;
	size_t		want = is_delete ? (size_t) s->nkeys : (size_t) s->ncols;
	char	   *key;
	RRow	   *r;

	s->changes++;
	total_changes++;
	if (ch->n_values != want)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_PROTO, "%s: a change with %zu values, %zu expected (batch %s)", desc, ch->n_values, want, offset);
		return;
	}
	key = key_of(s, ch, is_delete);
	r = hmap_get(&s->rows, key, strlen(key));
	switch (ch->op)
	{
		case FERRY__V1__OP__INSERT:
			if (r != NULL)
			{
				sub_desc(k, s, desc, sizeof(desc));
				failure(F_DUP, "%s: INSERT of key %s already in the replica (version %" PRId64 ", new %" PRId64
						"; batch %s)", desc, key, r->version, ch->version, offset);
				free(r->values);
			}
			else
			{
				r = calloc(1, sizeof(RRow));
				hmap_put(&s->rows, key, strlen(key), r);
			}
			r->values = join_values(ch, NULL, 0);
			r->version = ch->version;
			break;
		case FERRY__V1__OP__UPDATE:
			if (r == NULL)
			{
				sub_desc(k, s, desc, sizeof(desc));
				failure(F_GAP, "%s: UPDATE of key %s not in the replica (version %" PRId64 "; batch %s)", desc, key,
						ch->version, offset);
				r = calloc(1, sizeof(RRow));
				hmap_put(&s->rows, key, strlen(key), r);
			}
			else
			{
				if (ch->version <= r->version)
				{
					sub_desc(k, s, desc, sizeof(desc));
					failure(F_DUP, "%s: UPDATE of key %s to version %" PRId64 ", the replica has %" PRId64
							" (batch %s)", desc, key, ch->version, r->version, offset);
				}
				free(r->values);
			}
			r->values = join_values(ch, NULL, 0);
			r->version = ch->version;
			break;
		case FERRY__V1__OP__DELETE:
			if (r == NULL)
			{
				sub_desc(k, s, desc, sizeof(desc));
				failure(F_GAP, "%s: DELETE of key %s not in the replica (batch %s)", desc, key, offset);
			}
			else
			{
				hmap_del(&s->rows, key, strlen(key));
				free(r->values);
				free(r);
			}
			break;
		default:
			sub_desc(k, s, desc, sizeof(desc));
			failure(F_PROTO, "%s: a change with op %d", desc, (int) ch->op);
	}
	free(key);
}

static Sub *
find_sub_of(Conn *k, uint32_t id)
{
	for (int i = 0; i < k->nsubs; i++)
		if (k->subs[i].id == id)
			return &k->subs[i];
	return NULL;
}

static void
on_subscribed(Conn *k, Sub *s, Ferry__V1__Subscribed *m)
{
	char		desc[512];

	if (s->subscribed && s->ncols > 0 && (int) m->n_columns != s->ncols)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_PROTO, "%s: Subscribed with %zu columns, %d before", desc, m->n_columns, s->ncols);
	}
	for (int i = 0; i < s->ncols; i++)
		free(s->cols[i]);
	s->ncols = 0;
	s->nkeys = 0;
	for (size_t i = 0; i < m->n_columns && i < MAX_COLS; i++)
	{
		s->cols[s->ncols] = strdup(m->columns[i]->name);
		s->iskey[s->ncols] = m->columns[i]->key;
		if (m->columns[i]->key)
			s->keycols[s->nkeys++] = s->ncols;
		s->ncols++;
	}
	if (s->resume_asked)
	{
		if (!m->resumed || strcmp(m->handle, s->handle) != 0)
		{
			/* docs/protocol.md: a resume the server cannot serve answers MustRefetch */
			sub_desc(k, s, desc, sizeof(desc));
			failure(F_PROTO, "%s: resume from %s answered Subscribed{resumed=%d, handle %s, offset %s} instead of "
					"resuming or MustRefetch", desc, s->offset, (int) m->resumed, m->handle, m->offset);
			replica_clear(s);
		}
		else if (strcmp(m->offset, s->offset) != 0)
		{
			sub_desc(k, s, desc, sizeof(desc));
			failure(F_PROTO, "%s: resumed at offset %s, asked %s", desc, m->offset, s->offset);
		}
	}
	else if (m->resumed)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_PROTO, "%s: a fresh Subscribe answered resumed", desc);
	}
	snprintf(s->handle, sizeof(s->handle), "%s", m->handle);
	s->awaiting = 0;
	s->subscribed = 1;
}

static void
on_batch(Conn *k, Sub *s, Ferry__V1__ChangeBatch *b)
{
	char		desc[512];
	Off			o;

	if (s->awaiting)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_PROTO, "%s: a ChangeBatch before Subscribed", desc);
	}
	if (off_parse(b->offset, &o) != 0 || o.start)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_PROTO, "%s: a ChangeBatch with offset \"%s\"", desc, b->offset);
		return;
	}
	if (s->has_last && off_cmp(o, s->last) <= 0)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_ORDER, "%s: batch offset %s is not after the previous %" PRIu64 "_%u (%zu changes)", desc,
				b->offset, s->last.lsn, s->last.op, b->n_changes);
	}
	else if (s->check_resume && off_cmp(o, s->resumed_from) <= 0)
	{
		/* the first batch after a resume follows the offset resumed from */
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_ORDER, "%s: batch offset %s is not after the resume offset %" PRIu64 "_%u", desc, b->offset,
				s->resumed_from.lsn, s->resumed_from.op);
	}
	s->check_resume = 0;
	if (s->has_last && s->last_partial && o.lsn != s->last.lsn)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_TXN, "%s: a partial batch (%" PRIu64 "_%u) was followed by another transaction's batch %s", desc,
				s->last.lsn, s->last.op, b->offset);
	}
	if (s->has_last && !s->last_partial && o.lsn != 0 && o.lsn == s->last.lsn)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_TXN, "%s: transaction %" PRIu64 " split across batches without partial (%" PRIu64 "_%u, then %s)",
				desc, o.lsn, s->last.lsn, s->last.op, b->offset);
	}
	for (size_t i = 0; i < b->n_changes; i++)
		apply(k, s, b->changes[i], b->offset);
	s->last = o;
	s->has_last = 1;
	s->last_partial = b->partial;
	snprintf(s->offset, sizeof(s->offset), "%s", b->offset);
	s->batches++;
	total_batches++;
	if (b->partial)
	{
		s->partials++;
		total_partials++;
	}
}

static void
on_up_to_date(Conn *k, Sub *s, Ferry__V1__UpToDate *u)
{
	char		desc[512];
	Off			o;

	if (s->last_partial)
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_TXN, "%s: UpToDate (%s) after a partial batch, in the middle of a transaction", desc, u->offset);
	}
	if (off_parse(u->offset, &o) != 0 || (s->has_last && off_cmp(o, s->last) < 0))
	{
		sub_desc(k, s, desc, sizeof(desc));
		failure(F_ORDER, "%s: UpToDate offset %s before the last batch %s", desc, u->offset, s->offset);
		return;
	}
	snprintf(s->offset, sizeof(s->offset), "%s", u->offset);
	s->up_to_dates++;
}

static void
handle(Conn *k, Ferry__V1__ServerMessage *m)
{
	char		desc[512];
	Sub		   *s;

	switch (m->msg_case)
	{
		case FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED:
			if ((s = find_sub_of(k, m->subscribed->subscription_id)) != NULL)
				on_subscribed(k, s, m->subscribed);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_CHANGES:
			last_rx_ms = ws_now_ms();
			if ((s = find_sub_of(k, m->changes->subscription_id)) != NULL)
				on_batch(k, s, m->changes);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE:
			last_rx_ms = ws_now_ms();
			if ((s = find_sub_of(k, m->up_to_date->subscription_id)) != NULL)
				on_up_to_date(k, s, m->up_to_date);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_MUST_REFETCH:
			if ((s = find_sub_of(k, m->must_refetch->subscription_id)) != NULL)
			{
				sub_desc(k, s, desc, sizeof(desc));
				failure(F_PROTO, "%s: MustRefetch (%s)", desc, m->must_refetch->reason);
				replica_clear(s);
				s->handle[0] = '\0';
				send_subscribe(k, s, NULL, NULL);
			}
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_ERROR:
			if (m->error->code == FERRY__V1__ERROR_CODE__RATE_LIMITED && !m->error->fatal &&
				(s = find_sub_of(k, m->error->subscription_id)) != NULL && s->awaiting)
			{
				/* the per-user pull bucket: the documented answer is to try again later */
				s->awaiting = 0;
				s->retry_at_ms = ws_now_ms() + (m->error->retry_after_ms ? m->error->retry_after_ms : 100);
				total_rate_limited++;
				break;
			}
			failure(F_PROTO, "conn %d: Error %d (%s) for subscription %u%s", k->no, (int) m->error->code,
					m->error->message, m->error->subscription_id, m->error->fatal ? ", fatal" : "");
			break;
		default:
			break;
	}
}

/* Reads what arrived on every connection for ms milliseconds, applying it. */
static void
pump(int ms)
{
	int64_t		deadline = ws_now_ms() + ms;

	do
	{
		struct pollfd pfd[MAX_CONNS];
		Conn	   *who[MAX_CONNS];
		int			n = 0;
		int64_t		left = deadline - ws_now_ms();

		for (int i = 0; i < nconns; i++)
			if (conns[i].c != NULL)
			{
				pfd[n].fd = conns[i].c->ws->fd;
				pfd[n].events = POLLIN;
				pfd[n].revents = 0;
				who[n++] = &conns[i];
			}
		if (poll(pfd, (nfds_t) n, (int) (left < 0 ? 0 : left > 20 ? 20 : left)) < 0)
			continue;
		for (int i = 0; i < n; i++)
		{
			Conn	   *k = who[i];
			Ferry__V1__ServerMessage *m;

			if (pfd[i].revents != 0)
				ws_fill(k->c->ws, 0);
			while ((m = client_recv(k->c, 0)) != NULL)
			{
				handle(k, m);
				frame_free_server(m);
			}
			if (k->c->ws->closed)
			{
				failure(F_PROTO, "conn %d: the server closed the connection (code %d, %s)", k->no,
						k->c->ws->close_code, k->c->ws->close_reason);
				conn_drop(k);
				continue;
			}
			for (int j = 0; j < k->nsubs; j++)
				if (k->subs[j].retry_at_ms != 0 && ws_now_ms() >= k->subs[j].retry_at_ms)
				{
					k->subs[j].retry_at_ms = 0;
					sub_start(k, &k->subs[j]);
				}
			if (ws_now_ms() - k->last_hb_ms > 10000)
			{
				Ferry__V1__ClientMessage cm = FERRY__V1__CLIENT_MESSAGE__INIT;
				Ferry__V1__Heartbeat hb = FERRY__V1__HEARTBEAT__INIT;

				hb.sent_at_ms = (uint64_t) time(NULL) * 1000;
				cm.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HEARTBEAT;
				cm.heartbeat = &hb;
				client_send(k->c, &cm);
				k->last_hb_ms = ws_now_ms();
			}
		}
	} while (ws_now_ms() < deadline);
}

/* After ferryd died: everything it sent before dying is read, then every connection is parked. */
static void
drain_dead(void)
{
	for (int i = 0; i < nconns; i++)
	{
		Conn	   *k = &conns[i];
		Ferry__V1__ServerMessage *m;

		if (k->c == NULL)
			continue;
		for (;;)
		{
			while ((m = client_recv(k->c, 0)) != NULL)
			{
				handle(k, m);
				frame_free_server(m);
			}
			if (k->c->ws->closed || ws_fill(k->c->ws, 1000) <= 0)
				break;
		}
		conn_drop(k);
	}
}

/* ---- the end: markers and the comparison ---------------------------------------------- */

static int
has_markers(Conn *k, Sub *s)
{
	if (!s->subscribed)
		return 0;
	for (int i = 0; i < TSETS[k->tset][0]; i++)
	{
		char		key[32];

		snprintf(key, sizeof(key), "%d", MARKER_BASE + TSETS[k->tset][1 + i]);
		if (hmap_get(&s->rows, key, strlen(key)) == NULL)
			return 0;
	}
	return 1;
}

static int
all_have_markers(void)
{
	for (int i = 0; i < nconns; i++)
		for (int j = 0; j < conns[i].nsubs; j++)
			if (!has_markers(&conns[i], &conns[i].subs[j]))
				return 0;
	return 1;
}

static char *
quote_ident(const char *s)
{
	char	   *out = malloc(2 * strlen(s) + 3);
	size_t		n = 0;

	out[n++] = '"';
	for (; *s; s++)
	{
		if (*s == '"')
			out[n++] = '"';
		out[n++] = *s;
	}
	out[n++] = '"';
	out[n] = '\0';
	return out;
}

/*
 * Compares a replica with the shape in Postgres; returns the number of differences
 * and prints the first `show` of them, then a one-line count (when show > 0).
 */
static long
compare(PGconn *db, Conn *k, Sub *s, long *rows_out, const char *when, int show)
{
	const Combo *cb = &COMBOS[s->combo];
	char		sql[4096];
	char		tenants[64] = "{";
	char		desc[512];
	const char *params[1] = {tenants};
	PGresult   *res;
	Hmap		seen;
	long		diffs = 0,
				missing = 0,
				extra = 0;
	size_t		len;

	sub_desc(k, s, desc, sizeof(desc));
	*rows_out = 0;
	if (s->ncols == 0)
	{
		diag("%s%s: never subscribed", when, desc);
		return 1;
	}
	for (int i = 0; i < TSETS[k->tset][0]; i++)
	{
		strcat(tenants, i ? "," : "");
		strcat(tenants, TENANTS[TSETS[k->tset][1 + i]]);
	}
	strcat(tenants, "}");
	len = (size_t) snprintf(sql, sizeof(sql), "SELECT ");
	for (int i = 0; i < s->ncols; i++)
	{
		char	   *q = quote_ident(s->cols[i]);

		len += (size_t) snprintf(sql + len, sizeof(sql) - len, "%s, ", q);
		free(q);
	}
	snprintf(sql + len, sizeof(sql) - len,
			 "ferry_version FROM cons_items WHERE tenant = ANY ($1::text[]) AND ferry_deleted_at IS NULL%s%s%s",
			 cb->where ? " AND (" : "", cb->where ? cb->where : "", cb->where ? ")" : "");
	res = PQexecParams(db, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		bail_out("%s\n%s", sql, PQerrorMessage(db));
	*rows_out = PQntuples(res);
	hmap_init(&seen);
	for (int r = 0; r < PQntuples(res); r++)
	{
		char	   *key = NULL,
				   *vals = NULL;
		size_t		kl = 0,
					vl = 0;
		FILE	   *kf = open_memstream(&key, &kl);
		FILE	   *vf = open_memstream(&vals, &vl);
		RRow	   *row;
		int64_t		version = strtoll(PQgetvalue(res, r, s->ncols), NULL, 10);
		int			nk = 0;

		for (int c = 0; c < s->ncols; c++)
		{
			const char *v = PQgetisnull(res, r, c) ? "\\N" : PQgetvalue(res, r, c);

			fprintf(vf, "%s%s", c ? "|" : "", v);
			if (s->iskey[c])
				fprintf(kf, "%s%s", nk++ ? "|" : "", v);
		}
		fclose(kf);
		fclose(vf);
		hmap_put(&seen, key, strlen(key), (void *) 1);
		row = hmap_get(&s->rows, key, strlen(key));
		if (row == NULL)
		{
			missing++;
			if (diffs++ < show)
				diag("%s%s: row %s missing from the replica (Postgres: version %" PRId64 ", %.300s)", when, desc,
					 key, version, vals);
		}
		else if (strcmp(row->values, vals) != 0 || row->version != version)
		{
			if (diffs++ < show)
				diag("%s%s: row %s differs:\n#   replica  v%" PRId64 " %.300s\n#   Postgres v%" PRId64 " %.300s",
					 when, desc, key, row->version, row->values, version, vals);
		}
		free(key);
		free(vals);
	}
	for (long i = hmap_next(&s->rows, 0); i >= 0; i = hmap_next(&s->rows, i + 1))
	{
		const char *key = s->rows.slots[i].key;
		size_t		kl = s->rows.slots[i].keylen;

		if (hmap_get(&seen, key, kl) == NULL)
		{
			RRow	   *row = s->rows.slots[i].value;

			extra++;
			if (diffs++ < show)
				diag("%s%s: extra row %.*s in the replica (v%" PRId64 " %.300s)", when, desc, (int) kl, key,
					 row->version, row->values);
		}
	}
	if (diffs > 0 && show > 0)
		diag("%s%s: %ld differences (%ld rows missing, %ld extra, %ld different) in %ld rows", when, desc, diffs,
			 missing, extra, diffs - missing - extra, *rows_out);
	hmap_destroy(&seen);
	PQclear(res);
	return diffs;
}

/* ---- main -------------------------------------------------------------------------------- */

/* A bail-out must not leave ferryd running (and holding the slot the next test needs). */
static void
kill_ferryd(void)
{
	if (ferryd_up && d != NULL)
	{
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		ferryd_up = 0;
	}
}

int
main(void)
{
	PGconn	   *db = db_connect();
	Writer		w;
	pthread_t	wt;
	uint64_t	seed;
	int			rounds = 10;
	int64_t		t0 = ws_now_ms();
	long		wrong_subs = 0,
				compared_rows = 0,
				nsubs = 0;
	int			shared = 0;

	if (getenv("FERRY_SEED") != NULL)
		seed = strtoull(getenv("FERRY_SEED"), NULL, 10);
	else
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = ((uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 20) ^ (uint64_t) getpid()) % 1000000000;
	}
	if (getenv("FERRY_CONSISTENCY_ROUNDS") != NULL)
		rounds = atoi(getenv("FERRY_CONSISTENCY_ROUNDS"));
	if (rounds <= KILL_ROUND)
		rounds = KILL_ROUND + 1;
	diag("seed %" PRIu64 "; FERRY_SEED=%" PRIu64 " reproduces", seed, seed);
	rng.s = seed;

	/* ---- the table: ~2000 rows over 3 tenants ---- */
	db_exec(db, "SET TimeZone = 'UTC'");
	db_exec(db, "SET DateStyle = ISO");
	db_exec(db, "SET IntervalStyle = postgres");
	db_exec(db, "SET extra_float_digits = 1");
	db_exec(db, "DROP TABLE IF EXISTS cons_items");
	db_exec(db, "CREATE TABLE cons_items (id int PRIMARY KEY, tenant text NOT NULL, title text, note text, "
			"counter int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false, tags text[], "
			"status text DEFAULT 'open', prio smallint NOT NULL DEFAULT 2)");
	db_exec(db, "SELECT ferry.enable_sync('cons_items', 'tenant')");
	db_exec(db, "INSERT INTO cons_items (id, tenant, title, note, counter, done, tags, status, prio) "
			"SELECT g, 't' || (1 + g % 3), "
			"CASE WHEN g % 11 = 0 THEN NULL WHEN g % 2 = 0 THEN 'a seed ' || g ELSE 'z \"seed\", ''' || g END, "
			"CASE WHEN g % 50 = 0 THEN (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 300) i) "
			"WHEN g % 3 = 0 THEN NULL ELSE 'note ' || g END, "
			"(g * 7919) % 1000, g % 4 = 0, "
			"CASE WHEN g % 13 = 0 THEN NULL ELSE ARRAY['seed', 'tag ' || (g % 5), CASE WHEN g % 7 = 0 THEN NULL "
			"ELSE 'x,\"y\"' END] END, "
			"(ARRAY['open', 'hold', 'closed', NULL])[1 + g % 4], 1 + g % 3 "
			"FROM generate_series(1, 2000) g");
	{
		char	   *n = db_value(db, "SELECT count(*) FROM cons_items");

		is_int(atoi(n), 2000, "2000 rows seeded over 3 tenants");
		free(n);
	}

	memset(&w, 0, sizeof(w));
	w.db = db_connect();
	w.rng.s = seed ^ 0x5eed5eed5eedULL;
	w.state = calloc(BIG_BASE, 1);
	w.tenant = calloc(BIG_BASE, 1);
	for (int i = 1; i <= 2000; i++)
	{
		w.state[i] = 1;
		w.tenant[i] = (uint8_t) (i % 3);
	}
	w.next_id = 2001;
	w.big_next_base = BIG_BASE;

	d = ferryd_start(NULL);
	ferryd_up = 1;
	atexit(kill_ferryd);
	if (pthread_create(&wt, NULL, writer_main, &w) != 0)
		bail_out("cannot start the writer thread");

	/* ---- rounds: clients come, go, resume; ferryd dies once ---- */
	for (int round = 1; round <= rounds; round++)
	{
		int			fresh = round == 1 ? 4 : 3;

		/* new clients, one of them (from round 2) with the definitions of an existing one */
		for (int i = 0; i < fresh && nconns < MAX_CONNS; i++)
			conn_new(round > 1 && i == 0 ? rng_int(&rng, nconns) : -1);
		pump(ROUND_MS / 3);
		/* some resume, then some others leave (those left in an earlier round come back first) */
		for (int i = 0; i < nconns; i++)
			if (conns[i].parked && chance(&rng, 60))
				conn_connect(&conns[i]);
		for (int i = 0; i < nconns; i++)
			if (conns[i].c != NULL && chance(&rng, 20))
			{
				/* mid-stream: whatever was not read yet is lost with the socket */
				conn_drop(&conns[i]);
				total_disconnects++;
			}
		pump(2 * ROUND_MS / 3);
		if (round == KILL_ROUND)
		{
			long		bigs = __atomic_load_n(&w.bigs, __ATOMIC_RELAXED);
			int64_t		until = ws_now_ms() + 3 * BIG_EVERY_MS;

			/*
			 * The worst moment: just after a big transaction committed, while ferryd is
			 * still streaming it, with brand-new shapes whose snapshots just finished.
			 */
			while (__atomic_load_n(&w.bigs, __ATOMIC_RELAXED) == bigs && ws_now_ms() < until)
				pump(10);
			for (int i = 0; i < 2 && nconns < MAX_CONNS; i++)
				conn_new(-2);
			pump(100 + rng_int(&rng, 300));
			ferryd_up = 0;
			is_int(ferryd_stop(d, SIGKILL), SIGKILL, "round %d: ferryd killed with SIGKILL under load", round);
			drain_dead();
			pump(200);			/* the writer goes on meanwhile */
			ferryd_start_in(d, NULL);
			ferryd_up = 1;
			ok(1, "ferryd restarted on port %d", d->port);
			for (int i = 0; i < nconns; i++)
				if (chance(&rng, 70))
					conn_connect(&conns[i]);
		}
		note("round %d: %d clients, %ld changes received, writer at %ld commits", round, nconns, total_changes,
			 __atomic_load_n(&w.commits, __ATOMIC_RELAXED));
	}

	/* ---- the end: stop the writer, bring everyone back, markers ---- */
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
	pthread_join(wt, NULL);
	if (!ok(w.errors == 0, "the writer's statements all ran (%d errors)", w.errors))
		diag("first writer error: %s", w.err);
	for (int i = 0; i < nconns; i++)
		if (conns[i].c == NULL)
			conn_connect(&conns[i]);

	/*
	 * Nothing may be left undelivered once ferryd has it: small transactions of every
	 * tenant, committed while ferryd streams a big transaction of a tenant nobody
	 * follows and right before another one, so that its reads end inside a
	 * transaction. When ferryd confirmed the last commit and the clients went quiet,
	 * every replica must already equal its shape: before any marker nudges it.
	 */
	{
		PGconn	   *x = db_connect();
		char	   *lsn;
		char		sql[256];
		int64_t		deadline;
		long		stale = 0;
		int			confirmed = 0;

		db_exec(x, "BEGIN");
		db_exec(x, "INSERT INTO cons_items (id, tenant, title, counter) "
				"SELECT g, 't4', 'nobody', 0 FROM generate_series(1900000000, 1900019999) g");
		db_exec(db, "INSERT INTO cons_items (id, tenant, title, counter) "
				"SELECT g, 't4', 'nobody', 0 FROM generate_series(1900020000, 1900039999) g");
		for (int t = 0; t < 3; t++)
		{
			snprintf(sql, sizeof(sql), "UPDATE cons_items SET counter = counter WHERE tenant = '%s' AND id %% 50 = 7 "
					 "AND ferry_deleted_at IS NULL", TENANTS[t]);
			db_exec(w.db, sql);
		}
		lsn = db_value(x, "SELECT pg_current_wal_insert_lsn()");
		db_exec(x, "COMMIT");
		PQfinish(x);
		snprintf(sql, sizeof(sql), "SELECT confirmed_flush_lsn > '%s'::pg_lsn FROM pg_replication_slots "
				 "WHERE slot_name = 'ferry_test_gw'", lsn);
		deadline = ws_now_ms() + 30000;
		while (!confirmed && ws_now_ms() < deadline)
		{
			char	   *v;

			pump(100);
			v = db_value(db, sql);
			confirmed = strcmp(v, "t") == 0;
			free(v);
		}
		ok(confirmed, "ferryd confirmed the last commit (after %s)", lsn);
		free(lsn);
		deadline = ws_now_ms() + 10000;
		last_rx_ms = ws_now_ms();
		while (ws_now_ms() - last_rx_ms < 1500 && ws_now_ms() < deadline)
			pump(100);
		for (int i = 0; i < nconns; i++)
			for (int j = 0; j < conns[i].nsubs; j++)
			{
				long		rows;

				if (compare(db, &conns[i], &conns[i].subs[j], &rows, "before the markers: ", stale < 3 ? 2 : 0) != 0)
					stale++;
			}
		if (!is_int(stale, 0, "once ferryd confirmed the last commit, no subscription is left without it"))
			diag("%ld subscriptions were still missing committed changes (details of the first 3 above)", stale);
	}

	for (int t = 0; t < 3; t++)
	{
		char		sql[256];

		snprintf(sql, sizeof(sql), "INSERT INTO cons_items (id, tenant, title, counter, done, status, prio) "
				 "VALUES (%d, '%s', 'a-marker', 0, false, 'open', 2)", MARKER_BASE + t, TENANTS[t]);
		db_exec(db, sql);
	}
	{
		int64_t		deadline = ws_now_ms() + 30000;

		while (!all_have_markers() && ws_now_ms() < deadline)
			pump(100);
		pump(300);				/* anything after the markers would be a bug too */
	}
	if (!ok(all_have_markers(), "every subscription caught up to the last commit (the tenants' markers)"))
		for (int i = 0; i < nconns; i++)
			for (int j = 0; j < conns[i].nsubs; j++)
				if (!has_markers(&conns[i], &conns[i].subs[j]))
				{
					char		desc[512];

					sub_desc(&conns[i], &conns[i].subs[j], desc, sizeof(desc));
					diag("%s has not caught up (offset %s, %ld changes)", desc, conns[i].subs[j].offset,
						 conns[i].subs[j].changes);
				}

	/* ---- what arrived while it ran ---- */
	is_int(fails[F_DUP], 0, "no duplicate: no INSERT of a present key, no UPDATE without a higher version");
	is_int(fails[F_GAP], 0, "no gap: no UPDATE or DELETE of a missing key");
	is_int(fails[F_ORDER], 0, "every batch's offset is after the previous one's, across resumes and the restart");
	is_int(fails[F_TXN], 0, "transactions arrive whole: partial batches, then the last; UpToDate only between");
	is_int(fails[F_PROTO], 0, "no Error, MustRefetch or refused resume");

	/* ---- the replicas against Postgres ---- */
	for (int i = 0; i < nconns; i++)
		for (int j = 0; j < conns[i].nsubs; j++)
		{
			long		rows = 0;

			nsubs++;
			if (compare(db, &conns[i], &conns[i].subs[j], &rows, "", wrong_subs < 10 ? 5 : 0) != 0)
				wrong_subs++;
			compared_rows += rows;
			for (int i2 = 0; i2 < nconns; i2++)
				for (int j2 = 0; j2 < conns[i2].nsubs; j2++)
					if ((i2 != i || j2 != j) && conns[i].subs[j].handle[0] != '\0' &&
						strcmp(conns[i].subs[j].handle, conns[i2].subs[j2].handle) == 0)
						shared = 1;
		}
	is_int(wrong_subs, 0, "every replica equals its shape in Postgres, row by row and value by value "
		   "(%ld subscriptions, %ld rows)", nsubs, compared_rows);

	/* ---- the test did what it says ---- */
	ok(shared, "some subscriptions shared a shape");
	ok(total_resumes > 0, "subscriptions resumed from their offsets (%ld times)", total_resumes);
	ok(w.bigs > 0, "big transactions committed (%ld of %d rows)", w.bigs, BIG_ROWS);
	ok(total_partials > 0, "partial batches were received (%ld)", total_partials);
	ok(w.rollbacks > 0, "transactions were rolled back (%ld)", w.rollbacks);

	diag("seed %" PRIu64 ": %ld transactions committed (%ld big), %ld rolled back, %ld savepoints rolled back, "
		 "%ld rows written; %d clients, %ld subscriptions, %ld disconnects, %ld resumes, %ld rate-limited "
		 "subscribes; %ld changes in %ld batches (%ld partial) received; %.1f s", seed, w.commits, w.bigs,
		 w.rollbacks, w.savepoint_rollbacks, w.rows, nconns, nsubs, total_disconnects, total_resumes,
		 total_rate_limited, total_changes, total_batches, total_partials, (double) (ws_now_ms() - t0) / 1000.0);

	ferryd_up = 0;
	is_int(ferryd_stop(d, SIGTERM), 0, "SIGTERM stops ferryd cleanly (exit 0)");
	for (int i = 0; i < nconns; i++)
	{
		client_close(conns[i].c);
		for (int j = 0; j < conns[i].nsubs; j++)
		{
			replica_clear(&conns[i].subs[j]);
			hmap_destroy(&conns[i].subs[j].rows);
			for (int c = 0; c < conns[i].subs[j].ncols; c++)
				free(conns[i].subs[j].cols[c]);
		}
	}
	ferryd_cleanup(d, db);
	db_exec(db, "DROP TABLE cons_items");
	PQfinish(w.db);
	PQfinish(db);
	free(w.state);
	free(w.tenant);
	free(w.undo);
	return done_testing();
}
