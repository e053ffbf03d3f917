/*
 * test/gateway/shapelog_crash_test.c -- shape logs after crashes: torn tails, flipped bytes, torn segments.
 *
 * A log is built once in a pristine directory, then for every damage a copy of it is
 * damaged the way a crash (or a disk) would leave it, reopened, and checked: the longest
 * valid prefix comes back and appending goes on, or damage to synced data is refused as
 * SLOG_ECORRUPT. The record layout used to find positions is the one shapelog.h documents.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shapelog.h"
#include "tap.h"

#define N 300                   /* entries of the pristine logs */
#define MAX_RECORDS 4096        /* records of one segment the tests look at */

static const SlogOptions opts = {4096, 512};   /* small segments: many of them */

/* ---- helpers -------------------------------------------------------------------------- */

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static void
rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* copy_dir copies the files of directory src into a new directory dst (removed first). */
static void
copy_dir(const char *src, const char *dst)
{
    static char buf[1 << 16];
    char from[1024], to[1024];
    DIR *d;
    struct dirent *de;

    rm_rf(dst);
    if (mkdir(dst, 0700) < 0 || (d = opendir(src)) == NULL)
        bail_out("cannot copy %s to %s: %s", src, dst, strerror(errno));
    while ((de = readdir(d)) != NULL)
    {
        int in, out;
        ssize_t n;

        if (de->d_name[0] == '.')
            continue;
        snprintf(from, sizeof(from), "%s/%s", src, de->d_name);
        snprintf(to, sizeof(to), "%s/%s", dst, de->d_name);
        in = open(from, O_RDONLY);
        out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0)
            bail_out("cannot copy %s: %s", from, strerror(errno));
        while ((n = read(in, buf, sizeof(buf))) > 0)
            if (write(out, buf, (size_t) n) != n)
                bail_out("cannot copy %s: %s", from, strerror(errno));
        close(in);
        close(out);
    }
    closedir(d);
}

/* seg_file writes the path of segment seq of dir into buf. */
static void
seg_file(char *buf, size_t len, const char *dir, unsigned seq)
{
    snprintf(buf, len, "%s/%016x.seg", dir, seq);
}

/* last_seq returns the number of the last segment file of dir. */
static unsigned
last_seq(const char *dir)
{
    char path[1024];
    unsigned seq = 1;

    for (;;)
    {
        seg_file(path, sizeof(path), dir, seq + 1);
        if (access(path, F_OK) != 0)
            return seq;
        seq++;
    }
}

static long
file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) < 0 ? -1 : (long) st.st_size;
}

static void
flip_byte(const char *path, long pos)
{
    int fd = open(path, O_RDWR);
    unsigned char b;

    if (fd < 0 || pread(fd, &b, 1, pos) != 1)
        bail_out("cannot read %s at %ld", path, pos);
    b ^= 0x5a;
    if (pwrite(fd, &b, 1, pos) != 1)
        bail_out("cannot write %s", path);
    close(fd);
}

static void
cut(const char *path, long len)
{
    if (truncate(path, len) < 0)
        bail_out("cannot truncate %s: %s", path, strerror(errno));
}

/*
 * records lists the record positions of a segment file (format in shapelog.h): *seal gets
 * the seal's position (0 when none); returns the number of entry records.
 */
static int
records(const char *path, long *pos, long *seal)
{
    unsigned char h[SLOG_RECORD_HEADER];
    long at = SLOG_SEGMENT_HEADER, size = file_size(path);
    int fd = open(path, O_RDONLY), n = 0;

    *seal = 0;
    while (fd >= 0 && at + SLOG_RECORD_HEADER <= size && n < MAX_RECORDS
           && pread(fd, h, sizeof(h), at) == (ssize_t) sizeof(h))
    {
        uint32_t len = (uint32_t) h[4] | (uint32_t) h[5] << 8 | (uint32_t) h[6] << 16 | (uint32_t) h[7] << 24;

        if (h[21] == 2)
        {
            *seal = at;
            break;
        }
        pos[n++] = at;
        at += SLOG_RECORD_HEADER + (long) len;
    }
    if (fd >= 0)
        close(fd);
    return n;
}

static SlogOffset
off_of(int i)
{
    SlogOffset o = {100 + (uint64_t) i / 3, (uint32_t) i % 3, false};

    return o;
}

