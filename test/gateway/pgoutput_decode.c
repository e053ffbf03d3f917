/*
 * test/gateway/pgoutput_decode.c -- gateway/pgoutput decodes real pgoutput messages exactly
 * and survives every truncation and random corruption of them.
 *
 * A synced table (ferry.enable_sync: REPLICA IDENTITY FULL, publication ferry) gets
 * inserts, updates (one leaving a TOASTed value untouched), a soft and a physical delete,
 * an ALTER TABLE ADD COLUMN, a TRUNCATE, a replication origin and a logical message; the
 * messages come from pg_logical_slot_get_binary_changes(proto_version 1) and are decoded,
 * rendered to text and compared with what they must say.
 *
 * FERRY_PGO_CORPUS=DIR also writes each message to DIR (the fuzzer's seed corpus).
 */
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgoutput.h"
#include "tap.h"

/* One row of pg_logical_slot_get_binary_changes. */
typedef struct Change
{
    uint64_t lsn;               /* the row's lsn column */
    uint32_t xid;               /* the row's xid column */
    unsigned char *data;        /* the message (malloc'd) */
    size_t len;                 /* its length */
} Change;

static PGconn *conn;
static char table[64], slot[64], enumtype[64], origin[64];

/* ---- helpers ---------------------------------------------------------------------- */

static void __attribute__((format(printf, 1, 2)))
sql(const char *fmt, ...)
{
    char q[4096];
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

static uint64_t
be64(const char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | (unsigned char) p[i];
    return v;
}

/* fetch consumes the slot's pending changes into *out; returns how many. */
static int
fetch(Change **out)
{
    char q[512];
    PGresult *res;
    int n;

    snprintf(q, sizeof(q), "SELECT lsn, xid, data FROM pg_logical_slot_get_binary_changes('%s', "
             "NULL, NULL, 'proto_version', '1', 'publication_names', 'ferry', 'messages', 'true')",
             slot);
    res = PQexecParams(conn, q, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        bail_out("fetching changes: %s", PQerrorMessage(conn));
    n = PQntuples(res);
    *out = calloc((size_t) n + 1, sizeof(Change));
    for (int i = 0; i < n; i++)
    {
        Change *c = &(*out)[i];
        const char *x = PQgetvalue(res, i, 1);

        c->lsn = be64(PQgetvalue(res, i, 0));
        c->xid = ((uint32_t) (unsigned char) x[0] << 24) | ((uint32_t) (unsigned char) x[1] << 16)
            | ((uint32_t) (unsigned char) x[2] << 8) | (unsigned char) x[3];
        c->len = (size_t) PQgetlength(res, i, 2);
        c->data = malloc(c->len ? c->len : 1);
        memcpy(c->data, PQgetvalue(res, i, 2), c->len);
    }
    PQclear(res);
    return n;
}

/* Str: a growing string. */
typedef struct Str
{
    char *p;                    /* text, NUL-terminated */
    size_t len;                 /* length */
    size_t cap;                 /* allocated */
} Str;

static void __attribute__((format(printf, 2, 3)))
add(Str *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (s->len + (size_t) n + 1 > s->cap)
    {
        s->cap = (s->len + (size_t) n + 1) * 2;
        s->p = realloc(s->p, s->cap);
    }
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t) n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t) n;
}

/* Columns whose values change from run to run: rendered as "*". */
static int
volatile_col(const char *name)
{
    return strcmp(name, "ferry_updated_at") == 0 || strcmp(name, "ferry_xid") == 0
        || strcmp(name, "ferry_clock") == 0 || strcmp(name, "ferry_deleted_at") == 0;
}

static void
render_tuple(Str *s, const PgoTuple *t, const PgoRelation *rel)
{
    add(s, "(");
    for (int i = 0; i < t->ncols; i++)
    {
        const PgoDatum *d = &t->cols[i];

        if (i > 0)
            add(s, "|");
        if (rel != NULL && i < rel->ncols && volatile_col(rel->cols[i].name) && d->kind == 't')
            add(s, "*");
        else if (d->kind == 'n')
            add(s, "NULL");
        else if (d->kind == 'u')
            add(s, "<unchanged>");
        else if (d->kind == 'b')
            add(s, "<binary %u>", d->len);
        else if (d->len > 60)
            add(s, "<text %u>", d->len);
        else
            add(s, "%.*s", (int) d->len, d->data);
    }
    add(s, ")");
}

