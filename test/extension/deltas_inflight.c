/*
 * test/extension/deltas_inflight.c -- exact deltas across transactions: a write whose
 * transaction is still open when the cursor is taken must be in the delta from that
 * cursor once it commits; a write committed before the cursor must not.
 *
 * Three connections: admin (setup, autocommit writes), s1 (the writer whose transaction
 * stays open) and s2 (the reader: snapshot_cursor and changes_since).
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "pq_util.h"

#define CLAIMS "{\"sub\":\"u1\",\"tenants\":[\"w1\"]}"

static char table[64];              /* public.fy_inflight_<pid> */

/* ids_since returns the ids changes_since(table, cursor) gives, comma-separated in
 * order ("" for none; NULL on error); when next is not NULL it receives the cursor for
 * the next call (malloc'd). */
static char *
ids_since(PGconn *conn, const char *cursor, char **next)
{
    const char *params[3] = {table, cursor, CLAIMS};
    PGresult *res = PQexecParams(conn,
        "SELECT coalesce((SELECT string_agg(e->>'id', ',' ORDER BY o)"
        "                   FROM jsonb_array_elements(r->'rows') WITH ORDINALITY x(e, o)), ''),"
        "       r->>'cursor', r::text"
        "  FROM ferry.changes_since($1::regclass, $2, $3::jsonb) r",
        3, NULL, params, NULL, NULL, 0);
    char *ids = NULL;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        diag("changes_since failed: %s", PQerrorMessage(conn));
    else
    {
        ids = strdup(PQgetvalue(res, 0, 0));
        if (next != NULL)
            *next = PQgetisnull(res, 0, 1) ? NULL : strdup(PQgetvalue(res, 0, 1));
        note("changes_since(%s) = %s", cursor ? cursor : "NULL", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return ids;
}

/* refetch returns r->>'must_refetch' of changes_since(table, cursor) (malloc'd; NULL
 * when the answer has no must_refetch). */
static char *
refetch(PGconn *conn, const char *cursor)
{
    const char *params[3] = {table, cursor, CLAIMS};

    return pq_value_params(conn,
        "SELECT r->>'must_refetch' FROM ferry.changes_since($1::regclass, $2, $3::jsonb) r",
        3, params);
}

/* cursor_of takes ferry.snapshot_cursor() on conn (malloc'd). */
static char *
cursor_of(PGconn *conn)
{
    return pq_value(conn, "SELECT ferry.snapshot_cursor()");
}

int
main(void)
{
    PGconn *admin = pq_connect("fy-inflight-admin");
    PGconn *s1 = pq_connect("fy-inflight-writer");
    PGconn *s2 = pq_connect("fy-inflight-reader");
    char *cur, *cur2, *ids, *xid, *v, *next = NULL;

    plan(21);
    snprintf(table, sizeof(table), "public.fy_inflight_%d", (int) getpid());

    if (!ok(pq_exec(admin, "CREATE TABLE %s (id int PRIMARY KEY, ws text NOT NULL, title text)", table)
            && pq_exec(admin, "SELECT ferry.enable_sync('%s', 'ws')", table)
            && pq_exec(admin, "INSERT INTO %s VALUES (1, 'w1', 'committed before the cursor')", table),
            "setup: a synced table with one committed row"))
        bail_out("cannot set up %s", table);

    /* 1. A write in progress when the cursor is taken. */
    pq_exec(s1, "BEGIN");
    pq_exec(s1, "INSERT INTO %s VALUES (2, 'w1', 'in progress at cursor time')", table);
    xid = pq_value(s1, "SELECT pg_current_xact_id()::text");
    cur = cursor_of(s2);
    v = pq_value(s2, "SELECT NOT pg_visible_in_snapshot('%s'::xid8, '%s'::pg_snapshot)", xid, cur);
    is_str(v, "t", "the writer's open transaction %s is not visible in the cursor (%s)", xid, cur);
    free(v);
    pq_exec(s1, "COMMIT");
    pq_exec(admin, "INSERT INTO %s VALUES (3, 'w1', 'committed after the cursor')", table);
    ids = ids_since(s2, cur, NULL);
    is_str(ids, "2,3", "delta: the row in progress at cursor time and the row committed after; "
                       "not the row committed before");
    free(ids);
    free(cur);
    free(xid);

    /* 2. An update in progress when the cursor is taken. */
    pq_exec(s1, "BEGIN");
    pq_exec(s1, "UPDATE %s SET title = 'updated in flight' WHERE id = 1", table);
    cur = cursor_of(s2);
    pq_exec(s1, "COMMIT");
    ids = ids_since(s2, cur, NULL);
    is_str(ids, "1", "delta: the update in progress at cursor time");
    free(ids);

    /* 3. A write in progress while changes_since runs: not visible to it, so the cursor it
     * returns must still let the next call see it. */
    pq_exec(s1, "BEGIN");
    pq_exec(s1, "INSERT INTO %s VALUES (4, 'w1', 'in progress during changes_since')", table);
    ids = ids_since(s2, cur, &next);
    is_str(ids, "1", "delta taken while another write is in flight: only the committed change");
    free(ids);
    ok(next != NULL, "changes_since returned a cursor");
    pq_exec(s1, "COMMIT");
    ids = next ? ids_since(s2, next, NULL) : NULL;
    is_str(ids, "4", "the next delta has the write that was in flight, and nothing already delivered");
    free(ids);
    free(next);
    free(cur);

    /* 4. A transaction that began before the cursor but wrote after it. */
    pq_exec(s1, "BEGIN");
    xid = pq_value(s1, "SELECT pg_current_xact_id()::text");
    cur = cursor_of(s2);
    pq_exec(s1, "INSERT INTO %s VALUES (5, 'w1', 'xid before the cursor, write after')", table);
    pq_exec(s1, "COMMIT");
    ids = ids_since(s2, cur, NULL);
    is_str(ids, "5", "delta: a write after the cursor by a transaction whose xid was assigned before");
    free(ids);
    free(cur);
    free(xid);

    /* 5. A transaction that began before the cursor and got its xid after it. */
    pq_exec(s1, "BEGIN");
    v = pq_value(s1, "SELECT count(*) FROM %s", table);
    free(v);
    cur = cursor_of(s2);
    pq_exec(s1, "INSERT INTO %s VALUES (6, 'w1', 'began before the cursor, xid after')", table);
    pq_exec(s1, "COMMIT");
    ids = ids_since(s2, cur, NULL);
    is_str(ids, "6", "delta: a write by a transaction that began before the cursor");
    free(ids);
    free(cur);

    /* 6. A delete in progress at cursor time: the tombstone is in the delta. */
    pq_exec(s1, "BEGIN");
    pq_exec(s1, "DELETE FROM %s WHERE id = 2", table);
    cur = cursor_of(s2);
    pq_exec(s1, "COMMIT");
    ids = ids_since(s2, cur, NULL);
    is_str(ids, "2", "delta: the delete in progress at cursor time");
    free(ids);
    {
        const char *params[3] = {table, cur, CLAIMS};

        v = pq_value_params(s2,
            "SELECT (r #>> '{rows,0,ferry_deleted_at}') IS NOT NULL"
            "  FROM ferry.changes_since($1::regclass, $2, $3::jsonb) r", 3, params);
    }
    is_str(v, "t", "the delta's row is the tombstone");
    free(v);
    free(cur);

    /* 7. A write rolled back after the cursor: nothing. */
    pq_exec(s1, "BEGIN");
    pq_exec(s1, "INSERT INTO %s VALUES (7, 'w1', 'rolled back')", table);
    cur = cursor_of(s2);
    pq_exec(s1, "ROLLBACK");
    ids = ids_since(s2, cur, NULL);
    is_str(ids, "", "delta: a rolled-back write is not there");
    free(ids);

    /* 8. The cursor of a delta: nothing twice. */
    cur2 = NULL;
    ids = ids_since(s2, cur, &cur2);
    free(ids);
    ids = cur2 ? ids_since(s2, cur2, NULL) : NULL;
    is_str(ids, "", "the delta from a delta's cursor, with no write since: empty");
    free(ids);
    free(cur2);
    free(cur);

    /* 9. A purge: a cursor older than the purged tombstone gets must_refetch; a cursor
     * that already saw the tombstone, or taken after the purge, does not. */
    cur = cursor_of(s2);
    pq_exec(admin, "INSERT INTO %s VALUES (8, 'w1', 'to be purged')", table);
    pq_exec(admin, "DELETE FROM %s WHERE id = 8", table);
    pq_exec(admin, "UPDATE %s SET ferry_deleted_at = now() - interval '40 days' WHERE id = 8", table);
    cur2 = cursor_of(s2);
    v = pq_value(admin, "SELECT ferry.purge_tombstones()");
    is_str(v, "1", "purge_tombstones() purged the 40-day-old tombstone");
    free(v);
    v = refetch(s2, cur);
    is_str(v, "true", "a cursor older than the purged tombstone: must_refetch");
    free(v);
    free(cur);
    v = refetch(s2, cur2);
    ok(v == NULL || strcmp(v, "false") == 0,
       "a cursor that already saw the purged tombstone (taken before the purge): no must_refetch");
    free(v);
    free(cur2);
    cur = cursor_of(s2);
    v = refetch(s2, cur);
    ok(v == NULL || strcmp(v, "false") == 0, "a cursor taken after the purge committed: no must_refetch");
    free(v);
    free(cur);

    /* 10. TRUNCATE, likewise. */
    cur = cursor_of(s2);
    pq_exec(admin, "TRUNCATE %s", table);
    v = refetch(s2, cur);
    is_str(v, "true", "a cursor taken before a committed TRUNCATE: must_refetch");
    free(v);
    free(cur);
    cur = cursor_of(s2);
    v = refetch(s2, cur);
    ok(v == NULL || strcmp(v, "false") == 0, "a cursor taken after the TRUNCATE committed: no must_refetch");
    free(v);
    ids = ids_since(s2, NULL, NULL);
    is_str(ids, "", "after TRUNCATE the initial load is empty");
    free(ids);
    free(cur);

    ok(pq_exec(admin, "DROP TABLE %s", table), "cleanup: table dropped");

    PQfinish(s2);
    PQfinish(s1);
    PQfinish(admin);
    return done_testing();
}
