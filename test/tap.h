/*
 * test/tap.h -- a tiny TAP (Test Anything Protocol) library for ferry's C tests.
 *
 * Header only: every function is `static inline`, so a test program is one .c
 * file that includes this header and needs nothing else linked in. The output
 * is TAP 12 on stdout, diagnostics on stderr, the format `prove` reads (the
 * harness runs each built test as `prove --exec '' build/test/...`).
 *
 *     #include "tap.h"                     // the build passes -Itest
 *
 *     int main(void)
 *     {
 *         plan(3);                         // or omit, and end with done_testing()
 *         ok(1 + 1 == 2, "addition works");
 *         is_int(strlen("abc"), 3, "strlen of %s", "abc");
 *         is_str(PQdb(conn), "ferry_test", "connected to the test database");
 *         return done_testing();           // 0 when every test passed and the plan held
 *     }
 *
 * The test macros take a printf-style test name, which is required; each
 * returns 1 when the test passed and 0 when it failed, so a test can guard
 * the ones that depend on it:
 *
 *     if (!ok(conn != NULL, "connected"))
 *         bail_out("cannot connect: %s", PQerrorMessage(conn));
 *
 * A failed test prints where it failed (file and line) and, for is_int and
 * is_str, what it got and what it expected.
 *
 * API (every name below is a macro or function of this header):
 *
 *   plan(n)                   announce n tests ("1..n"); call before the first test
 *   skip_all(fmt, ...)        announce that the whole program is skipped and exit(0)
 *   ok(cond, fmt, ...)        pass when cond is true
 *   is_int(got, want, fmt, ...)  pass when two integers (long long) are equal
 *   is_str(got, want, fmt, ...)  pass when two strings are equal (NULL equals only NULL)
 *   skip(n, fmt, ...)         record n tests as skipped, with a reason
 *   diag(fmt, ...)            print a diagnostic line ("# ...") to stderr
 *   note(fmt, ...)            print a comment line ("# ...") to stdout (shown by prove -v)
 *   bail_out(fmt, ...)        stop the whole run ("Bail out! ..."), exit(255)
 *   done_testing()            print the plan if none was given; returns the exit
 *                             status for main(): 0 if all passed and the count
 *                             matched the plan, 1 otherwise
 *
 * Not thread-safe: call it from one thread.
 */
#ifndef FERRY_TEST_TAP_H
#define FERRY_TEST_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define TAP_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#define TAP_NORETURN __attribute__((noreturn))
#else
#define TAP_PRINTF(fmt_index, first_arg)
#define TAP_NORETURN
#endif

/* The state of one test program: one instance, kept in tap_state(). */
struct tap_state
{
    int planned;                /* number announced by plan(), -1 when none yet */
    int run;                    /* tests run so far, skipped ones included */
    int failed;                 /* tests that failed */
};

/* tap_state returns the program's single state (a static local, so that the
 * header defines no variable a test might leave unused). */
static inline struct tap_state *
tap_state(void)
{
    static struct tap_state state = {-1, 0, 0};

    return &state;
}

/* tap_vprint_lines prints fmt/ap to out, each line prefixed with "# ". */
static inline void
tap_vprint_lines(FILE *out, const char *fmt, va_list ap)
{
    char buf[4096];
    const char *line = buf;

    vsnprintf(buf, sizeof(buf), fmt, ap);
    for (;;)
    {
        const char *nl = strchr(line, '\n');

        if (nl == NULL)
        {
            fprintf(out, "# %s\n", line);
            break;
        }
        fprintf(out, "# %.*s\n", (int) (nl - line), line);
        line = nl + 1;
        if (*line == '\0')
            break;
    }
}

/* diag prints a diagnostic to stderr, after flushing stdout so that it shows
 * next to the test it explains. */