/* render writes a message as one line; relations come from rc (NULL: relids only). */
static char *
render(const PgoMsg *m, const PgoRelcache *rc)
{
    Str s = {NULL, 0, 0};
    const PgoRelation *rel = NULL;

    add(&s, "%c", (char) m->type);
    switch (m->type)
    {
        case PGO_BEGIN:
        case PGO_COMMIT:
            break;
        case PGO_ORIGIN:
            add(&s, " %s", m->origin.name);
            break;
        case PGO_RELATION:
            add(&s, " %s.%s %c", m->relation.nspname, m->relation.relname, m->relation.replident);
            for (int i = 0; i < m->relation.ncols; i++)
                add(&s, " %s:%u%s%s", m->relation.cols[i].name, m->relation.cols[i].type_oid,
                    m->relation.cols[i].typmod >= 0 ? ":m" : "",
                    m->relation.cols[i].flags & PGO_COLUMN_KEY ? ":k" : "");
            break;
        case PGO_TYPE:
            add(&s, " %s.%s", m->type_info.nspname, m->type_info.name);
            break;
        case PGO_INSERT:
            rel = pgo_relcache_get(rc, m->insert.relid);
            add(&s, " %s N", rel ? rel->relname : "?");
            render_tuple(&s, &m->insert.newtup, rel);
            break;
        case PGO_UPDATE:
            rel = pgo_relcache_get(rc, m->update.relid);
            add(&s, " %s", rel ? rel->relname : "?");
            if (m->update.old_kind)
            {
                add(&s, " %c", m->update.old_kind);
                render_tuple(&s, &m->update.oldtup, rel);
            }
            add(&s, " N");
            render_tuple(&s, &m->update.newtup, rel);
            break;
        case PGO_DELETE:
            rel = pgo_relcache_get(rc, m->delete.relid);
            add(&s, " %s %c", rel ? rel->relname : "?", m->delete.old_kind);
            render_tuple(&s, &m->delete.oldtup, rel);
            break;
        case PGO_TRUNCATE:
            add(&s, " options=%u", m->truncate.options);
            for (uint32_t i = 0; i < m->truncate.nrels; i++)
            {
                rel = pgo_relcache_get(rc, m->truncate.relids[i]);
                add(&s, " %s", rel ? rel->relname : "?");
            }
            break;
        case PGO_MESSAGE:
            add(&s, " %s flags=%u %.*s", m->message.prefix, m->message.flags,
                (int) m->message.len, m->message.content);
            break;
    }
    return s.p;
}

/* subst replaces every @T (table), @E (enum type) and @O (origin) in pattern. */
static char *
subst(const char *pattern)
{
    Str s = {NULL, 0, 0};

    add(&s, "%s", "");
    for (const char *p = pattern; *p; p++)
    {
        if (p[0] == '@' && p[1] == 'T')
            add(&s, "%s", table), p++;
        else if (p[0] == '@' && p[1] == 'E')
            add(&s, "%s", enumtype), p++;
        else if (p[0] == '@' && p[1] == 'O')
            add(&s, "%s", origin), p++;
        else
            add(&s, "%c", *p);
    }
    return s.p;
}

/* the value of column name in tuple t of relation rel, as a C string (static buffer) */
static const char *
colval(const PgoRelation *rel, const PgoTuple *t, const char *name)
{
    static char buf[256];

    for (int i = 0; rel && i < rel->ncols && i < t->ncols; i++)
        if (strcmp(rel->cols[i].name, name) == 0)
        {
            if (t->cols[i].kind != 't')
                return t->cols[i].kind == 'n' ? "NULL" : "<not text>";
            snprintf(buf, sizeof(buf), "%.*s", (int) t->cols[i].len, t->cols[i].data);
            return buf;
        }
    return "<no such column>";
}

static const PgoDatum *
coldatum(const PgoRelation *rel, const PgoTuple *t, const char *name)
{
    for (int i = 0; rel && i < rel->ncols && i < t->ncols; i++)
        if (strcmp(rel->cols[i].name, name) == 0)
            return &t->cols[i];
    return NULL;
}

/* ---- the expected stream ---------------------------------------------------------- */

/* The typed columns, as the Relation message describes them (oid:typmod:key). */
#define COLS "id:20:k ws:25:k flag:16:k n:1700:k tags:1009:k doc:3802:k at:1184:k " \
    "mood:%u:k big:25:k note:25:k ferry_version:20:k ferry_updated_at:1184:k " \
    "ferry_deleted_at:1184:k ferry_xid:5069:k ferry_clock:3802:k"
