/*
 * test/gateway/repl_stream.c -- gateway/repl streams a real slot: rows written on a normal
 * connection arrive through repl_read, a confirmed LSN survives a reconnect (nothing at or
 * before it is sent again), idle WAL is confirmed only when everything was, and setup
 * failures (unreachable server, missing publication, slot in use, wrong slot kind) give
 * clear errors.
 */
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgoutput.h"
#include "repl.h"
#include "tap.h"

#define MAX_TX 64

/* One transaction as received. */
typedef struct Tx
{
    uint32_t xid;               /* Begin's xid */
    uint64_t final_lsn;         /* Begin's final LSN */
    uint64_t end_lsn;           /* Commit's end LSN */
    uint64_t commit_wal_start;  /* XLogData dataStart of the Commit */
    int ids[16];                /* values of column id of the Inserts/Updates, in order */
    int nids;                   /* entries in ids */
} Tx;

/* What the handler collects. */
typedef struct Ctx
{
    PgoMsg msg;                 /* decoder state */
    PgoRelcache *rc;            /* relations */
    Tx tx[MAX_TX];              /* committed transactions, in order */
    int ntx;                    /* entries in tx */
    Tx cur;                     /* the open transaction */
    int bad;                    /* messages that did not decode / made no sense */
    int kept;                   /* payloads kept with REPL_KEEP */
    const char *kept_payload;   /* the last one, freed by the test */
    int keep_next;              /* return REPL_KEEP for the next message */
    int fail_next;              /* return -1 for the next message */
    uint32_t table_oid;         /* our table: transactions without its rows are not in tx */
    int nall;                   /* every transaction received, ours or not */
    uint64_t first_end;         /* end LSN of the first transaction received, ours or not */
} Ctx;

static PGconn *conn;
static char table[64], other[64], slot[64];

static void __attribute__((format(printf, 1, 2)))
sql(const char *fmt, ...)
{
    char q[2048];
    va_list ap;
    PGresult *res;

    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    res = PQexec(conn, q);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        bail_out("%s: %s", q, PQerrorMessage(conn));
    PQclear(res);
}

