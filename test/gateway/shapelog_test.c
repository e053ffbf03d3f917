/*
 * test/gateway/shapelog_test.c -- shape logs: offsets, append and resume, visibility, retention, errors, speed.
 *
 * Needs no PostgreSQL: every log lives in a temporary directory under /tmp, removed at
 * the end. Crash recovery is tested in shapelog_crash_test.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shapelog.h"
#include "tap.h"

#define MAX_ENTRIES 4000        /* entries of the main test log */

/* Plan: the offsets of a test log, its snapshot first, then transactions. */
typedef struct Plan
{
    SlogOffset off[MAX_ENTRIES];    /* offsets, increasing */
    int n;                          /* entries */
} Plan;

/* ---- helpers -------------------------------------------------------------------------- */

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

/* rm_rf removes a directory tree. */
static void
rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static SlogOffset
offset(uint64_t lsn, uint32_t op)
{
    SlogOffset o = {lsn, op, false};

    return o;
}

static const char *
fmt(SlogOffset o)
{
    static char buf[4][SLOG_OFFSET_BUFLEN];
    static int i;

    i = (i + 1) % 4;
    return slog_offset_format(o, buf[i]);
}

/* payload_for makes the payload of entry (lsn, op) into buf; returns its length. Some
 * entries are larger than the small segments of the tests. */
static size_t
payload_for(SlogOffset o, unsigned char *buf)
{
    size_t len = (size_t) ((o.lsn * 31 + o.op * 17) % 180);

    if ((o.lsn + o.op) % 97 == 5)
        len = 3000;
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char) (o.lsn * 7 + o.op * 13 + i);
    return len;
}

static uint8_t
kind_for(SlogOffset o)
{
    return o.lsn == 0 ? 1 : (uint8_t) (2 + o.op % 3);
}

/* plan_make: a snapshot of nsnap rows, then transactions of 1 to 5 changes with gaps in the LSNs. */
static void
plan_make(Plan *p, int nsnap, int n)
{
    uint64_t lsn = 1000;

    p->n = 0;
    for (int i = 0; i < nsnap && p->n < n; i++)
        p->off[p->n++] = offset(0, (uint32_t) i);
    while (p->n < n)
    {
        int ops = 1 + (int) (lsn % 5);

        for (int op = 0; op < ops && p->n < n; op++)
            p->off[p->n++] = offset(lsn, (uint32_t) op);
        lsn += 8 + lsn % 193;
    }
}

/* append_range appends entries [from, to) of the plan; the number that failed. */
static int
append_range(SlogLog *log, const Plan *p, int from, int to)
{
    static unsigned char buf[4096];
    char err[256];
    int bad = 0;

    for (int i = from; i < to; i++)
    {
        size_t len = payload_for(p->off[i], buf);

        if (slog_append(log, p->off[i].lsn, p->off[i].op, kind_for(p->off[i]), buf, len, err, sizeof(err)) != SLOG_OK)
        {
            if (bad++ == 0)
                diag("append %s: %s", fmt(p->off[i]), err);
        }
    }
    return bad;
}

/* entry_ok: whether e is entry i of the plan, payload and kind included. */
static int
entry_ok(const Plan *p, int i, const SlogEntry *e)
{
    static unsigned char buf[4096];
    size_t len;

    if (i >= p->n || e->lsn != p->off[i].lsn || e->op != p->off[i].op || e->kind != kind_for(p->off[i]))
        return 0;
    len = payload_for(p->off[i], buf);
    return e->len == len && (len == 0 || memcmp(e->payload, buf, len) == 0);
}

/*
 * read_after opens a cursor after `after` and reads to SLOG_END, checking that it gets
 * plan entries first..n-1 in order. Returns the number of entries read, or -1 on a
 * mismatch or error, -2 when the cursor is GONE.
 */
