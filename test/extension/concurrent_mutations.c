/*
 * test/extension/concurrent_mutations.c -- ferry.apply_mutation from two connections at
 * once on one row: the same mutation id twice, interleaved counter increments, two
 * version-rule updates from one base, and lww between clocks whatever the commit order.
 *
 * Connections: admin (setup, checks, watching pg_stat_activity), s1 and s2 (the two
 * writers). A writer's transaction is held open with BEGIN so that the other's apply
 * starts while the first is not committed yet; the other's apply is sent with
 * PQsendQueryParams and must wait for the row (checked through pg_stat_activity).
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "pq_util.h"

#define CLAIMS "{\"sub\":\"u1\",\"tenants\":[\"w1\"]}"
#define APPLY_SQL "SELECT ferry.apply_mutation($1::jsonb, $2::jsonb)::text"

static char table[64];              /* public.fy_conc_<pid> */
static int id_counter;              /* makes mutation ids unique within the run */

/* new_id writes a fresh mutation id (a UUID made of the pid and a counter) into buf. */
static void
new_id(char *buf, size_t size)
{
    snprintf(buf, size, "%08x-0000-4000-8000-%012x", (unsigned) getpid(), (unsigned) ++id_counter);
}

/* mutation_of builds a mutation of row key_id of the table (malloc'd). */
static char *
mutation_of(const char *id, const char *client, const char *op, int key_id, const char *changes,
            const char *clock)
{
    size_t size = strlen(changes) + strlen(table) + 512;
    char *m = malloc(size);

    if (m == NULL)
        bail_out("out of memory");
    snprintf(m, size,
             "{\"id\": \"%s\", \"client_id\": \"%s\", \"table\": \"%s\", \"op\": \"%s\","
             " \"key\": {\"id\": %d}, \"changes\": %s%s%s%s}",
             id, client, table, op, key_id, changes,
             clock ? ", \"clock\": \"" : "", clock ? clock : "", clock ? "\"" : "");
    return m;
}

/* mutation builds an update of row 1 of the table (malloc'd). */
static char *
mutation(const char *id, const char *client, const char *changes, const char *clock)
{
    return mutation_of(id, client, "update", 1, changes, clock);
}

/* apply runs apply_mutation on conn and waits for its result (text, malloc'd). */
static char *
apply(PGconn *conn, const char *m)
{
    const char *params[2] = {m, CLAIMS};

    return pq_value_params(conn, APPLY_SQL, 2, params);
}

/* apply_as_ferryd runs apply_mutation the way ferryd's apply workers do (the result, then
 * the WAL position) and returns the result (text, malloc'd). */
static char *
apply_as_ferryd(PGconn *conn, const char *m, const char *id)
{
    const char *params[4] = {m, id, "c1", CLAIMS};

    return pq_value_params(conn,
                           "WITH r AS MATERIALIZED (SELECT ferry.apply_mutation("
                           "  CASE WHEN jsonb_typeof($1::jsonb) = 'object' "
                           "       THEN $1::jsonb || jsonb_build_object('id', $2::text, 'client_id', $3::text) "
                           "       ELSE $1::jsonb END, $4::jsonb)::text AS res) "
                           "SELECT r.res, pg_current_wal_insert_lsn()::text FROM r", 4, params);
}

/* apply_send starts apply_mutation on conn without waiting. */
static int
apply_send(PGconn *conn, const char *m)
{
    const char *params[2] = {m, CLAIMS};

    return pq_send_params(conn, APPLY_SQL, 2, params);
}

/* jget returns the text at path (a Postgres text[] literal such as '{error,code}') of the
 * JSON document json, evaluated by admin (malloc'd; NULL when absent). */
static char *
jget(PGconn *admin, const char *json, const char *path)
{
    const char *params[2] = {json ? json : "null", path};

    return pq_value_params(admin, "SELECT $1::jsonb #>> $2::text[]", 2, params);
}