static size_t
len_of(int i)
{
    return 10 + (size_t) (i * 7) % 50;
}

static void
payload_of(int i, unsigned char *buf)
{
    for (size_t k = 0; k < len_of(i); k++)
        buf[k] = (unsigned char) (i * 11 + k);
}

/* append_entries appends entries [from, to), syncing after each when sync_each. */
static int
append_entries(SlogLog *log, int from, int to, int sync_each)
{
    unsigned char buf[64];
    char err[256];

    for (int i = from; i < to; i++)
    {
        payload_of(i, buf);
        if (slog_append(log, off_of(i).lsn, off_of(i).op, 2, buf, len_of(i), err, sizeof(err)) != SLOG_OK
            || (sync_each && slog_sync(log, NULL, err, sizeof(err)) != SLOG_OK))
        {
            diag("append %d: %s", i, err);
            return -1;
        }
    }
    return slog_sync(log, NULL, err, sizeof(err)) == SLOG_OK ? 0 : -1;
}

/* build makes a pristine log of entries [0, n) in dir. */
static void
build(const char *dir, int n, int sync_each)
{
    SlogLog *log;
    char err[256];

    rm_rf(dir);
    if (slog_open(&log, dir, &opts, SLOG_CREATE, "d", 1, err, sizeof(err)) != SLOG_OK
        || append_entries(log, 0, n, sync_each) < 0)
        bail_out("cannot build a log in %s: %s", dir, err);
    slog_close(log);
}

/*
 * check_log reads the whole log from "-1" and returns how many entries it holds when they
 * are exactly entries 0..n-1 of the plan; -1 otherwise.
 */
static int
check_log(SlogLog *log)
{
    unsigned char buf[64];
    SlogCursor *c;
    SlogEntry e;
    char err[256];
    int n = 0, rc;

    if (slog_cursor_open(log, SLOG_OFFSET_START, &c, err, sizeof(err)) != SLOG_OK)
        return -1;
    while ((rc = slog_cursor_next(c, &e, err, sizeof(err))) == SLOG_OK)
    {
        payload_of(n, buf);
        if (e.lsn != off_of(n).lsn || e.op != off_of(n).op || e.len != len_of(n) || memcmp(e.payload, buf, e.len) != 0)
        {
            diag("entry %d differs", n);
            slog_cursor_close(c);
            return -1;
        }
        n++;
    }
    slog_cursor_close(c);
    if (rc != SLOG_END)
        diag("reading: %s", err);
    return rc == SLOG_END ? n : -1;
}

/*
 * recovers opens the damaged log in dir and checks it holds exactly entries 0..want-1;
 * then appends the lost ones again (as a replay would), syncs, reopens, and checks all n.
 */
static int
recovers(const char *dir, int want, int n)
{
    SlogLog *log;
    char err[256];
    int got;

    if (slog_open(&log, dir, &opts, 0, NULL, 0, err, sizeof(err)) != SLOG_OK)
    {
        diag("open: %s", err);
        return 0;
    }
    got = check_log(log);
    if (got != want || slog_offset_cmp(slog_last(log), want > 0 ? off_of(want - 1) : SLOG_OFFSET_START) != 0)
    {
        diag("recovered %d entries, expected %d", got, want);
        slog_close(log);
        return 0;
    }
    if (append_entries(log, want, n, 0) < 0)
    {
        slog_close(log);
        return 0;
    }
    slog_close(log);
    if (slog_open(&log, dir, &opts, 0, NULL, 0, err, sizeof(err)) != SLOG_OK)
    {
        diag("reopen: %s", err);
        return 0;
    }
    got = check_log(log);
    slog_close(log);
    if (got != n)
        diag("after the replay %d entries, expected %d", got, n);
    return got == n;
}

/* open_rc opens dir and returns slog_open's code, its message in err. */
static int
open_rc(const char *dir, char *err, size_t errlen)
{
    SlogLog *log;
    int rc = slog_open(&log, dir, &opts, 0, NULL, 0, err, errlen);

    if (rc == SLOG_OK)
        slog_close(log);
    return rc;
}

/* ---- tests ------------------------------------------------------------------------------ */

