/*
 * test/extension/pq_util.h -- small libpq helpers shared by the C tests of the extension.
 *
 * Header only (static inline), like tap.h: each test/extension/<name>.c stays one
 * standalone program. Every helper that returns a string returns a malloc'd copy the
 * caller frees; NULL means SQL NULL or an error (an error is also reported with diag()).
 * The Makefile's rule for a test depends on its .c and tap.h only: touch the .c files
 * after changing this header.
 */
#ifndef FERRY_TEST_PQ_UTIL_H
#define FERRY_TEST_PQ_UTIL_H

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

/* pq_connect opens a connection from the PG* environment (PGDATABASE=ferry_test under
 * test/run.sh), named app in pg_stat_activity; bails out when it cannot. */
static inline PGconn *
pq_connect(const char *app)
{
    PGconn *conn = PQconnectdb("");
    char sql[200];
    PGresult *res;

    if (PQstatus(conn) != CONNECTION_OK)
        bail_out("cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
    snprintf(sql, sizeof(sql), "SET application_name = '%s'", app);
    res = PQexec(conn, sql);
    PQclear(res);
    return conn;
}

/* pq_vfmt formats into a malloc'd string. */
static inline char *
pq_vfmt(const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    char *s;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    s = malloc((size_t) n + 1);
    if (s == NULL)
        bail_out("out of memory");
    vsnprintf(s, (size_t) n + 1, fmt, ap);
    return s;
}

/* pq_exec runs a printf-formatted statement; returns 1 when it succeeded, and reports
 * the error with diag() when it did not. */
static inline TAP_PRINTF(2, 3) int
pq_exec(PGconn *conn, const char *fmt, ...)
{
    va_list ap;
    char *sql;
    PGresult *res;
    int good;

    va_start(ap, fmt);
    sql = pq_vfmt(fmt, ap);
    va_end(ap);
    res = PQexec(conn, sql);
    good = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!good)
        diag("statement failed: %s\n%s", sql, PQerrorMessage(conn));
    PQclear(res);
    free(sql);
    return good;
}

/* pq_value runs a printf-formatted query and returns the first column of its first row
 * (malloc'd; NULL for SQL NULL, no row, or an error). */
static inline TAP_PRINTF(2, 3) char *
pq_value(PGconn *conn, const char *fmt, ...)
{
    va_list ap;
    char *sql;
    char *value = NULL;
    PGresult *res;

    va_start(ap, fmt);
    sql = pq_vfmt(fmt, ap);
    va_end(ap);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        diag("query failed: %s\n%s", sql, PQerrorMessage(conn));
    else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        value = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    free(sql);
    return value;
}

/* pq_value_params runs a query with text parameters and returns its first value, as
 * pq_value does. */
static inline char *
pq_value_params(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
    char *value = NULL;
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        diag("query failed: %s\n%s", sql, PQerrorMessage(conn));
    else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        value = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return value;
}

/* pq_send_params starts a query with text parameters without waiting for it; returns 1
 * when it was sent. Collect its value with pq_collect. */
static inline int
pq_send_params(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
    if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0))
    {
        diag("could not send: %s\n%s", sql, PQerrorMessage(conn));
        return 0;
    }
    return 1;
}

/* pq_collect waits for the query sent on conn and returns its first value (malloc'd),
 * reading every result so that the connection is ready again. */
static inline char *
pq_collect(PGconn *conn)
{
    char *value = NULL;
    PGresult *res;

    while ((res = PQgetResult(conn)) != NULL)
    {
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
        {
            if (value == NULL && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
                value = strdup(PQgetvalue(res, 0, 0));
        }
        else if (PQresultStatus(res) != PGRES_COMMAND_OK)
            diag("query failed: %s", PQresultErrorMessage(res));
        PQclear(res);
    }
    return value;
}

/* pq_sleep_ms sleeps ms milliseconds. */
static inline void
pq_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* pq_waits_on_lock polls, through observer, whether the backend pid waits on a lock
 * (pg_stat_activity.wait_event_type = 'Lock'), for up to timeout_ms; returns 1 if it
 * does. */
static inline int
pq_waits_on_lock(PGconn *observer, int pid, long timeout_ms)
{
    for (long waited = 0; waited <= timeout_ms; waited += 50)
    {
        char *w = pq_value(observer,
                           "SELECT count(*) FROM pg_stat_activity "
                           "WHERE pid = %d AND wait_event_type = 'Lock'", pid);
        int waiting = w != NULL && strcmp(w, "1") == 0;

        free(w);
        if (waiting)
            return 1;
        pq_sleep_ms(50);
    }
    return 0;
}

/* pq_str_eq is 1 when both are non-NULL and equal; NULLs are never equal here. */
static inline int
pq_str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

#endif                          /* FERRY_TEST_PQ_UTIL_H */