#define ROW1 "1|w1|t|12.50|{a,\"b c\",NULL}|{\"k\": [1, 2], \"s\": \"x|y\"}|2024-05-01 10:00:00+00|happy|NULL|hello"
#define ROW1B "1|w1|t|13.50|{a,\"b c\",NULL,d}|{\"k\": [1, 2], \"s\": \"x|y\", \"x\": null}|2024-05-01 10:00:00+00|happy|NULL|hello"
#define ROW2 "2|w1|f|-0.000001|{}|[]|1999-12-31 23:59:59.5+00|sad|<text %d>|"
#define ROW2B "2|w1|f|-0.000001|{}|[]|1999-12-31 23:59:59.5+00|sad|<unchanged>|changed"
#define ROW3 "3|w2|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL"

int
main(void)
{
    Change *ch;
    int n, nexp, big_len = 0;
    PgoMsg m;
    PgoRelcache *rc;
    char err[512], q[256];
    char **got;
    unsigned enum_oid = 0, table_oid = 0;
    int *ours, nours = 0;
    const char *corpus = getenv("FERRY_PGO_CORPUS");

    conn = PQconnectdb("");
    if (PQstatus(conn) != CONNECTION_OK)
        bail_out("cannot connect: %s", PQerrorMessage(conn));
    snprintf(table, sizeof(table), "pgo_dec_%d", (int) getpid());
    snprintf(slot, sizeof(slot), "pgo_dec_slot_%d", (int) getpid());
    snprintf(enumtype, sizeof(enumtype), "pgo_mood_%d", (int) getpid());
    snprintf(origin, sizeof(origin), "pgo_origin_%d", (int) getpid());

    /* ---- schema and slot ---- */
    sql("SET TimeZone = 'UTC'");
    sql("SET extra_float_digits = 0");
    sql("CREATE TYPE %s AS ENUM ('happy', 'sad')", enumtype);
    sql("CREATE TABLE %s (id int8 PRIMARY KEY, ws text NOT NULL, flag bool, n numeric, "
        "tags text[], doc jsonb, at timestamptz, mood %s, big text, note text)", table, enumtype);
    sql("ALTER TABLE %s ALTER COLUMN big SET STORAGE EXTERNAL", table);
    sql("SELECT ferry.enable_sync('%s', 'ws')", table);
    {
        PGresult *res;

        snprintf(q, sizeof(q), "SELECT '%s'::regtype::oid, '%s'::regclass::oid", enumtype, table);
        res = PQexec(conn, q);
        enum_oid = (unsigned) strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        table_oid = (unsigned) strtoul(PQgetvalue(res, 0, 1), NULL, 10);
        PQclear(res);
    }
    sql("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", slot);

    /* ---- the changes (one transaction each unless said) ---- */
    /* 1: two inserts, one with a big value stored out of line (STORAGE EXTERNAL) */
    sql("BEGIN");
    sql("INSERT INTO %s (id, ws, flag, n, tags, doc, at, mood, note) VALUES (1, 'w1', true, 12.50, "
        "'{a,\"b c\",NULL}', '{\"k\": [1, 2], \"s\": \"x|y\"}', '2024-05-01 10:00:00+00', 'happy', 'hello')",
        table);
    sql("INSERT INTO %s (id, ws, flag, n, tags, doc, at, mood, big, note) VALUES (2, 'w1', false, "
        "-0.000001, '{}', '[]', '1999-12-31 23:59:59.5+00', 'sad', "
        "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i), '')", table);
    sql("COMMIT");
    big_len = 300 * 32;
    /* 2: update without touching big: 'u' in the new tuple, full value in the old */
    sql("UPDATE %s SET note = 'changed' WHERE id = 2", table);
    /* 3: update of array, numeric, jsonb */
    sql("UPDATE %s SET n = n + 1, tags = array_append(tags, 'd'), doc = doc || '{\"x\": null}' "
        "WHERE id = 1", table);
    /* 4: DELETE of a synced row is a soft delete: an Update setting ferry_deleted_at */
    sql("DELETE FROM %s WHERE id = 1", table);
    /* 5: a physical delete (triggers off in replica role), and a logical message */
    sql("BEGIN");
    sql("SET LOCAL session_replication_role = replica");
    sql("DELETE FROM %s WHERE id = 1", table);
    sql("SELECT pg_logical_emit_message(true, 'ferry_test', 'in a transaction')");
    sql("COMMIT");
    /* 6: a new column: a new Relation message before the next change */
    sql("ALTER TABLE %s ADD COLUMN extra varchar(5) DEFAULT 'seven'", table);
    sql("INSERT INTO %s (id, ws) VALUES (3, 'w2')", table);
    /* 7: from a replication origin */
    sql("SELECT pg_replication_origin_create('%s')", origin);
    sql("SELECT pg_replication_origin_session_setup('%s')", origin);
    sql("BEGIN");
    sql("SELECT pg_replication_origin_xact_setup('0/ABCDEF', now())");
    sql("UPDATE %s SET note = 'from origin' WHERE id = 3", table);
    sql("COMMIT");
    sql("SELECT pg_replication_origin_session_reset()");
    sql("SELECT pg_replication_origin_drop('%s')", origin);
    /* 8: truncate */
    sql("TRUNCATE %s RESTART IDENTITY", table);
    /* 9: a non-transactional message */
    sql("SELECT pg_logical_emit_message(false, 'ferry_test', 'outside')");
    /* the SQL interface decodes only flushed WAL: a committed DDL flushes it */
    sql("CREATE TABLE %s_flush (x int)", table);

    n = fetch(&ch);
    note("%d messages", n);

    /* ---- decode and render everything ---- */
    char rel_line[2048];
    snprintf(rel_line, sizeof(rel_line), "R public.@T f " COLS, enum_oid);
    char rel_line2[2100];
    snprintf(rel_line2, sizeof(rel_line2), "%s extra:1043:m:k", rel_line);
    char row2[512];
    snprintf(row2, sizeof(row2), ROW2, big_len);
    char buf[8][2048];
    snprintf(buf[0], sizeof(buf[0]), "I @T N(" ROW1 "|1|*|NULL|*|*)");
    snprintf(buf[1], sizeof(buf[1]), "I @T N(%s|1|*|NULL|*|*)", row2);
    snprintf(buf[2], sizeof(buf[2]), "U @T O(%s|1|*|NULL|*|*) N(" ROW2B "|2|*|NULL|*|*)", row2);
    snprintf(buf[3], sizeof(buf[3]), "U @T O(" ROW1 "|1|*|NULL|*|*) N(" ROW1B "|2|*|NULL|*|*)");
    snprintf(buf[4], sizeof(buf[4]), "U @T O(" ROW1B "|2|*|NULL|*|*) N(" ROW1B "|3|*|*|*|*)");
    snprintf(buf[5], sizeof(buf[5]), "D @T O(" ROW1B "|3|*|*|*|*)");
    snprintf(buf[6], sizeof(buf[6]), "I @T N(" ROW3 "|1|*|NULL|*|*|seven)");
    snprintf(buf[7], sizeof(buf[7]), "U @T O(" ROW3 "|1|*|NULL|*|*|seven) N(3|w2|NULL|NULL|NULL|NULL|NULL|NULL|NULL|from origin|2|*|NULL|*|*|seven)");
    const char *expect[] = {
        "B", "Y public.@E", rel_line, buf[0], buf[1], "C",
        "B", buf[2], "C",
        "B", buf[3], "C",
        "B", buf[4], "C",
        "B", buf[5], "M ferry_test flags=1 in a transaction", "C",
        "B", "Y public.@E", rel_line2, buf[6], "C",     /* ALTER TABLE: described again */
        "B", "O @O", buf[7], "C",
        "B", "Y public.@E", rel_line2, "T options=2 @T", "C", /* so does TRUNCATE */
        "M ferry_test flags=0 outside",
    };
    nexp = (int) (sizeof(expect) / sizeof(expect[0]));

    /*
     * Publication ferry also carries other tables (the extension's own catalog, other
     * tests' tables): keep the messages about ours -- its Relation, its enum's Type, its
     * changes -- and the transactions holding any of them, with their Origin and Message.
     */
    pgo_msg_init(&m);
    rc = pgo_relcache_new();
    got = calloc((size_t) n + 1, sizeof(char *));
    ours = calloc((size_t) n + 1, sizeof(int));
    int decoded = 0, begin_at = -1, keep_tx = 0;
    uint32_t relids_seen[64];
    int nrelids = 0;
    for (int i = 0; i < n; i++)
    {
        int mine = 1;

        if (pgo_decode(&m, ch[i].data, ch[i].len, err, sizeof(err)) < 0)
        {
            diag("message %d: %s", i, err);
            continue;
        }
        decoded++;
        if (m.type == PGO_RELATION)
        {
            int seen = 0;

            if (pgo_relcache_put(rc, &m.relation, err, sizeof(err)) == NULL)
                diag("relcache: %s", err);
            for (int k = 0; k < nrelids; k++)
                seen |= relids_seen[k] == m.relation.relid;
            if (!seen && nrelids < 64)
                relids_seen[nrelids++] = m.relation.relid;
        }
        got[i] = render(&m, rc);
        note("%3d %s", i, got[i]);
        switch (m.type)
        {
            case PGO_RELATION: mine = m.relation.relid == table_oid; break;
            case PGO_TYPE: mine = m.type_info.oid == enum_oid; break;
            case PGO_INSERT: mine = m.insert.relid == table_oid; break;
            case PGO_UPDATE: mine = m.update.relid == table_oid; break;
            case PGO_DELETE: mine = m.delete.relid == table_oid; break;
            case PGO_TRUNCATE:
                mine = 0;
                for (uint32_t k = 0; k < m.truncate.nrels; k++)
                    mine |= m.truncate.relids[k] == table_oid;
                break;
            default: break;
        }
        if (m.type == PGO_BEGIN)
        {
            begin_at = nours;       /* dropped again at its Commit if nothing was ours */
            keep_tx = 0;
        }
        else if (m.type == PGO_COMMIT)
        {
            if (!keep_tx && begin_at >= 0)
            {
                nours = begin_at;
                begin_at = -1;
                continue;
            }
            begin_at = -1;
        }
        else if (mine && m.type != PGO_ORIGIN && m.type != PGO_MESSAGE)
            keep_tx = 1;
        else if (m.type == PGO_MESSAGE && begin_at >= 0)
            keep_tx = 1;
        if (mine)
            ours[nours++] = i;
    }
    is_int(decoded, n, "every one of the %d messages decodes", n);
    is_int(nours, nexp, "as many messages about the table as expected (of %d in all)", n);
    for (int i = 0; i < nexp; i++)
    {
        char *want = subst(expect[i]);

        is_str(i < nours ? got[ours[i]] : NULL, want, "message %d: %.40s", i, want);
        free(want);
    }
    if (nours != nexp)
        bail_out("the stream is not what this test expects: see the messages above");

    /* ---- details the rendering does not show ---- */
    {
        uint64_t final_lsn = 0;
        int64_t begin_time = 0;
        uint32_t xid = 0;
        int ntx = 0, xids_ok = 1, commits_ok = 1, ferry_xid_ok = 1, lsn_order_ok = 1;
        uint64_t last_end = 0;
        const PgoRelation *rel;

        for (int i = 0; i < n; i++)
        {
            if (pgo_decode(&m, ch[i].data, ch[i].len, err, sizeof(err)) < 0)
                continue;
            if (m.type == PGO_BEGIN)
            {
                final_lsn = m.begin.final_lsn;
                begin_time = m.begin.commit_time;
                xid = m.begin.xid;
                for (int k = 0; k < nours; k++)
                    ntx += ours[k] == i;
                if (ch[i].xid != xid)
                    xids_ok = 0;
            }
            else if (m.type == PGO_COMMIT)
            {
                if (m.commit.commit_lsn != final_lsn || m.commit.commit_time != begin_time
                    || m.commit.end_lsn <= m.commit.commit_lsn || m.commit.flags != 0
                    || ch[i].xid != xid || m.commit.end_lsn <= last_end)
                    commits_ok = 0;
                last_end = m.commit.end_lsn;
                xid = 0;
            }
            else if (xid != 0 && ch[i].xid != xid)
                xids_ok = 0;
            if (m.type == PGO_INSERT || m.type == PGO_UPDATE)
            {
                const PgoTuple *t = m.type == PGO_INSERT ? &m.insert.newtup : &m.update.newtup;
                char want[32];

                rel = pgo_relcache_get(rc, m.type == PGO_INSERT ? m.insert.relid : m.update.relid);
                snprintf(want, sizeof(want), "%u", xid);
                if (rel != NULL && rel->relid == table_oid && strcmp(colval(rel, t, "ferry_xid"), want) != 0)
                    ferry_xid_ok = 0;
            }
            if (i > 0 && ch[i].lsn < ch[i - 1].lsn)
                lsn_order_ok = 0;
        }
        is_int(ntx, 8, "8 transactions touch the table");
        ok(xids_ok, "every message of a transaction has the Begin's xid");
        ok(commits_ok, "each Commit has its Begin's final LSN and timestamp, end_lsn after it, flags 0, "
           "and end LSNs increase");
        ok(ferry_xid_ok, "ferry_xid of every new row is its transaction's xid");
        ok(lsn_order_ok, "messages come in LSN order");

        /* Begin's commit time is recent (microseconds since 2000) */
        pgo_decode(&m, ch[ours[0]].data, ch[ours[0]].len, err, sizeof(err));
        ok(llabs(pgo_time_to_unix_us(m.begin.commit_time) / 1000000 - (long long) time(NULL)) < 600,
           "commit timestamp converts to about now (Unix time)");

        /* the unchanged TOAST value: full value in the old tuple, 'u' in the new */
        ok(pgo_decode(&m, ch[ours[7]].data, ch[ours[7]].len, err, sizeof(err)) == 0 && m.type == PGO_UPDATE,
           "message 7 is the update of the TOASTed row");
        rel = pgo_relcache_get(rc, m.update.relid);
        {
            const PgoDatum *o = coldatum(rel, &m.update.oldtup, "big");
            const PgoDatum *nw = coldatum(rel, &m.update.newtup, "big");
            PGresult *res = PQexec(conn, "SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i");

            is_int(m.update.old_kind, 'O', "REPLICA IDENTITY FULL sends the old row ('O')");
            ok(o != NULL && o->kind == 't' && o->len == (uint32_t) PQgetlength(res, 0, 0)
               && memcmp(o->data, PQgetvalue(res, 0, 0), o->len) == 0,
               "the old row carries the full out-of-line value (%d bytes)", PQgetlength(res, 0, 0));
            ok(nw != NULL && nw->kind == 'u' && nw->data == NULL && nw->len == 0,
               "the new row marks it unchanged ('u', no data)");
            PQclear(res);
        }
        /* the relation cache: the table's description was replaced by the ADD COLUMN one */
        rel = pgo_relcache_get(rc, m.update.relid);
        ok(rel != NULL && rel->ncols == 16 && strcmp(rel->cols[15].name, "extra") == 0
           && rel->cols[15].type_oid == 1043 && rel->cols[15].typmod == 9 && rel->replident == 'f',
           "relcache holds the latest description (16 columns, extra varchar(5): typmod 9)");
        is_int(pgo_relcache_count(rc), nrelids, "one cache entry per relation described (%d)", nrelids);
        ok(rel != NULL && strcmp(rel->nspname, "public") == 0 && strcmp(rel->relname, table) == 0,
           "relcache entry names the table");
        /* unconstrained numeric and int8 have no typmod */
        ok(rel != NULL && rel->cols[3].typmod == -1 && rel->cols[0].typmod == -1,
           "typmod -1 for int8 and unconstrained numeric");
    }

    /* ---- relcache: retain survives replacement ---- */
    {
        PgoRelcache *c2 = pgo_relcache_new();
        const PgoRelation *a, *b;
        PgoColumn cols[2] = {{"a", 23, -1, 1}, {"b", 25, -1, 0}};
        PgoRelation r1 = {42, "s", "t", 'd', 1, cols, 0};
        PgoRelation r2 = {42, "s", "t", 'f', 2, cols, 0};
        int all_found = 1;

        a = pgo_relcache_put(c2, &r1, err, sizeof(err));
        pgo_relation_retain(a);
        b = pgo_relcache_put(c2, &r2, err, sizeof(err));
        ok(a != NULL && b != NULL && a != b && a->ncols == 1 && strcmp(a->cols[0].name, "a") == 0
           && b->ncols == 2 && strcmp(b->cols[1].name, "b") == 0 && pgo_relcache_get(c2, 42) == b,
           "a retained entry stays readable after its replacement");
        pgo_relation_release(a);
        for (uint32_t id = 1; id <= 1000; id++)
        {
            r1.relid = id * 7919;
            if (pgo_relcache_put(c2, &r1, err, sizeof(err)) == NULL)
                all_found = 0;
        }
        for (uint32_t id = 1; id <= 1000; id++)
            if (pgo_relcache_get(c2, id * 7919) == NULL || pgo_relcache_get(c2, id * 7919)->relid != id * 7919)
                all_found = 0;
        ok(all_found && pgo_relcache_count(c2) == 1001 && pgo_relcache_get(c2, 5) == NULL,
           "1001 relations: every one found, an unknown relid is not");
        pgo_relcache_free(c2);
    }

    /* ---- every truncation fails cleanly; every message type is named ---- */
    for (int i = 0; i < n; i++)
    {
        size_t fails = 0, tried = 0, named = 0;

        for (size_t len = 0; len < ch[i].len; len++)
        {
            unsigned char *copy;

            /* big messages: every length near the ends, a stride in between */
            if (ch[i].len > 4096 && len > 512 && len + 512 < ch[i].len && len % 97 != 0)
                continue;
            copy = malloc(len ? len : 1); /* exact size: ASan catches any overread */
            memcpy(copy, ch[i].data, len);
            tried++;
            err[0] = '\0';
            if (pgo_decode(&m, len ? copy : NULL, len, err, sizeof(err)) < 0)
                fails++;
            if (len == 0 ? strstr(err, "offset 0") != NULL
                : strstr(err, pgo_msg_type_name(ch[i].data[0])) != NULL && strstr(err, "offset") != NULL)
                named++;
            free(copy);
        }
        ok(fails == tried && named == tried, "message %d ('%c', %zu bytes): all %zu truncations are "
           "errors naming the type and offset", i, ch[i].data[0], ch[i].len, tried);
    }
    pgo_decode(&m, ch[ours[3]].data, ch[ours[3]].len - 1, err, sizeof(err));
    note("a truncation error: %s", err);
    {
        /* trailing bytes are an error too */
        unsigned char *longer = malloc(ch[0].len + 1);

        memcpy(longer, ch[0].data, ch[0].len);
        longer[ch[0].len] = 0;
        ok(pgo_decode(&m, longer, ch[0].len + 1, err, sizeof(err)) < 0 && strstr(err, "trailing") != NULL,
           "a trailing byte is an error: %s", err);
        free(longer);
    }
    {
        static const unsigned char stream_start[] = {'S', 0, 0, 0, 1, 1};
        static const unsigned char bogus[] = {'Z', 1, 2};
        /* an Insert claiming 1665 columns */
        static const unsigned char wide[] = {'I', 0, 0, 0, 1, 'N', 0x06, 0x81, 'n'};
        /* a Relation claiming 1000 columns in 20 bytes */
        static const unsigned char rel[] = {'R', 0, 0, 0, 1, 's', 0, 't', 0, 'f', 0x03, 0xe8,
                                            1, 'a', 0, 0, 0, 0, 23, 0};
        /* a text value claiming 4 GB */
        static const unsigned char huge[] = {'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0xff, 0xff, 0xff, 0xff, 'x'};
        /* truncate claiming 2^31 relations */
        static const unsigned char trunc[] = {'T', 0x80, 0, 0, 0, 0, 0, 0, 0, 1};
        /* an unknown column kind */
        static const unsigned char kind[] = {'I', 0, 0, 0, 1, 'N', 0, 1, 'x'};

        ok(pgo_decode(&m, stream_start, sizeof(stream_start), err, sizeof(err)) < 0
           && strstr(err, "Stream Start") && strstr(err, "protocol version 1"), "%s", err);
        ok(pgo_decode(&m, bogus, sizeof(bogus), err, sizeof(err)) < 0 && strstr(err, "unknown"), "%s", err);
        ok(pgo_decode(&m, wide, sizeof(wide), err, sizeof(err)) < 0 && strstr(err, "1665 columns"), "%s", err);
        ok(pgo_decode(&m, rel, sizeof(rel), err, sizeof(err)) < 0 && strstr(err, "1000 columns"), "%s", err);
        ok(pgo_decode(&m, huge, sizeof(huge), err, sizeof(err)) < 0 && strstr(err, "4294967295 bytes"), "%s", err);
        ok(pgo_decode(&m, trunc, sizeof(trunc), err, sizeof(err)) < 0 && strstr(err, "2147483648 relations"), "%s", err);
        ok(pgo_decode(&m, kind, sizeof(kind), err, sizeof(err)) < 0 && strstr(err, "unknown kind 0x78")
           && strstr(err, "offset 8"), "%s", err);
    }
    {
        /* zero-column tuples into a fresh PgoMsg (no scratch yet) */
        static const unsigned char empty_ins[] = {'I', 0, 0, 0, 1, 'N', 0, 0};
        static const unsigned char empty_upd[] = {'U', 0, 0, 0, 1, 'O', 0, 0, 'N', 0, 0};
        PgoMsg fresh;
        int good;

        pgo_msg_init(&fresh);
        good = pgo_decode(&fresh, empty_ins, sizeof(empty_ins), err, sizeof(err)) == 0
            && fresh.insert.newtup.ncols == 0 && fresh.insert.relid == 1;
        pgo_msg_free(&fresh);
        pgo_msg_init(&fresh);
        good = good && pgo_decode(&fresh, empty_upd, sizeof(empty_upd), err, sizeof(err)) == 0
            && fresh.update.old_kind == 'O' && fresh.update.oldtup.ncols == 0
            && fresh.update.newtup.ncols == 0;
        pgo_msg_free(&fresh);
        ok(good, "tuples of zero columns decode (into a PgoMsg with no scratch yet)");
    }

    /* ---- random corruption never crashes; what decodes stays inside the buffer ---- */
    {
        unsigned seed = 12345;
        int runs = 0, decoded_ok = 0, inside = 1;

        for (int i = 0; i < n; i++)
        {
            if (ch[i].len > 4096)
                continue;
            for (int k = 0; k < 2000; k++)
            {
                unsigned char *copy = malloc(ch[i].len);
                size_t len = ch[i].len;
                int flips = 1 + (int) (rand_r(&seed) % 4);

                memcpy(copy, ch[i].data, len);
                for (int f = 0; f < flips; f++)
                {
                    size_t at = (size_t) rand_r(&seed) % len;

                    copy[at] = rand_r(&seed) % 3 == 0 ? copy[at] ^ (unsigned char) (1u << (rand_r(&seed) % 8))
                        : (unsigned char) rand_r(&seed);
                }
                if (rand_r(&seed) % 4 == 0)
                    len = (size_t) rand_r(&seed) % (len + 1);
                runs++;
                if (pgo_decode(&m, copy, len, err, sizeof(err)) == 0)
                {
                    const PgoTuple *ts[2] = {NULL, NULL};

                    decoded_ok++;
                    if (m.type == PGO_INSERT)
                        ts[0] = &m.insert.newtup;
                    else if (m.type == PGO_UPDATE)
                        ts[0] = &m.update.oldtup, ts[1] = &m.update.newtup;
                    else if (m.type == PGO_DELETE)
                        ts[0] = &m.delete.oldtup;
                    for (int t = 0; t < 2; t++)
                        for (int c = 0; ts[t] && c < ts[t]->ncols; c++)
                        {
                            const PgoDatum *d = &ts[t]->cols[c];

                            if (d->data != NULL && (d->data < (char *) copy
                                                    || d->data + d->len > (char *) copy + len))
                                inside = 0;
                        }
                }
                free(copy);
            }
        }
        ok(runs > 0 && inside, "%d corrupted messages decoded without a crash (%d still valid), "
           "every value inside its buffer", runs, decoded_ok);
    }

    /* ---- speed ---- */
    {
        struct timespec t0, t1;
        long iters = 0;
        size_t bytes = 0;
        double secs;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        do
        {
            for (int r = 0; r < 1000; r++) /* the first insert: 15 columns, 484 bytes */
                if (pgo_decode(&m, ch[ours[3]].data, ch[ours[3]].len, err, sizeof(err)) == 0)
                    iters++, bytes += ch[ours[3]].len;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        } while (secs < 0.3);
        note("decode speed: %.1f M Insert messages/s (15 columns, %zu bytes), %.0f MB/s",
             iters / secs / 1e6, ch[ours[3]].len, (double) bytes / secs / 1e6);
        ok(iters > 0, "decode speed measured");
    }

    /* ---- the fuzzer's seed corpus ---- */
    if (corpus != NULL)
    {
        for (int i = 0; i < n; i++)
        {
            char path[1024];
            FILE *f;

            snprintf(path, sizeof(path), "%s/msg-%02d-%c", corpus, i, ch[i].data[0]);
            f = fopen(path, "wb");
            if (f != NULL)
            {
                fwrite(ch[i].data, 1, ch[i].len, f);
                fclose(f);
            }
        }
        note("wrote %d messages to %s", n, corpus);
    }

    /* ---- clean up ---- */
    for (int i = 0; i < n; i++)
    {
        free(ch[i].data);
        free(got[i]);
    }
    free(ch);
    free(got);
    free(ours);
    pgo_msg_free(&m);
    pgo_relcache_free(rc);
    sql("SELECT pg_drop_replication_slot('%s')", slot);
    sql("DROP TABLE %s, %s_flush", table, table);
    sql("DROP TYPE %s", enumtype);
    PQfinish(conn);
    return done_testing();
}