/* test_torn_tail: cut the last segment at every byte of its last records; flip bytes in the last record. */
static void
test_torn_tail(const char *root)
{
    char pristine[512], work[512], seg[1024], wseg[1024], err[512];
    long pos[MAX_RECORDS], seal, size, start;
    int nrec, bad = 0, cuts = 0, flips = 0;
    unsigned last;

    snprintf(pristine, sizeof(pristine), "%s/torn", root);
    snprintf(work, sizeof(work), "%s/work", root);
    build(pristine, N, 0);
    last = last_seq(pristine);
    seg_file(seg, sizeof(seg), pristine, last);
    seg_file(wseg, sizeof(wseg), work, last);
    nrec = records(seg, pos, &seal);
    size = file_size(seg);
    if (!ok(nrec >= 5 && seal == 0, "the last segment (%u) holds %d records, unsealed", last, nrec))
        return;
    start = pos[nrec - 4];
    for (long t = start; t < size; t++)
    {
        int lost = 0;

        for (int k = nrec - 4; k < nrec; k++)
            if ((k + 1 < nrec ? pos[k + 1] : size) > t)
                lost++;
        copy_dir(pristine, work);
        cut(wseg, t);
        cuts++;
        if (!recovers(work, N - lost, N) && bad++ < 3)
            diag("cut at byte %ld of %ld", t, size);
    }
    is_int(bad, 0, "cut at each of the %d bytes of the last 4 records: the longest valid prefix comes back, "
           "and the lost entries append again", cuts);

    bad = 0;
    for (long p = pos[nrec - 1]; p < size; p++)
    {
        copy_dir(pristine, work);
        flip_byte(wseg, p);
        flips++;
        if (!recovers(work, N - 1, N) && bad++ < 3)
            diag("flip at byte %ld", p);
    }
    is_int(bad, 0, "a flipped byte at each of the %d bytes of the last record: the record is dropped, the rest kept",
           flips);

    copy_dir(pristine, work);
    cut(wseg, SLOG_SEGMENT_HEADER);
    ok(recovers(work, N - nrec, N), "cut to its bare header: the segment's %d entries go, the rest stay", nrec);
    copy_dir(pristine, work);
    {
        int fd = open(wseg, O_WRONLY | O_APPEND);
        static const unsigned char zeros[700];

        ok(fd >= 0 && write(fd, zeros, sizeof(zeros)) == (ssize_t) sizeof(zeros),
           "append 700 zero bytes (a torn extension)");
        close(fd);
    }
    ok(recovers(work, N, N + 3), "zeros after the last record are cut; nothing lost, appending goes on");
    copy_dir(pristine, work);
    flip_byte(wseg, 17);
    is_int(open_rc(work, err, sizeof(err)), SLOG_ECORRUPT, "a flipped byte in the last segment's header: ECORRUPT");
    ok(strstr(err, "bad header") != NULL, "says so: %s", err);
}