static inline TAP_PRINTF(1, 2) void
diag(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    va_start(ap, fmt);
    tap_vprint_lines(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

/* note prints a comment to stdout; prove shows it only in verbose mode. */
static inline TAP_PRINTF(1, 2) void
note(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_vprint_lines(stdout, fmt, ap);
    va_end(ap);
}

/* plan announces how many tests the program will run. */
static inline void
plan(int n)
{
    tap_state()->planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

/* skip_all announces that the program runs no test, says why, and exits 0. */
static inline TAP_PRINTF(1, 2) TAP_NORETURN void
skip_all(const char *fmt, ...)
{
    va_list ap;

    printf("1..0 # SKIP ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(0);
}

/* bail_out stops the whole test run: prove stops running further programs. */
static inline TAP_PRINTF(1, 2) TAP_NORETURN void
bail_out(const char *fmt, ...)
{
    va_list ap;

    printf("Bail out! ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(255);
}

/* tap_vresult prints one "ok"/"not ok" line; returns pass. */
static inline int
tap_vresult(int pass, const char *file, int line, const char *fmt, va_list ap)
{
    struct tap_state *st = tap_state();
    char name[1024];

    vsnprintf(name, sizeof(name), fmt, ap);
    st->run++;
    if (!pass)
        st->failed++;
    /* '#' would start a directive in TAP: keep names free of it. */
    for (char *p = name; *p; p++)
        if (*p == '#' || *p == '\n')
            *p = ' ';
    printf("%sok %d - %s\n", pass ? "" : "not ", st->run, name);
    if (!pass)
        diag("  Failed test '%s'\n  at %s line %d.", name, file, line);
    fflush(stdout);
    return pass;
}

static inline TAP_PRINTF(4, 5) int
tap_ok_at(const char *file, int line, int pass, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pass = tap_vresult(pass, file, line, fmt, ap);
    va_end(ap);
    return pass;
}

static inline TAP_PRINTF(5, 6) int
tap_is_int_at(const char *file, int line, long long got, long long want,
              const char *fmt, ...)
{
    va_list ap;
    int pass = got == want;

    va_start(ap, fmt);
    tap_vresult(pass, file, line, fmt, ap);
    va_end(ap);
    if (!pass)
        diag("         got: %lld\n    expected: %lld", got, want);
    return pass;
}

static inline TAP_PRINTF(5, 6) int
tap_is_str_at(const char *file, int line, const char *got, const char *want,
              const char *fmt, ...)
{
    va_list ap;
    int pass;

    if (got == NULL || want == NULL)
        pass = got == want;
    else
        pass = strcmp(got, want) == 0;
    va_start(ap, fmt);
    tap_vresult(pass, file, line, fmt, ap);
    va_end(ap);
    if (!pass)
        diag("         got: %s%s%s\n    expected: %s%s%s",
             got ? "'" : "", got ? got : "NULL", got ? "'" : "",
             want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    return pass;
}

/* skip records n tests as skipped ("ok N # skip reason"); use it in place of
 * tests that cannot run, so that the plan still holds. */
static inline TAP_PRINTF(2, 3) void
skip(int n, const char *fmt, ...)
{
    struct tap_state *st = tap_state();
    char reason[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    for (int i = 0; i < n; i++)
        printf("ok %d # skip %s\n", ++st->run, reason);
    fflush(stdout);
}

/* done_testing ends the program's tests: prints the plan when plan() was not
 * called, and returns the exit status for main(). */
static inline int
done_testing(void)
{
    struct tap_state *st = tap_state();

    if (st->planned < 0)
    {
        st->planned = st->run;
        printf("1..%d\n", st->run);
    }
    fflush(stdout);
    if (st->run != st->planned)
    {
        diag("Looks like you planned %d tests but ran %d.", st->planned, st->run);
        return 1;
    }
    if (st->failed > 0)
    {
        diag("Looks like you failed %d test%s of %d.", st->failed,
             st->failed == 1 ? "" : "s", st->run);
        return 1;
    }
    return 0;
}

/* The test macros: they add the caller's file and line to the failure report. */
#define ok(cond, ...) tap_ok_at(__FILE__, __LINE__, (cond) ? 1 : 0, __VA_ARGS__)
#define is_int(got, want, ...) \
    tap_is_int_at(__FILE__, __LINE__, (long long) (got), (long long) (want), __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str_at(__FILE__, __LINE__, (got), (want), __VA_ARGS__)

#endif                          /* FERRY_TEST_TAP_H */