/* is_json checks that path of json is want, and frees the value. */
static int
is_json(PGconn *admin, const char *json, const char *path, const char *want, const char *name)
{
    char *got = jget(admin, json, path);
    int pass = is_str(got, want, "%s", name);

    if (!pass)
        diag("in %s", json ? json : "(no result)");
    free(got);
    return pass;
}

/* column returns a column of row 1 of the table as text (malloc'd). */
static char *
column(PGconn *admin, const char *col)
{
    return pq_value(admin, "SELECT %s::text FROM %s WHERE id = 1", col, table);
}

static int
is_column(PGconn *admin, const char *col, const char *want, const char *name)
{
    char *got = column(admin, col);
    int pass = is_str(got, want, "%s", name);

    free(got);
    return pass;
}

/* backend_pid returns the pid of conn's server process. */
static int
backend_pid(PGconn *conn)
{
    return PQbackendPID(conn);
}

int
main(void)
{
    PGconn *admin = pq_connect("fy-conc-admin");
    PGconn *s1 = pq_connect("fy-conc-s1");
    PGconn *s2 = pq_connect("fy-conc-s2");
    char id[64], clock1[64], clock2[64];
    char *m1, *m2, *r1, *r2, *v;
    long long base;
    int applied;
    const int n = 20;

    plan(49);
    snprintf(table, sizeof(table), "public.fy_conc_%d", (int) getpid());

    if (!ok(pq_exec(admin, "CREATE TABLE %s (id int PRIMARY KEY, ws text NOT NULL, title text,"
                           " qty int NOT NULL DEFAULT 0, ver text)", table)
            && pq_exec(admin, "SELECT ferry.enable_sync('%s', 'ws')", table)
            && pq_exec(admin, "SELECT ferry.set_conflict_rule('%s', 'qty', 'counter')", table)
            && pq_exec(admin, "SELECT ferry.set_conflict_rule('%s', 'ver', 'version')", table)
            && pq_exec(admin, "INSERT INTO %s (id, ws, title, qty, ver) VALUES (1, 'w1', 'a', 0, 'v1')", table),
            "setup: a synced table with a counter and a version column, one row"))
        bail_out("cannot set up %s", table);

    /* (a) The same mutation from both connections at once. */
    new_id(id, sizeof(id));
    m1 = mutation(id, "c1", "{\"qty\": {\"old\": 0, \"new\": 5}}", NULL);
    pq_exec(s1, "BEGIN");
    pq_exec(s2, "BEGIN");
    r1 = apply(s1, m1);
    apply_send(s2, m1);
    ok(pq_waits_on_lock(admin, backend_pid(s2), 5000),
       "(a) the second apply of the same id waits for the first transaction");
    pq_exec(s1, "COMMIT");
    r2 = pq_collect(s2);
    pq_exec(s2, "COMMIT");
    is_json(admin, r1, "{status}", "applied", "(a) first: applied");
    is_json(admin, r2, "{status}", "duplicate", "(a) second, once the first committed: duplicate");
    is_json(admin, r2, "{original,status}", "applied", "(a) its original is the applied result");
    {
        const char *params[2] = {r2 ? r2 : "null", r1 ? r1 : "null"};

        v = pq_value_params(admin, "SELECT ($1::jsonb -> 'original') = $2::jsonb", 2, params);
        is_str(v, "t", "(a) original equals the first result");
        free(v);
    }
    is_column(admin, "qty", "5", "(a) written once: qty 5, not 10");
    is_column(admin, "ferry_version", "2", "(a) version bumped once");
    free(m1);
    free(r1);
    free(r2);

    /* (b) Counter increments from both connections, interleaved and concurrent. */
    applied = 0;
    for (int i = 0; i < n; i++)
    {
        char id2[64];

        new_id(id, sizeof(id));
        new_id(id2, sizeof(id2));
        /* Deliberately stale bases: a counter adds new - old whatever the server has. */
        m1 = mutation(id, "c1", "{\"qty\": {\"old\": 0, \"new\": 1}}", NULL);
        m2 = mutation(id2, "c2", "{\"qty\": {\"old\": 0, \"new\": 2}}", NULL);
        apply_send(s1, m1);
        apply_send(s2, m2);
        r1 = pq_collect(s1);
        r2 = pq_collect(s2);
        v = jget(admin, r1, "{status}");
        applied += pq_str_eq(v, "applied");
        free(v);
        v = jget(admin, r2, "{status}");
        applied += pq_str_eq(v, "applied");
        if (!pq_str_eq(v, "applied") && i == 0)
            diag("(b) %s", r2 ? r2 : "(no result)");
        free(v);
        free(m1);
        free(m2);
        free(r1);
        free(r2);
    }
    is_int(applied, 2 * n, "(b) every one of the %d concurrent increments applied", 2 * n);
    v = pq_value(admin, "SELECT %d", 5 + n * 1 + n * 2);
    is_column(admin, "qty", v, "(b) final counter = 5 + the sum of the deltas");
    free(v);
    v = pq_value(admin, "SELECT %d", 2 + 2 * n);
    is_column(admin, "ferry_version", v, "(b) one version per increment");
    free(v);

    /* (c) Two version-rule updates from the same base. */
    new_id(id, sizeof(id));
    m1 = mutation(id, "c1", "{\"ver\": {\"old\": \"v1\", \"new\": \"v2a\"}}", NULL);
    new_id(id, sizeof(id));
    m2 = mutation(id, "c2", "{\"ver\": {\"old\": \"v1\", \"new\": \"v2b\"}}", NULL);
    pq_exec(s1, "BEGIN");
    r1 = apply(s1, m1);
    apply_send(s2, m2);
    ok(pq_waits_on_lock(admin, backend_pid(s2), 5000), "(c) the second update waits for the first");
    pq_exec(s1, "COMMIT");
    r2 = pq_collect(s2);
    is_json(admin, r1, "{status}", "applied", "(c) first: applied");
    is_json(admin, r2, "{status}", "conflict", "(c) second, same base: conflict");
    is_json(admin, r2, "{conflicts}", "[\"ver\"]", "(c) conflicts: [ver]");
    is_json(admin, r2, "{row,ver}", "v2a", "(c) the conflict shows the committed server row");
    is_column(admin, "ver", "v2a", "(c) the first update's value stays");
    free(m1);
    free(m2);
    free(r1);
    free(r2);

    /* (d) lww from two connections: the newer clock wins, whichever commits first. Clocks
     * are a minute ahead of the server (within ferry.max_clock_skew), so they are newer
     * than any server clock the row has. */
    v = pq_value(admin, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 60000");
    base = v ? atoll(v) : 0;
    free(v);

    /* The newer clock commits first; the older one, concurrent, loses. */
    snprintf(clock1, sizeof(clock1), "%lld-0-n1", base + 2000);
    snprintf(clock2, sizeof(clock2), "%lld-0-n2", base + 1000);
    new_id(id, sizeof(id));
    m1 = mutation(id, "c1", "{\"title\": {\"old\": \"a\", \"new\": \"newer\"}}", clock1);
    new_id(id, sizeof(id));
    m2 = mutation(id, "c2", "{\"title\": {\"old\": \"a\", \"new\": \"older\"}}", clock2);
    pq_exec(s1, "BEGIN");
    r1 = apply(s1, m1);
    apply_send(s2, m2);
    ok(pq_waits_on_lock(admin, backend_pid(s2), 5000), "(d1) the older clock's update waits");
    pq_exec(s1, "COMMIT");
    r2 = pq_collect(s2);
    is_json(admin, r1, "{status}", "applied", "(d1) newer clock: applied");
    is_json(admin, r2, "{status}", "applied", "(d1) older clock: applied (its column overridden)");
    is_json(admin, r2, "{overridden}", "[\"title\"]", "(d1) older clock: overridden [title]");
    is_column(admin, "title", "newer", "(d1) the newer clock's value wins");
    free(m1);
    free(m2);
    free(r1);
    free(r2);

    /* The older clock commits first; the newer one, concurrent, wins. */
    snprintf(clock1, sizeof(clock1), "%lld-0-n1", base + 3000);
    snprintf(clock2, sizeof(clock2), "%lld-0-n2", base + 4000);
    new_id(id, sizeof(id));
    m1 = mutation(id, "c1", "{\"title\": {\"old\": \"newer\", \"new\": \"older2\"}}", clock1);
    new_id(id, sizeof(id));
    m2 = mutation(id, "c2", "{\"title\": {\"old\": \"newer\", \"new\": \"newer2\"}}", clock2);
    pq_exec(s1, "BEGIN");
    r1 = apply(s1, m1);
    apply_send(s2, m2);
    ok(pq_waits_on_lock(admin, backend_pid(s2), 5000), "(d2) the newer clock's update waits");
    pq_exec(s1, "COMMIT");
    r2 = pq_collect(s2);
    {
        char *st1 = jget(admin, r1, "{status}");
        char *st2 = jget(admin, r2, "{status}");

        ok(pq_str_eq(st1, "applied") && pq_str_eq(st2, "applied"), "(d2) both applied");
        if (!pq_str_eq(st2, "applied"))
            diag("(d2) %s", r2 ? r2 : "(no result)");
        free(st1);
        free(st2);
    }
    is_column(admin, "title", "newer2", "(d2) the newer clock's value wins though it committed last");
    free(m1);
    free(m2);
    free(r1);
    free(r2);

    /* (e) Two inserts of the same new key at once: the second finds the first's row live,
     * which is a conflict on the columns that differ -- not a unique violation. */
    new_id(id, sizeof(id));
    m1 = mutation_of(id, "c1", "insert", 2, "{\"ws\": {\"new\": \"w1\"}, \"title\": {\"new\": \"from s1\"}}", NULL);
    new_id(id, sizeof(id));
    m2 = mutation_of(id, "c2", "insert", 2, "{\"ws\": {\"new\": \"w1\"}, \"title\": {\"new\": \"from s2\"}}", NULL);
    pq_exec(s1, "BEGIN");
    r1 = apply(s1, m1);
    apply_send(s2, m2);
    ok(pq_waits_on_lock(admin, backend_pid(s2), 5000), "(e) the second insert of the key waits for the first");
    pq_exec(s1, "COMMIT");
    r2 = pq_collect(s2);
    is_json(admin, r1, "{status}", "applied", "(e) first insert: applied");
    is_json(admin, r2, "{status}", "conflict", "(e) second insert of the now live key: conflict");
    is_json(admin, r2, "{conflicts}", "[\"title\"]", "(e) conflicts: [title]");
    is_json(admin, r2, "{row,title}", "from s1", "(e) the conflict shows the first insert's row");
    v = pq_value(admin, "SELECT title || '/' || ferry_version FROM %s WHERE id = 2", table);
    is_str(v, "from s1/1", "(e) the first insert's row, written once");
    free(v);
    free(m1);
    free(m2);
    free(r1);
    free(r2);

    /* (f) One connection applying one mutation after another, with parameters, as ferryd's
     * workers do: every result comes back whole. (Results once lived in memory that SPI
     * freed: from the second call of a backend on, a delete's result came back corrupted,
     * or the backend crashed. The table and mutations are those that showed it.) */
    {
        static const char *const ms[] = {
            "{\"op\": \"update\", \"key\": {\"id\": \"1\"}, \"clock\": \"1795605106042-0-c1\", \"table\": \"%s\", "
            "\"changes\": {\"title\": {\"new\": \"renamed on A\", \"old\": \"todo 1\"}}, \"base_version\": 1}",
            "{\"op\": \"delete\", \"key\": {\"id\": \"6\"}, \"clock\": \"1795605106049-0-c1\", \"table\": \"%s\", "
            "\"changes\": {}, \"base_version\": 1}",
            "{\"op\": \"insert\", \"key\": {\"id\": \"10\"}, \"clock\": \"1795605106035-0-c1\", \"table\": \"%s\", "
            "\"changes\": {\"id\": {\"new\": \"10\"}, \"ws\": {\"new\": \"w1\"}, \"title\": {\"new\": \"new\"}}}",
            "{\"op\": \"delete\", \"key\": {\"id\": \"7\"}, \"clock\": \"1795605106050-0-c1\", \"table\": \"%s\", "
            "\"changes\": {}, \"base_version\": 1}",
        };
        static const char *const kinds[] = {"update", "delete", "insert", "delete"};
        char todos[80];
        char last[64] = "";
        PGconn *s3 = pq_connect("fy-conc-s3");  /* a backend that has applied nothing yet */

        snprintf(todos, sizeof(todos), "%s_todos", table);
        ok(pq_exec(admin, "CREATE TABLE %s (id int PRIMARY KEY, ws text NOT NULL, title text, body text, "
                          "done boolean NOT NULL DEFAULT false, status text, note text, tags text[] NOT NULL DEFAULT '{}', "
                          "pomodoros int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now())", todos)
           && pq_exec(admin, "SELECT ferry.enable_sync('%s', 'ws')", todos)
           && pq_exec(admin, "SELECT ferry.set_conflict_rule('%s', 'status', 'version')", todos)
           && pq_exec(admin, "SELECT ferry.set_conflict_rule('%s', 'note', 'manual')", todos)
           && pq_exec(admin, "SELECT ferry.set_conflict_rule('%s', 'tags', 'set_union')", todos)
           && pq_exec(admin, "SELECT ferry.set_conflict_rule('%s', 'pomodoros', 'counter')", todos)
           && pq_exec(admin, "SELECT ferry.set_conflict_rule('%s', 'created_at', 'immutable')", todos)
           && pq_exec(admin, "INSERT INTO %s (id, ws, title, status) SELECT i, 'w1', 'todo ' || i, 'open' "
                             "FROM generate_series(1, 8) i", todos),
           "(f) setup: a synced table with a rule of every kind, 8 rows");
        for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        {
            size_t size = strlen(ms[i]) + strlen(todos) + 1;
            char *m = malloc(size);

            snprintf(m, size, ms[i], todos);
            new_id(id, sizeof(id));
            r1 = apply_as_ferryd(s3, m, id);
            ok(r1 != NULL, "(f) mutation %zu (%s) on one connection: a result", i + 1, kinds[i]);
            is_json(admin, r1, "{status}", "applied", "(f) ... applied");
            is_json(admin, r1, "{id}", id, "(f) ... its id");
            if (i == 1)
                snprintf(last, sizeof(last), "%s", id);
            free(m);
            free(r1);
        }
        /* the first delete again, by id: the recorded result replayed */
        {
            size_t size = strlen(ms[1]) + strlen(todos) + 1;

            m1 = malloc(size);
            snprintf(m1, size, ms[1], todos);
        }
        r1 = apply_as_ferryd(s3, m1, last);
        is_json(admin, r1, "{status}", "duplicate", "(f) a replayed delete: duplicate");
        is_json(admin, r1, "{original,status}", "applied", "(f) ... with its original result");
        free(m1);
        free(r1);
        v = pq_value(admin, "SELECT string_agg(id || ':' || (ferry_deleted_at IS NOT NULL), ',' ORDER BY id) FROM %s "
                            "WHERE id IN (1, 6, 7, 10)", todos);
        is_str(v, "1:false,6:true,7:true,10:false", "(f) rows 6 and 7 are tombstones, 1 and 10 live");
        free(v);
        ok(pq_exec(admin, "DROP TABLE %s", todos), "(f) cleanup");
        PQfinish(s3);
    }

    ok(pq_exec(admin, "DROP TABLE %s", table), "cleanup: table dropped");

    PQfinish(s2);
    PQfinish(s1);
    PQfinish(admin);
    return done_testing();
}