/* test_synced_damage: damage to synced data in the last segment, and in sealed segments. */
static void
test_synced_damage(const char *root)
{
    char pristine[512], work[512], seg[1024], wseg[1024], err[512];
    long pos[MAX_RECORDS], seal;
    int nrec, rc;
    unsigned last;
    SlogLog *log;
    SlogCursor *c;
    SlogEntry e;

    snprintf(pristine, sizeof(pristine), "%s/synced", root);
    snprintf(work, sizeof(work), "%s/work", root);
    build(pristine, N, 1);      /* a sync after every entry */
    last = last_seq(pristine);
    seg_file(seg, sizeof(seg), pristine, last);
    seg_file(wseg, sizeof(wseg), work, last);
    nrec = records(seg, pos, &seal);
    if (!ok(nrec >= 5, "the last segment holds %d records", nrec))
        return;

    copy_dir(pristine, work);
    flip_byte(wseg, pos[nrec / 2] + SLOG_RECORD_HEADER + 1);
    is_int(open_rc(work, err, sizeof(err)), SLOG_ECORRUPT,
           "a flipped payload byte in a synced record mid-segment: ECORRUPT");
    ok(strstr(err, "had been synced") != NULL && strstr(err, "rebuild") != NULL, "says so: %s", err);
    copy_dir(pristine, work);
    flip_byte(wseg, pos[nrec - 2]);
    is_int(open_rc(work, err, sizeof(err)), SLOG_ECORRUPT,
           "a flipped checksum byte of the record before the last: ECORRUPT");
    copy_dir(pristine, work);
    flip_byte(wseg, pos[nrec - 1] + SLOG_RECORD_HEADER);
    ok(recovers(work, N - 1, N), "the very last record damaged: nothing after it to prove it was synced: dropped");

    /* Sealed segments: structure checked at open, checksums when read. */
    seg_file(seg, sizeof(seg), pristine, 2);
    seg_file(wseg, sizeof(wseg), work, 2);
    nrec = records(seg, pos, &seal);
    if (!ok(nrec >= 3 && seal > 0, "segment 2 is sealed, %d records", nrec))
        return;
    copy_dir(pristine, work);
    flip_byte(wseg, pos[2] + SLOG_RECORD_HEADER);
    if (is_int(open_rc(work, err, sizeof(err)), SLOG_OK, "a flipped payload byte in a sealed segment: opens"))
    {
        int n = 0;

        slog_open(&log, work, &opts, 0, NULL, 0, err, sizeof(err));
        slog_cursor_open(log, SLOG_OFFSET_START, &c, err, sizeof(err));
        while ((rc = slog_cursor_next(c, &e, err, sizeof(err))) == SLOG_OK)
            n++;
        is_int(rc, SLOG_ECORRUPT, "reading it stops with ECORRUPT after %d entries", n);
        ok(strstr(err, "0000000000000002.seg") != NULL && strstr(err, "checksum") != NULL,
           "naming the segment: %s", err);
        slog_cursor_close(c);
        is_int(slog_cursor_open(log, off_of(N - 10), &c, err, sizeof(err)), SLOG_OK, "a cursor past the damage opens");
        while ((rc = slog_cursor_next(c, &e, err, sizeof(err))) == SLOG_OK)
            ;
        is_int(rc, SLOG_END, "and reads to the end");
        slog_cursor_close(c);
        slog_close(log);
    }
    else
        skip(4, "did not open");
    copy_dir(pristine, work);
    flip_byte(wseg, 20);
    is_int(open_rc(work, err, sizeof(err)), SLOG_ECORRUPT, "a flipped byte in a sealed segment's header: ECORRUPT");
    copy_dir(pristine, work);
    flip_byte(wseg, seal + SLOG_RECORD_HEADER + 2);
    is_int(open_rc(work, err, sizeof(err)), SLOG_ECORRUPT, "a flipped byte in a seal: ECORRUPT");
    copy_dir(pristine, work);
    unlink(wseg);
    is_int(open_rc(work, err, sizeof(err)), SLOG_ECORRUPT, "a missing middle segment: ECORRUPT");
    ok(strstr(err, "missing") != NULL, "says so: %s", err);
}

/* test_torn_rotation: crashes while a segment is sealed and the next one created. */
static void
test_torn_rotation(const char *root)
{
    char pristine[512], work[512], next[1024], prev[1024], err[256];
    long pos[MAX_RECORDS], seal;
    int n = 0, nrec;
    unsigned last;
    SlogLog *log;
    SlogStats st;

    /* Append until a segment starts: the new one holds exactly one entry. */
    snprintf(pristine, sizeof(pristine), "%s/rotation", root);
    snprintf(work, sizeof(work), "%s/work", root);
    rm_rf(pristine);
    if (slog_open(&log, pristine, &opts, SLOG_CREATE, NULL, 0, err, sizeof(err)) != SLOG_OK)
        bail_out("cannot create: %s", err);
    do
    {
        append_entries(log, n, n + 1, 0);
        n++;
        slog_stats(log, &st);
    } while (st.segments < 3);
    slog_close(log);
    last = last_seq(pristine);
    seg_file(next, sizeof(next), work, last);
    seg_file(prev, sizeof(prev), work, last - 1);

    for (long t = 0; t < SLOG_SEGMENT_HEADER; t += 7)
    {
        copy_dir(pristine, work);
        cut(next, t);
        if (!ok(recovers(work, n - 1, n + 5), "new segment cut to %ld bytes (torn header): removed, "
                "its entry appends again", t))
            break;
    }
    copy_dir(pristine, work);
    cut(next, SLOG_SEGMENT_HEADER);
    ok(recovers(work, n - 1, n + 5), "new segment with a header and no record: an empty last segment, appends go on");

    /* A crash while the seal was written: the new segment does not exist yet. */
    copy_dir(pristine, work);
    nrec = records(prev, pos, &seal);
    if (!ok(seal > 0 && nrec > 0, "segment %u is sealed at byte %ld", last - 1, seal))
        return;
    for (long t = seal; t < file_size(prev); t += 13)
    {
        copy_dir(pristine, work);
        unlink(next);
        cut(prev, t);
        if (!ok(recovers(work, n - 1, n + 5),
                "seal cut at byte %ld, next segment absent: unsealed again, appends go on", t))
            break;
    }
    copy_dir(pristine, work);
    unlink(next);
    ok(recovers(work, n - 1, n + 5), "seal complete, next segment absent: a new segment is started on append");
    copy_dir(pristine, work);
    unlink(next);
    if (slog_open(&log, work, &opts, 0, NULL, 0, err, sizeof(err)) == SLOG_OK)
    {
        unsigned char buf[64];

        payload_of(n - 1, buf);
        slog_append(log, off_of(n - 1).lsn, off_of(n - 1).op, 2, buf, len_of(n - 1), err, sizeof(err));
        slog_sync(log, NULL, err, sizeof(err));
        slog_close(log);
    }
    ok(access(next, F_OK) == 0, "the new segment has the next number (%u)", last);
}