static int
read_after(SlogLog *log, SlogOffset after, const Plan *p, int first)
{
    SlogCursor *c;
    SlogEntry e;
    char err[256];
    int rc, n = 0;

    rc = slog_cursor_open(log, after, &c, err, sizeof(err));
    if (rc == SLOG_GONE)
        return -2;
    if (rc != SLOG_OK)
    {
        diag("cursor after %s: %s", fmt(after), err);
        return -1;
    }
    while ((rc = slog_cursor_next(c, &e, err, sizeof(err))) == SLOG_OK)
    {
        if (!entry_ok(p, first + n, &e))
        {
            diag("after %s: entry %d is %s, expected %s", fmt(after), n, fmt(offset(e.lsn, e.op)),
                 first + n < p->n ? fmt(p->off[first + n]) : "none");
            slog_cursor_close(c);
            return -1;
        }
        n++;
    }
    if (rc != SLOG_END)
        diag("after %s: next returned %d: %s", fmt(after), rc, rc < 0 ? err : "");
    slog_cursor_close(c);
    return rc == SLOG_END ? n : -1;
}

static int
gone(SlogLog *log, SlogOffset after)
{
    SlogCursor *c = NULL;
    char err[256];
    int rc = slog_cursor_open(log, after, &c, err, sizeof(err));

    slog_cursor_close(c);
    return rc == SLOG_GONE;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void
test_offsets(void)
{
    static const struct
    {
        const char *text;
        int ok;
    } cases[] = {
        {"-1", 1}, {"0_0", 1}, {"123_4", 1}, {"18446744073709551615_4294967295", 1},
        {"", 0}, {"-", 0}, {"-2", 0}, {"-1 ", 0}, {" -1", 0}, {"-0", 0}, {"-1_0", 0},
        {" 1_2", 0}, {"1_2 ", 0}, {"+1_2", 0}, {"1_+2", 0}, {"1__2", 0}, {"1_", 0}, {"_1", 0},
        {"1", 0}, {"1_2_3", 0}, {"18446744073709551616_0", 0}, {"99999999999999999999_0", 0},
        {"1_4294967296", 0}, {"01_2", 0}, {"1_02", 0}, {"00_0", 0}, {"1_2x", 0}, {"abc", 0},
        {"1-2", 0}, {"0x1_2", 0}, {"1_-2", 0}, {"1 _2", 0},
    };
    char err[256], buf[SLOG_OFFSET_BUFLEN];
    SlogOffset o;
    int bad = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    {
        int rc = slog_offset_parse(cases[i].text, strlen(cases[i].text), &o, err, sizeof(err));

        if ((rc == SLOG_OK) != cases[i].ok || (rc != SLOG_OK && rc != SLOG_EINVAL))
        {
            diag("offset '%s': rc %d (%s)", cases[i].text, rc, err);
            bad++;
        }
        else if (rc == SLOG_OK && strcmp(slog_offset_format(o, buf), cases[i].text) != 0)
        {
            diag("offset '%s' formats back as '%s'", cases[i].text, buf);
            bad++;
        }
    }
    is_int(bad, 0, "offset parse/format: %zu cases (valid ones round-trip, garbage refused)",
           sizeof(cases) / sizeof(cases[0]));
    is_int(slog_offset_parse("1_2\0" "3", 5, &o, err, sizeof(err)), SLOG_EINVAL,
           "an offset with a NUL inside is refused");
    ok(strstr(err, "1_2?3") != NULL, "the error shows the text, made printable: %s", err);
    is_int(slog_offset_parse("123_4", 3, &o, err, sizeof(err)), SLOG_EINVAL, "length is honoured (\"123\")");
    is_int(slog_offset_parse(NULL, 0, &o, err, sizeof(err)), SLOG_EINVAL, "NULL text is refused");
    ok(slog_offset_parse("18446744073709551615_4294967295", 31, &o, err, sizeof(err)) == SLOG_OK
       && o.lsn == UINT64_MAX && o.op == UINT32_MAX && !o.start, "the largest offset parses exactly");
    ok(slog_offset_cmp(SLOG_OFFSET_START, offset(0, 0)) < 0 && slog_offset_cmp(offset(0, 5), offset(1, 0)) < 0
       && slog_offset_cmp(offset(7, 1), offset(7, 2)) < 0 && slog_offset_cmp(offset(7, 2), offset(7, 2)) == 0
       && slog_offset_cmp(SLOG_OFFSET_START, SLOG_OFFSET_START) == 0 && slog_offset_cmp(offset(2, 0), offset(1, 9)) > 0,
       "offsets order: -1 < 0_0 < 0_5 < 1_0, then by op");
}

/* test_round_trip: many entries across segments, "-1", resume from every offset, GONE offsets, reopen. */
static void
test_round_trip(const char *root, Plan *p)
{
    SlogOptions opts = {2048, 256};
    SlogLog *log;
    SlogStats st;
    SlogOffset durable;
    char dir[512], err[256];
    int bad, n, ngone;

    snprintf(dir, sizeof(dir), "%s/round", root);
    plan_make(p, 300, 1500);
    if (!is_int(slog_open(&log, dir, &opts, SLOG_CREATE, "def", 3, err, sizeof(err)), SLOG_OK, "create a log"))
        bail_out("cannot create a shape log: %s", err);
    is_int(append_range(log, p, 0, p->n), 0, "append %d entries (300 snapshot rows, then transactions)", p->n);
    is_int(slog_sync(log, &durable, err, sizeof(err)), SLOG_OK, "sync");
    ok(slog_offset_cmp(durable, p->off[p->n - 1]) == 0, "sync returns the last entry as durable: %s", fmt(durable));
    slog_stats(log, &st);
    ok(st.entries == (uint64_t) p->n && st.segments > 20 && st.has_beginning && st.floor.start,
       "stats: %llu entries in %u segments, %llu bytes, has its beginning", (unsigned long long) st.entries,
       st.segments, (unsigned long long) st.bytes);
    is_int(read_after(log, SLOG_OFFSET_START, p, 0), p->n, "\"-1\" reads every entry, in order, payloads intact");

    bad = 0;
    for (int i = 0; i < p->n; i++)
        if ((n = read_after(log, p->off[i], p, i + 1)) != p->n - i - 1)
        {
            if (bad++ < 3)
                diag("resume after %s read %d, expected %d", fmt(p->off[i]), n, p->n - i - 1);
        }
    is_int(bad, 0, "resuming after each of the %d offsets gives exactly the entries after it", p->n);

    /* Offsets this log never had: between two entries, past the end. */
    bad = ngone = 0;
    for (int i = 0; i + 1 < p->n; i++)
    {
        SlogOffset probe[2] = {offset(p->off[i].lsn, p->off[i].op + 1), offset(p->off[i].lsn + 1, 0)};

        for (int k = 0; k < 2; k++)
        {
            if (slog_offset_cmp(probe[k], p->off[i + 1]) >= 0)
                continue;
            ngone++;
            if (!gone(log, probe[k]) && bad++ < 3)
                diag("%s between %s and %s is not GONE", fmt(probe[k]), fmt(p->off[i]), fmt(p->off[i + 1]));
        }
    }
    is_int(bad, 0, "%d offsets in between two entries (never issued) are GONE", ngone);
    ok(gone(log, offset(p->off[p->n - 1].lsn, p->off[p->n - 1].op + 1)) && gone(log, offset(UINT64_MAX, 0)),
       "offsets after the last entry are GONE");
    slog_close(log);

    /* Reopen: everything is there. */
    if (!is_int(slog_open(&log, dir, &opts, 0, NULL, 0, err, sizeof(err)), SLOG_OK, "reopen"))
    {
        diag("%s", err);
        return;
    }
    slog_stats(log, &st);
    ok(st.entries == (uint64_t) p->n && slog_offset_cmp(st.last, p->off[p->n - 1]) == 0
       && slog_offset_cmp(st.durable, st.last) == 0, "reopened: %llu entries, last %s, all durable",
       (unsigned long long) st.entries, fmt(st.last));
    is_int(read_after(log, SLOG_OFFSET_START, p, 0), p->n, "reopened: \"-1\" reads every entry");
    is_int(read_after(log, p->off[p->n / 2], p, p->n / 2 + 1), p->n - p->n / 2 - 1, "reopened: resume from the middle");
    slog_close(log);
}

/* test_append_rules: order, size, and the durable-only visibility of cursors. */
static void
test_append_rules(const char *root)
{
    static unsigned char small[16];
    SlogOptions opts = {1024, 128};
    SlogLog *log;
    SlogCursor *c, *tail;
    SlogEntry e;
    SlogOffset durable;
    char dir[512], err[256];
    unsigned char *big;

    snprintf(dir, sizeof(dir), "%s/rules", root);
    if (slog_open(&log, dir, &opts, SLOG_CREATE, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot create a shape log: %s", err);
    ok(gone(log, offset(0, 0)) == 1, "empty log: 0_0 is GONE");
    is_int(slog_cursor_open(log, SLOG_OFFSET_START, &tail, err, sizeof(err)), SLOG_OK, "empty log: \"-1\" opens");
    is_int(slog_cursor_next(tail, &e, err, sizeof(err)), SLOG_END, "empty log: the cursor is at END");
    is_int(slog_append(log, 0, 0, 1, small, 4, err, sizeof(err)), SLOG_OK, "append 0_0");
    is_int(slog_append(log, 0, 1, 1, NULL, 0, err, sizeof(err)), SLOG_OK, "append 0_1, empty payload");
    is_int(slog_append(log, 0, 1, 1, small, 4, err, sizeof(err)), SLOG_EINVAL, "append 0_1 again: refused");
    ok(strstr(err, "0_1") != NULL && strstr(err, "increase") != NULL, "the error says why: %s", err);
    is_int(slog_append(log, 0, 0, 1, small, 4, err, sizeof(err)), SLOG_EINVAL, "append 0_0 after 0_1: refused");
    is_int(slog_append(log, 50, 2, 2, small, 4, err, sizeof(err)), SLOG_OK, "append 50_2");
    is_int(slog_append(log, 50, 1, 2, small, 4, err, sizeof(err)), SLOG_EINVAL, "append 50_1 after 50_2: refused");
    is_int(slog_append(log, 49, 9, 2, small, 4, err, sizeof(err)), SLOG_EINVAL, "append 49_9 after 50_2: refused");
    is_int(slog_append(log, 51, 0, 2, small, (size_t) SLOG_MAX_PAYLOAD + 1, err, sizeof(err)), SLOG_EINVAL,
           "a payload of 64 MiB + 1 is refused");
    ok(strstr(err, "bytes") != NULL, "the error says why: %s", err);
    is_int(slog_append(log, 51, 0, 2, NULL, 5, err, sizeof(err)), SLOG_EINVAL,
           "a NULL payload with a length is refused");

    /* Not yet synced: cursors do not see it. */
    is_int(slog_cursor_next(tail, &e, err, sizeof(err)), SLOG_END, "before sync, a cursor sees nothing new");
    ok(gone(log, offset(0, 0)), "before sync, an offset appended but not durable is GONE");
    is_int(slog_sync(log, &durable, err, sizeof(err)), SLOG_OK, "sync");
    ok(slog_cursor_next(tail, &e, err, sizeof(err)) == SLOG_OK && e.lsn == 0 && e.op == 0 && e.len == 4 && e.kind == 1,
       "after sync the waiting cursor gets 0_0");
    ok(slog_cursor_next(tail, &e, err, sizeof(err)) == SLOG_OK && e.op == 1 && e.len == 0, "then 0_1 (empty)");
    ok(slog_cursor_next(tail, &e, err, sizeof(err)) == SLOG_OK && e.lsn == 50 && e.op == 2, "then 50_2");
    is_int(slog_cursor_next(tail, &e, err, sizeof(err)), SLOG_END, "then END");
    ok(slog_offset_cmp(slog_cursor_offset(tail), offset(50, 2)) == 0, "the cursor's offset is 50_2");

    /* One entry of exactly the largest size: buffers grow for it and shrink after. */
    big = malloc(SLOG_MAX_PAYLOAD);
    if (big == NULL)
        bail_out("out of memory");
    for (size_t i = 0; i < SLOG_MAX_PAYLOAD; i++)
        big[i] = (unsigned char) (i * 2654435761u >> 24);
    is_int(slog_append(log, 60, 0, 3, big, SLOG_MAX_PAYLOAD, err, sizeof(err)), SLOG_OK, "a 64 MiB entry is accepted");
    is_int(slog_append(log, 60, 1, 3, small, 3, err, sizeof(err)), SLOG_OK, "and a small one after it");
    slog_sync(log, NULL, err, sizeof(err));
    ok(slog_cursor_next(tail, &e, err, sizeof(err)) == SLOG_OK && e.len == SLOG_MAX_PAYLOAD
       && memcmp(e.payload, big, SLOG_MAX_PAYLOAD) == 0, "the 64 MiB entry reads back intact");
    ok(slog_cursor_next(tail, &e, err, sizeof(err)) == SLOG_OK && e.lsn == 60 && e.op == 1 && e.len == 3,
       "then the small one");
    slog_cursor_close(tail);
    is_int(slog_cursor_open(log, offset(60, 0), &c, err, sizeof(err)), SLOG_OK, "resume right after the 64 MiB entry");
    ok(slog_cursor_next(c, &e, err, sizeof(err)) == SLOG_OK && e.lsn == 60 && e.op == 1, "gives 60_1");
    slog_cursor_close(c);
    free(big);
    slog_close(log);

    if (slog_open(&log, dir, &opts, 0, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot reopen: %s", err);
    is_int(slog_append(log, 60, 1, 2, small, 4, err, sizeof(err)), SLOG_EINVAL,
           "after reopening, order is still enforced");
    ok(slog_offset_cmp(slog_last(log), offset(60, 1)) == 0, "slog_last is 60_1");
    slog_close(log);
}

/* test_retention: by size and by age; cursors across the floor; floor survives a reopen. */
static void
test_retention(const char *root, Plan *p)
{
    SlogOptions opts = {2048, 256};
    SlogLog *log;
    SlogCursor *early, *at_floor;
    SlogEntry e;
    SlogStats before, st;
    char dir[512], err[256];
    int dropped, fi = -1;

    snprintf(dir, sizeof(dir), "%s/retain", root);
    plan_make(p, 100, 1200);
    if (slog_open(&log, dir, &opts, SLOG_CREATE, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot create a shape log: %s", err);
    append_range(log, p, 0, p->n);
    slog_sync(log, NULL, err, sizeof(err));
    slog_stats(log, &before);
    is_int(slog_retain(log, 0, 0, (int64_t) time(NULL), err, sizeof(err)), 0, "no limits: nothing dropped");
    is_int(slog_retain(log, 0, 3600, (int64_t) time(NULL), err, sizeof(err)), 0,
           "an hour's age limit: nothing dropped yet");

    /* A cursor early in the log, and one at what will be the floor. */
    slog_cursor_open(log, p->off[10], &early, err, sizeof(err));
    dropped = slog_retain(log, before.bytes / 2, 0, (int64_t) time(NULL), err, sizeof(err));
    slog_stats(log, &st);
    ok(dropped > 0 && st.bytes <= before.bytes / 2 && st.segments == before.segments - (uint32_t) dropped,
       "by size (%llu of %llu bytes): dropped %d segments, %u left, %llu bytes", (unsigned long long) before.bytes / 2,
       (unsigned long long) before.bytes, dropped, st.segments, (unsigned long long) st.bytes);
    ok(!st.has_beginning && !st.floor.start && st.entries < before.entries, "the floor is now %s, %llu entries left",
       fmt(st.floor), (unsigned long long) st.entries);
    for (int i = 0; i < p->n; i++)
        if (slog_offset_cmp(p->off[i], st.floor) == 0)
            fi = i;
    if (!ok(fi >= 0, "the floor is an offset of the log"))
        return;
    ok((uint64_t) (p->n - fi - 1) == st.entries, "the entries left are exactly those after the floor");
    is_int(slog_cursor_next(early, &e, err, sizeof(err)), SLOG_GONE,
           "a cursor positioned in a dropped segment is GONE");
    slog_cursor_close(early);
    ok(gone(log, SLOG_OFFSET_START), "\"-1\" is GONE: the beginning was dropped");
    ok(gone(log, p->off[0]) && gone(log, p->off[fi - 1]), "dropped offsets are GONE (%s, %s)", fmt(p->off[0]),
       fmt(p->off[fi - 1]));
    is_int(read_after(log, st.floor, p, fi + 1), p->n - fi - 1, "resume from the floor: every entry kept");
    is_int(read_after(log, p->off[fi + 5], p, fi + 6), p->n - fi - 6, "resume from a kept offset");

    /* A cursor sitting exactly at the next floor survives the next drop. */
    {
        SlogStats st2;
        int fi2 = -1;

        is_int(slog_cursor_open(log, st.floor, &at_floor, err, sizeof(err)), SLOG_OK, "a cursor at the floor");
        slog_stats(log, &st2);
        dropped = slog_retain(log, st2.bytes - 1, 0, (int64_t) time(NULL), err, sizeof(err));
        slog_stats(log, &st2);
        for (int i = 0; i < p->n; i++)
            if (slog_offset_cmp(p->off[i], st2.floor) == 0)
                fi2 = i;
        ok(dropped == 1 && fi2 > fi, "one more segment dropped (floor %s)", fmt(st2.floor));
        is_int(slog_cursor_next(at_floor, &e, err, sizeof(err)), SLOG_GONE,
               "a cursor at the old floor whose next entry was dropped is GONE");
        slog_cursor_close(at_floor);
        is_int(slog_cursor_open(log, st2.floor, &at_floor, err, sizeof(err)), SLOG_OK, "a cursor at the new floor");
        ok(slog_cursor_next(at_floor, &e, err, sizeof(err)) == SLOG_OK && entry_ok(p, fi2 + 1, &e),
           "gets the first entry kept");
        slog_cursor_close(at_floor);
        st = st2;
        fi = fi2;
    }
    slog_close(log);

    if (slog_open(&log, dir, &opts, 0, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot reopen: %s", err);
    slog_stats(log, &before);
    ok(slog_offset_cmp(before.floor, st.floor) == 0 && before.entries == st.entries,
       "after a reopen the floor is still exactly %s", fmt(before.floor));
    ok(gone(log, p->off[fi - 1]) && !gone(log, p->off[fi]) && !gone(log, p->off[fi + 1]),
       "reopened: before the floor GONE, the floor and after OK");

    /* By age: the clock moved two hours. */
    dropped = slog_retain(log, 0, 3600, (int64_t) time(NULL) + 7200, err, sizeof(err));
    slog_stats(log, &st);
    ok(dropped == (int) before.segments - 1 && st.segments == 1, "by age: every segment but the last dropped (%d)",
       dropped);
    is_int(read_after(log, st.floor, p, p->n - (int) st.entries), (int) st.entries,
           "the last segment still reads from its floor %s", fmt(st.floor));
    /* Appends continue. */
    ok(append_range(log, p, 0, 0) == 0 && slog_append(log, UINT64_MAX - 1, 0, 2, "x", 1, err, sizeof(err)) == SLOG_OK
       && slog_sync(log, NULL, err, sizeof(err)) == SLOG_OK, "appending goes on after retention");
    slog_close(log);
}

/* test_state: definition, created_at, states, invalidation. */
static void
test_state(const char *root)
{
    SlogLog *log;
    SlogCursor *c;
    SlogEntry e;
    SlogStats st;
    char dir[512], err[256];
    const char def[] = "public.todos|workspace_id = 'w1'|id,title";
    const void *d;
    size_t dlen;

    snprintf(dir, sizeof(dir), "%s/state", root);
    if (slog_open(&log, dir, NULL, SLOG_CREATE, def, sizeof(def), err, sizeof(err)) != SLOG_OK)
        bail_out("cannot create a shape log: %s", err);
    is_int(slog_state(log), SLOG_STATE_SNAPSHOT, "a new log is in state SNAPSHOT");
    slog_append(log, 0, 0, 1, "row", 3, err, sizeof(err));
    slog_sync(log, NULL, err, sizeof(err));
    is_int(slog_set_state(log, SLOG_STATE_LIVE, err, sizeof(err)), SLOG_OK, "set LIVE");
    slog_stats(log, &st);
    ok(st.mem_bytes < 1024, "an open log with default options holds %zu bytes of heap", st.mem_bytes);
    diag("memory: an open log holds %zu bytes (1 segment, 1 entry, default options)", st.mem_bytes);
    slog_close(log);

    if (slog_open(&log, dir, NULL, 0, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot reopen: %s", err);
    d = slog_definition(log, &dlen);
    ok(dlen == sizeof(def) && memcmp(d, def, dlen) == 0, "the definition is kept");
    is_int(slog_state(log), SLOG_STATE_LIVE, "the state is kept");
    slog_stats(log, &st);
    ok(st.created_at > 0 && llabs((long long) (st.created_at - (int64_t) time(NULL))) < 60, "created_at is kept");
    is_int(slog_cursor_open(log, SLOG_OFFSET_START, &c, err, sizeof(err)), SLOG_OK, "a cursor from \"-1\"");
    is_int(slog_set_state(log, SLOG_STATE_INVALID, err, sizeof(err)), SLOG_OK, "invalidate (TRUNCATE)");
    is_int(slog_cursor_next(c, &e, err, sizeof(err)), SLOG_GONE, "the open cursor is GONE");
    slog_cursor_close(c);
    ok(gone(log, SLOG_OFFSET_START) && gone(log, offset(0, 0)), "every offset is GONE");
    is_int(slog_append(log, 5, 0, 2, "x", 1, err, sizeof(err)), SLOG_EINVAL, "an invalidated log takes no entries");
    is_int(slog_set_state(log, SLOG_STATE_LIVE, err, sizeof(err)), SLOG_EINVAL, "invalidation is final");
    slog_close(log);
    if (slog_open(&log, dir, NULL, 0, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot reopen: %s", err);
    ok(slog_state(log) == SLOG_STATE_INVALID && gone(log, SLOG_OFFSET_START), "invalidation survives a restart");
    slog_close(log);
    is_int(slog_destroy(dir, err, sizeof(err)), SLOG_OK, "destroy");
    ok(access(dir, F_OK) != 0 && errno == ENOENT, "the directory is gone");
    is_int(slog_destroy(dir, err, sizeof(err)), SLOG_OK, "destroying a missing log is fine");
}

/* test_errors: bad directories and options. */
static void
test_errors(const char *root)
{
    SlogOptions bad_opts = {10, 0};
    SlogLog *log;
    char dir[512], path[600], err[256];
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/none", root);
    is_int(slog_open(&log, dir, NULL, 0, NULL, 0, err, sizeof(err)), SLOG_ENOENT, "open a missing directory: ENOENT");
    ok(strstr(err, "does not exist") != NULL && strstr(err, dir) != NULL, "says so: %s", err);
    mkdir(dir, 0700);
    is_int(slog_open(&log, dir, NULL, 0, NULL, 0, err, sizeof(err)), SLOG_ENOENT, "open an empty directory: ENOENT");
    ok(strstr(err, "holds no shape log") != NULL, "says so: %s", err);
    snprintf(path, sizeof(path), "%s/no/such/parent", root);
    is_int(slog_open(&log, path, NULL, SLOG_CREATE, NULL, 0, err, sizeof(err)), SLOG_ENOENT,
           "create under a missing parent: ENOENT");
    ok(strstr(err, "parent must exist") != NULL, "says so: %s", err);
    snprintf(path, sizeof(path), "%s/file", root);
    f = fopen(path, "w");
    fclose(f);
    is_int(slog_open(&log, path, NULL, SLOG_CREATE, NULL, 0, err, sizeof(err)), SLOG_ERR, "create over a file: error");
    ok(strstr(err, "not a directory") != NULL, "says so: %s", err);
    is_int(slog_open(&log, dir, NULL, SLOG_CREATE, NULL, 0, err, sizeof(err)), SLOG_OK,
           "create in the empty directory");
    slog_close(log);
    is_int(slog_open(&log, dir, NULL, SLOG_CREATE, NULL, 0, err, sizeof(err)), SLOG_EEXIST, "create twice: EEXIST");
    is_int(slog_open(&log, dir, &bad_opts, 0, NULL, 0, err, sizeof(err)), SLOG_EINVAL, "segment_bytes 10: EINVAL");
    ok(strstr(err, "segment_bytes") != NULL, "says so: %s", err);
    is_int(slog_open(&log, "", NULL, SLOG_CREATE, NULL, 0, err, sizeof(err)), SLOG_EINVAL,
           "an empty directory name: EINVAL");
    is_int(slog_open(&log, dir, NULL, 0x10, NULL, 0, err, sizeof(err)), SLOG_EINVAL, "unknown flags: EINVAL");
    snprintf(path, sizeof(path), "%s/mine.txt", dir);
    f = fopen(path, "w");
    fclose(f);
    is_int(slog_destroy(dir, err, sizeof(err)), SLOG_ERR, "destroy leaves a file that is not the log's");
    ok(strstr(err, "other files") != NULL && access(path, F_OK) == 0, "and says so: %s", err);
}

/* test_throughput: a figure for the lead, default options. */
static void
test_throughput(const char *root)
{
    enum { N = 200000, LEN = 100 };
    SlogLog *log;
    SlogCursor *c;
    SlogEntry e;
    SlogStats st;
    unsigned char payload[LEN];
    char dir[512], err[256];
    double t0, t_append, t_sync, t_read, t_seek;
    size_t bytes = 0;
    int n = 0, bad = 0, rc;

    snprintf(dir, sizeof(dir), "%s/speed", root);
    memset(payload, 'x', sizeof(payload));
    if (slog_open(&log, dir, NULL, SLOG_CREATE, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot create a shape log: %s", err);
    t0 = now_s();
    for (int i = 0; i < N; i++)
        bad += slog_append(log, 1000 + (uint64_t) i / 4, (uint32_t) i % 4, 2, payload, LEN,
                           err, sizeof(err)) != SLOG_OK;
    t_append = now_s() - t0;
    t0 = now_s();
    bad += slog_sync(log, NULL, err, sizeof(err)) != SLOG_OK;
    t_sync = now_s() - t0;
    t0 = now_s();
    slog_cursor_open(log, SLOG_OFFSET_START, &c, err, sizeof(err));
    while ((rc = slog_cursor_next(c, &e, err, sizeof(err))) == SLOG_OK)
    {
        n++;
        bytes += e.len + SLOG_RECORD_HEADER;
    }
    slog_cursor_close(c);
    t_read = now_s() - t0;
    t0 = now_s();
    for (int i = 0; i < 1000; i++)
    {
        int k = (int) ((unsigned) i * 2654435761u % N);

        bad += slog_cursor_open(log, offset(1000 + (uint64_t) k / 4, (uint32_t) k % 4), &c,
                                err, sizeof(err)) != SLOG_OK;
        bad += slog_cursor_next(c, &e, err, sizeof(err)) < 0;
        slog_cursor_close(c);
    }
    t_seek = (now_s() - t0) / 1000;
    ok(bad == 0 && n == N && rc == SLOG_END, "throughput run: %d entries of %d bytes appended and read back", N, LEN);
    slog_stats(log, &st);
    ok(st.mem_bytes < 4096, "memory of the open log: %zu bytes for %u segments of 8 MiB", st.mem_bytes, st.segments);
    diag("appended %.0f entries/s (%.1f MB/s; final sync %.1f ms), read %.0f MB/s (%.0f entries/s), resume %.1f us",
         N / t_append, N * (LEN + SLOG_RECORD_HEADER) / t_append / 1e6, t_sync * 1e3, bytes / t_read / 1e6, n / t_read,
         t_seek * 1e6);
    slog_close(log);
}

int
main(void)
{
    char root[] = "/tmp/ferry-slog.XXXXXX";
    Plan *p = malloc(sizeof(Plan));

    if (p == NULL || mkdtemp(root) == NULL)
        bail_out("cannot make a temporary directory: %s", strerror(errno));
    test_offsets();
    test_round_trip(root, p);
    test_append_rules(root);
    test_retention(root, p);
    test_state(root);
    test_errors(root);
    test_throughput(root);
    rm_rf(root);
    free(p);
    return done_testing();
}