/* sql_value runs a query and returns its first value (static buffer; "" for none). */
static const char *__attribute__((format(printf, 1, 2)))
sql_value(const char *fmt, ...)
{
    static char out[256];
    char q[2048];
    va_list ap;
    PGresult *res;

    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    res = PQexec(conn, q);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        bail_out("%s: %s", q, PQerrorMessage(conn));
    snprintf(out, sizeof(out), "%s", PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return out;
}

static uint64_t
slot_confirmed(void)
{
    uint64_t lsn = 0;

    repl_lsn_parse(sql_value("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '%s'",
                             slot), &lsn);
    return lsn;
}

static int
slot_active(void)
{
    return strcmp(sql_value("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", slot), "t") == 0;
}

/* on_data decodes each pgoutput message and records transactions. */
static int
on_data(void *arg, uint64_t wal_start, uint64_t wal_end, const char *payload, size_t len,
        char *err, size_t errlen)
{
    Ctx *c = arg;
    const PgoRelation *rel;
    const PgoTuple *t = NULL;

    (void) wal_end;
    if (c->fail_next)
    {
        c->fail_next = 0;
        snprintf(err, errlen, "test handler refuses this one");
        return -1;
    }
    if (pgo_decode(&c->msg, payload, len, err, errlen) < 0)
    {
        c->bad++;
        diag("%s", err);
        return REPL_DONE;
    }
    switch (c->msg.type)
    {
        case PGO_BEGIN:
            memset(&c->cur, 0, sizeof(c->cur));
            c->cur.xid = c->msg.begin.xid;
            c->cur.final_lsn = c->msg.begin.final_lsn;
            break;
        case PGO_COMMIT:
            c->cur.end_lsn = c->msg.commit.end_lsn;
            c->cur.commit_wal_start = wal_start;
            if (c->msg.commit.commit_lsn != c->cur.final_lsn)
                c->bad++;
            if (c->nall++ == 0)
                c->first_end = c->cur.end_lsn;
            /* publication ferry also carries the extension's catalog and other tables */
            if (c->cur.nids > 0 && c->ntx < MAX_TX)
                c->tx[c->ntx++] = c->cur;
            break;
        case PGO_RELATION:
            if (pgo_relcache_put(c->rc, &c->msg.relation, err, errlen) == NULL)
                c->bad++;
            break;
        case PGO_INSERT:
            if (c->msg.insert.relid == c->table_oid)
                t = &c->msg.insert.newtup;
            rel = pgo_relcache_get(c->rc, c->msg.insert.relid);
            break;
        case PGO_UPDATE:
            if (c->msg.update.relid == c->table_oid)
                t = &c->msg.update.newtup;
            rel = pgo_relcache_get(c->rc, c->msg.update.relid);
            break;
        default:
            break;
    }
    if (t != NULL)
    {
        if (rel == NULL || t->ncols < 1 || t->cols[0].kind != 't' || strcmp(rel->cols[0].name, "id") != 0)
            c->bad++;
        else if (c->cur.nids < 16)
        {
            char v[32];

            snprintf(v, sizeof(v), "%.*s", (int) t->cols[0].len, t->cols[0].data);
            c->cur.ids[c->cur.nids++] = atoi(v);
        }
    }
    if (c->keep_next)
    {
        c->keep_next = 0;
        c->kept++;
        c->kept_payload = payload;
        return REPL_KEEP;
    }
    return REPL_DONE;
}

/*
 * pump polls, reads and ticks until the context holds want transactions (or, with want 0,
 * until timeout_ms passes). Returns repl_read's last result (-1 on failure).
 */
static int
pump(Repl *r, Ctx *c, int want, int timeout_ms, char *err, size_t errlen)
{
    int64_t end = repl_now_ms() + timeout_ms;

    while (repl_now_ms() < end && (want == 0 || c->ntx < want))
    {
        struct pollfd pfd = {repl_socket(r), POLLIN | (repl_wants_write(r) ? POLLOUT : 0), 0};

        poll(&pfd, 1, 50);
        if (repl_read(r, on_data, c, err, errlen) < 0)
            return -1;
        if (repl_tick(r, repl_now_ms(), err, errlen) < 0)
            return -1;
    }
    return 0;
}

static uint32_t table_oid;

static void
ctx_init(Ctx *c)
{
    memset(c, 0, sizeof(*c));
    c->table_oid = table_oid;
    pgo_msg_init(&c->msg);
    c->rc = pgo_relcache_new();
}

static void
ctx_free(Ctx *c)
{
    pgo_msg_free(&c->msg);
    pgo_relcache_free(c->rc);
}

/* open_retry opens the slot, retrying while the previous walsender still holds it. */
static Repl *
open_retry(const ReplOptions *o, ReplErrKind *kind, char *err, size_t errlen)
{
    Repl *r = NULL;

    for (int i = 0; i < 100; i++)
    {
        r = repl_open_opts(o, kind, err, errlen);
        if (r != NULL || *kind != REPL_ERR_SLOT_IN_USE)
            break;
        usleep(100 * 1000);
    }
    return r;
}

static void
wait_slot_inactive(void)
{
    for (int i = 0; i < 100 && slot_active(); i++)
        usleep(100 * 1000);
}

int
main(void)
{
    char err[512], lsn[REPL_LSN_BUFLEN], lsn2[REPL_LSN_BUFLEN];
    ReplOptions o;
    ReplErrKind kind;
    Repl *r, *r2;
    Ctx c;
    uint64_t t2_end, t3_final, t4_end, v;

    conn = PQconnectdb("");
    if (PQstatus(conn) != CONNECTION_OK)
        bail_out("cannot connect: %s", PQerrorMessage(conn));
    snprintf(table, sizeof(table), "repl_t_%d", (int) getpid());
    snprintf(other, sizeof(other), "repl_other_%d", (int) getpid());
    snprintf(slot, sizeof(slot), "repl_slot_%d", (int) getpid());

    /* ---- LSN helpers ---- */
    ok(repl_lsn_parse("0/0", &v) == 0 && v == 0, "parse 0/0");
    ok(repl_lsn_parse("16/B374D848", &v) == 0 && v == UINT64_C(0x16B374D848), "parse 16/B374D848");
    ok(repl_lsn_parse("ffffffff/FFFFFFFF", &v) == 0 && v == UINT64_MAX, "parse the largest LSN");
    {
        const char *bad[] = {"", "1", "/1", "1/", "G/1", "123456789/0", "1/2x", " 1/2", "1//2", "-1/2"};
        int all = 1;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            if (repl_lsn_parse(bad[i], &v) == 0)
            {
                diag("accepted '%s'", bad[i]);
                all = 0;
            }
        ok(all, "invalid LSNs are refused");
    }
    is_str(repl_lsn_format(UINT64_C(0x16B374D848), lsn), "16/B374D848", "format 16/B374D848");
    is_str(repl_lsn_format(0, lsn), "0/0", "format 0/0");
    ok(repl_lsn_parse(repl_lsn_format(UINT64_MAX, lsn), &v) == 0 && v == UINT64_MAX
       && strlen(lsn) == REPL_LSN_BUFLEN - 1, "the largest LSN round-trips and fills the buffer");

    /* ---- setup failures ---- */
    r = repl_open("host=/nonexistent-dir port=1", "repl_x", "ferry", err, sizeof(err));
    ok(r == NULL && strstr(err, "cannot connect to PostgreSQL") != NULL,
       "unreachable server: %s", err);
    repl_options_init(&o);
    o.conninfo = "host=/nonexistent-dir port=1";
    o.slot = "repl_x";
    repl_open_opts(&o, &kind, err, sizeof(err));
    is_int(kind, REPL_ERR_CONNECT, "... is a connect error (retry later)");
    o.conninfo = "dbname=ferry_test nosuchoption=1";
    ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_CONFIG
       && strstr(err, "invalid conninfo") != NULL && strstr(err, "nosuchoption") != NULL,
       "malformed conninfo: %s", err);
    o.conninfo = "postgresql://[::1";
    ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_CONFIG
       && strstr(err, "invalid conninfo") != NULL, "malformed URI: %s", err);
    o.conninfo = "port=notaport";
    ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_CONFIG
       && strstr(err, "invalid conninfo") != NULL, "invalid port: %s", err);
    o.conninfo = "dbname=ferry_no_such_db";
    ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_CONFIG
       && strstr(err, "ferry_no_such_db") != NULL, "missing database: %s", err);
    o.conninfo = "";
    o.slot = "Bad-Name";
    ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_USAGE
       && strstr(err, "invalid replication slot name") != NULL, "bad slot name: %s", err);
    o.slot = slot;
    o.publication = "ferry_no_such_pub";
    ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_CONFIG
       && strstr(err, "publication \"ferry_no_such_pub\" does not exist") != NULL,
       "missing publication: %s", err);
    o.publication = "ferry";
    o.no_create_slot = 1;
    ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_CONFIG
       && strstr(err, "does not exist") != NULL, "missing slot with no_create_slot: %s", err);
    o.no_create_slot = 0;
    ok(strcmp(sql_value("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'", slot), "0") == 0,
       "failed setups created no slot");
    {
        char phys[80];

        snprintf(phys, sizeof(phys), "%s_phys", slot);
        sql("SELECT pg_create_physical_replication_slot('%s')", phys);
        o.slot = phys;
        ok(repl_open_opts(&o, &kind, err, sizeof(err)) == NULL && kind == REPL_ERR_CONFIG
           && strstr(err, "physical") != NULL, "a physical slot of that name: %s", err);
        sql("SELECT pg_drop_replication_slot('%s')", phys);
        o.slot = slot;
    }

    /* ---- the table and the first connection ---- */
    sql("CREATE TABLE %s (id int PRIMARY KEY, ws text NOT NULL, v text)", table);
    sql("SELECT ferry.enable_sync('%s', 'ws')", table);
    table_oid = (uint32_t) strtoul(sql_value("SELECT '%s'::regclass::oid", table), NULL, 10);
    sql("CREATE TABLE %s (x int)", other);     /* not in the publication */

    ctx_init(&c);
    o.status_interval_ms = 100;
    r = open_retry(&o, &kind, err, sizeof(err));
    if (!ok(r != NULL, "repl_open streams slot %s", slot))
        bail_out("repl_open: %s", err);
    ok(repl_slot_created(r), "the slot was created");
    ok(repl_socket(r) >= 0, "it has a socket");
    ok(strlen(repl_system_id(r)) > 5 && repl_timeline(r) == 1, "IDENTIFY_SYSTEM: system %s, timeline %d",
       repl_system_id(r), repl_timeline(r));
    ok(repl_confirmed_lsn(r) > 0, "the new slot's consistent point is the confirmed start (%s)",
       repl_lsn_format(repl_confirmed_lsn(r), lsn));

    /* a second client on the same slot */
    r2 = repl_open_opts(&o, &kind, err, sizeof(err));
    ok(r2 == NULL && kind == REPL_ERR_SLOT_IN_USE && strstr(err, "in use by another process") != NULL,
       "a second client on the slot: %s", err);

    /* T1..T3 */
    sql("INSERT INTO %s VALUES (1, 'w', 'one')", table);
    sql("INSERT INTO %s VALUES (2, 'w', 'two')", table);
    sql("BEGIN");
    sql("INSERT INTO %s VALUES (3, 'w', 'three')", table);
    sql("UPDATE %s SET v = 'uno' WHERE id = 1", table);
    sql("COMMIT");
    ok(pump(r, &c, 3, 10000, err, sizeof(err)) == 0, "streaming works: %s", c.ntx >= 3 ? "" : err);
    is_int(c.ntx, 3, "three transactions arrive");
    is_int(c.bad, 0, "every message decodes and makes sense");
    ok(c.ntx == 3 && c.tx[0].nids == 1 && c.tx[0].ids[0] == 1 && c.tx[1].nids == 1 && c.tx[1].ids[0] == 2
       && c.tx[2].nids == 2 && c.tx[2].ids[0] == 3 && c.tx[2].ids[1] == 1,
       "with the right rows, in commit order");
    ok(c.ntx == 3 && c.tx[0].commit_wal_start == c.tx[0].end_lsn && c.tx[2].commit_wal_start == c.tx[2].end_lsn,
       "a Commit's XLogData starts at its end LSN");
    ok(repl_received_lsn(r) >= c.tx[2].end_lsn, "received position covers the last commit");
    if (c.ntx < 3)
        bail_out("no stream to test further");
    t2_end = c.tx[1].end_lsn;
    t3_final = c.tx[2].final_lsn;

    /* confirm T2 only */
    repl_confirm(r, t2_end);
    repl_confirm(r, c.tx[0].end_lsn);       /* lower: ignored */
    is_int(repl_confirmed_lsn(r), t2_end, "repl_confirm never goes back");
    ok(repl_send_status(r, err, sizeof(err)) == 0, "status update sent");
    for (int i = 0; i < 50 && slot_confirmed() < t2_end; i++)
    {
        pump(r, &c, 0, 100, err, sizeof(err));
    }
    ok(slot_confirmed() >= t2_end && slot_confirmed() <= t3_final,
       "the slot's confirmed_flush_lsn is the confirmed T2 end (%s), not past T3 (%s): %s",
       repl_lsn_format(t2_end, lsn), repl_lsn_format(t3_final, lsn2), sql_value("SELECT confirmed_flush_lsn "
       "FROM pg_replication_slots WHERE slot_name = '%s'", slot));

    /* a handler that keeps the payload; then one that fails */
    c.keep_next = 1;
    sql("INSERT INTO %s VALUES (4, 'w', 'four')", table);
    pump(r, &c, 4, 10000, err, sizeof(err));
    ok(c.kept == 1 && c.kept_payload != NULL && c.kept_payload[0] == 'B', "a kept payload outlives repl_read");
    repl_payload_free(c.kept_payload);
    c.fail_next = 1;
    sql("INSERT INTO %s VALUES (5, 'w', 'five')", table);
    {
        int rc = pump(r, &c, 5, 5000, err, sizeof(err));

        ok(rc < 0 && repl_error_kind(r) == REPL_ERR_HANDLER && strstr(err, "refuses") != NULL,
           "a failing handler stops repl_read: %s", err);
        ok(repl_read(r, on_data, &c, err, sizeof(err)) < 0, "the Repl is unusable afterwards");
    }
    repl_close(r);

    /* ---- reconnect: resumes after the confirmed LSN ---- */
    wait_slot_inactive();
    ctx_free(&c);
    ctx_init(&c);
    r = open_retry(&o, &kind, err, sizeof(err));
    if (!ok(r != NULL, "reopened the slot"))
        bail_out("repl_open: %s", err);
    ok(!repl_slot_created(r), "the existing slot is reused");
    ok(repl_confirmed_lsn(r) >= t2_end, "starts from the slot's confirmed position");
    pump(r, &c, 3, 10000, err, sizeof(err));
    ok(c.nall > 0 && c.first_end > t2_end,
       "no transaction at or before the confirmed LSN is sent again (first end LSN %s > %s)",
       repl_lsn_format(c.first_end, lsn), repl_lsn_format(t2_end, lsn2));
    ok(c.ntx >= 3 && c.tx[0].ids[0] == 3 && c.tx[1].ids[0] == 4 && c.tx[2].ids[0] == 5,
       "the stream restarts with T3 (ids 3, 4, 5 follow)");
    ok(c.ntx >= 1 && c.tx[0].final_lsn > t2_end, "its first Begin is after the confirmed LSN");
    is_int(c.bad, 0, "Relation messages are sent again after the reconnect");
    t4_end = c.ntx >= 3 ? c.tx[2].end_lsn : 0;
    repl_confirm(r, t4_end);
    repl_close(r);                              /* sends the last status itself */
    wait_slot_inactive();
    ok(slot_confirmed() >= t4_end, "repl_close sent the last confirmed LSN");

    /* ---- idle advance: WAL with nothing for us is confirmed once everything was ---- */
    ctx_free(&c);
    ctx_init(&c);
    o.no_idle_advance = 1;
    r = open_retry(&o, &kind, err, sizeof(err));
    if (!ok(r != NULL, "reopened with no_idle_advance"))
        bail_out("repl_open: %s", err);
    pump(r, &c, 0, 300, err, sizeof(err));
    is_int(c.nall, 0, "nothing is sent again after a full confirm");
    {
        uint64_t before = slot_confirmed(), target;

        sql("INSERT INTO %s SELECT generate_series(1, 100)", other);
        repl_lsn_parse(sql_value("SELECT pg_current_wal_lsn()"), &target);
        for (int i = 0; i < 100 && repl_server_wal_end(r) < target; i++)
            pump(r, &c, 0, 100, err, sizeof(err));
        pump(r, &c, 0, 500, err, sizeof(err)); /* status updates at 100 ms would have gone out */
        ok(slot_confirmed() == before && repl_server_wal_end(r) >= target,
           "with no_idle_advance the slot stays at the confirmed LSN though keepalives say %s",
           repl_lsn_format(repl_server_wal_end(r), lsn));
        repl_close(r);
        wait_slot_inactive();

        ctx_free(&c);
        ctx_init(&c);
        o.no_idle_advance = 0;
        r = open_retry(&o, &kind, err, sizeof(err));
        if (!ok(r != NULL, "reopened with idle advance"))
            bail_out("repl_open: %s", err);
        sql("INSERT INTO %s SELECT generate_series(1, 100)", other);
        repl_lsn_parse(sql_value("SELECT pg_current_wal_lsn()"), &target);
        for (int i = 0; i < 100 && slot_confirmed() < target; i++)
            pump(r, &c, 0, 100, err, sizeof(err));
        ok(slot_confirmed() >= target, "by default the slot advances past unrelated WAL (%s >= %s)",
           repl_lsn_format(slot_confirmed(), lsn), repl_lsn_format(target, lsn2));

        /* but never past a transaction for us that is not confirmed */
        sql("INSERT INTO %s VALUES (6, 'w', 'six')", table);
        pump(r, &c, 1, 10000, err, sizeof(err));
        sql("INSERT INTO %s SELECT generate_series(1, 100)", other);
        pump(r, &c, 0, 1500, err, sizeof(err));
        ok(c.ntx == 1 && slot_confirmed() < c.tx[0].end_lsn,
           "an unconfirmed transaction holds the slot (%s < %s)", repl_lsn_format(slot_confirmed(), lsn),
           repl_lsn_format(c.ntx ? c.tx[0].end_lsn : 0, lsn2));
        repl_confirm(r, c.ntx ? c.tx[0].end_lsn : 0);
        sql("INSERT INTO %s SELECT generate_series(1, 100)", other);
        repl_lsn_parse(sql_value("SELECT pg_current_wal_lsn()"), &target);
        for (int i = 0; i < 100 && slot_confirmed() < target; i++)
            pump(r, &c, 0, 100, err, sizeof(err));
        ok(slot_confirmed() >= target, "once it is confirmed, idle WAL after it is confirmed too");
    }
    repl_close(r);
    ctx_free(&c);

    /* ---- clean up ---- */
    wait_slot_inactive();
    sql("SELECT pg_drop_replication_slot('%s')", slot);
    sql("DROP TABLE %s, %s", table, other);
    PQfinish(conn);
    return done_testing();
}