/* test_process_crash: a ferryd killed mid-write loses nothing synced, and nothing in the page cache. */
static void
test_process_crash(const char *root)
{
    char dir[512], path[1024], err[256];
    SlogLog *log;
    SlogCursor *c;
    SlogEntry e;
    pid_t pid;
    int status, n = 0, rc;

    snprintf(dir, sizeof(dir), "%s/killed", root);
    rm_rf(dir);
    pid = fork();
    if (pid == 0)
    {
        if (slog_open(&log, dir, &opts, SLOG_CREATE, NULL, 0, err, sizeof(err)) != SLOG_OK
            || append_entries(log, 0, 200, 0) < 0)
            _exit(2);
        for (int i = 200; i < 210; i++)
        {
            unsigned char buf[64];

            payload_of(i, buf);
            slog_append(log, off_of(i).lsn, off_of(i).op, 2, buf, len_of(i), err, sizeof(err));
        }
        raise(SIGKILL);         /* no sync, no close */
    }
    waitpid(pid, &status, 0);
    ok(WIFSIGNALED(status), "the writer died (signal %d)", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    snprintf(path, sizeof(path), "%s/meta.tmp", dir);
    close(open(path, O_WRONLY | O_CREAT, 0600));    /* as if a meta write had been cut short */
    if (!is_int(slog_open(&log, dir, &opts, 0, NULL, 0, err, sizeof(err)), SLOG_OK, "its log opens"))
        return;
    is_int(check_log(log), 210, "all 200 synced entries, and the 10 unsynced ones the page cache kept");
    ok(access(path, F_OK) != 0, "a leftover meta.tmp is removed");
    slog_cursor_open(log, off_of(199), &c, err, sizeof(err));
    while ((rc = slog_cursor_next(c, &e, err, sizeof(err))) == SLOG_OK)
        n++;
    ok(rc == SLOG_END && n == 10, "a client at the last synced offset resumes with the 10 after it");
    slog_cursor_close(c);
    slog_close(log);

    /* A creation cut short: segment file, no meta. */
    snprintf(path, sizeof(path), "%s/meta", dir);
    unlink(path);
    is_int(open_rc(dir, err, sizeof(err)), SLOG_ENOENT, "a directory whose meta is missing holds no log");
    ok(slog_open(&log, dir, &opts, SLOG_CREATE, NULL, 0, err, sizeof(err)) == SLOG_OK && check_log(log) == 0,
       "creating over the leftovers gives an empty log");
    slog_close(log);
}

int
main(void)
{
    char root[] = "/tmp/ferry-slog-crash.XXXXXX";

    if (mkdtemp(root) == NULL)
        bail_out("cannot make a temporary directory: %s", strerror(errno));
    test_torn_tail(root);
    test_synced_damage(root);
    test_torn_rotation(root);
    test_process_crash(root);
    rm_rf(root);
    return done_testing();
}
