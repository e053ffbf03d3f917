/*
 * gateway/repl.c -- logical replication client: setup state machine, CopyBoth streaming of
 * XLogData and keepalives, standby status updates.
 *
 * libpq runs non-blocking throughout. Setup is a chain of simple queries on the
 * replication connection (Step below); each query's results are gathered with
 * PQconsumeInput/PQisBusy/PQgetResult and checked before the next is sent. Once
 * START_REPLICATION answers with CopyBoth the connection streams: PQgetCopyData(async)
 * yields 'w' XLogData and 'k' keepalive messages; we answer with 'r' standby status.
 * Wire formats: PostgreSQL docs, "Streaming Replication Protocol".
 */
#include "repl.h"

#include <ctype.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define XLOGDATA_HDR 25         /* 'w', dataStart, walEnd, sendTime */
#define KEEPALIVE_LEN 18        /* 'k', walEnd, sendTime, replyRequested */
#define STATUS_LEN 34           /* 'r', write, flush, apply, sendTime, replyRequested */
#define HEARTBEAT_MS 10000      /* status update at least this often, changed or not */
#define PG_EPOCH_UNIX_SECS INT64_C(946684800) /* 2000-01-01 in Unix seconds */

/* Where a Repl stands. */
typedef enum State
{
    ST_CONNECTING,              /* PQconnectPoll until CONNECTION_OK */
    ST_SETUP,                   /* running the setup queries (Step) */
    ST_STREAMING,               /* CopyBoth: repl_read / repl_tick */
    ST_FAILED                   /* an error happened: only repl_close is left */
} State;

/* The setup queries, in order. */
typedef enum Step
{
    STEP_WAL_LEVEL,             /* SHOW wal_level */
    STEP_IDENTIFY,              /* IDENTIFY_SYSTEM */
    STEP_PUBLICATION,           /* does the publication exist? */
    STEP_SLOT,                  /* does the slot exist, and is it usable? */
    STEP_CREATE_SLOT,           /* CREATE_REPLICATION_SLOT */
    STEP_START                  /* START_REPLICATION */
} Step;

struct Repl
{
    PGconn *conn;               /* the replication connection; NULL once closed */
    State state;                /* see State */
    Step step;                  /* current setup query (ST_SETUP) */
    ReplErrKind errkind;        /* kind of the last failure */
    PGresult *res;              /* first result of the current setup query, or NULL */
    int out_pending;            /* PQflush left output to send */
    int slot_retry;             /* CREATE found the slot created meanwhile: looked again */
    int connect_begun;          /* PQconnectPoll was called (the first call waits for writable) */

    /* options (strings owned) */
    char *slot;                 /* slot name */
    char *publication;          /* publication name */
    uint64_t opt_start_lsn;     /* ReplOptions.start_lsn */
    int no_create_slot;         /* ReplOptions.no_create_slot */
    int no_idle_advance;        /* ReplOptions.no_idle_advance */
    int status_interval_ms;     /* ReplOptions.status_interval_ms */

    /* from setup */
    char sysid[32];             /* IDENTIFY_SYSTEM systemid */
    int timeline;               /* IDENTIFY_SYSTEM timeline */
    char dbname[REPL_NAME_MAX + 1]; /* database of the connection */
    int slot_created;           /* the slot was created by this Repl */
    uint64_t start_lsn;         /* the LSN given to START_REPLICATION */

    /* streaming positions */
    uint64_t received;          /* highest XLogData dataStart received */
    uint64_t confirmed;         /* highest repl_confirm (or the slot's start position) */
    uint64_t server_wal_end;    /* server's WAL end from its last message */
    int64_t server_time;        /* server's clock in its last message (us since 2000) */
    int in_xact;                /* a Begin was received and its Commit not yet */
    int idle_valid;             /* idle_lsn/idle_needs hold a keepalive position */
    uint64_t idle_lsn;          /* keepalive WAL end received outside a transaction */
    uint64_t idle_needs;        /* confirmed must reach this for idle_lsn to be flushed */

    /* status updates */
    int status_due;             /* send one as soon as possible (server asked, or queue was full) */
    int64_t last_status_ms;     /* repl_now_ms of the last status update, 0 never */
    uint64_t sent_write;        /* write position of the last status update */
    uint64_t sent_flush;        /* flush position of the last status update */
};

/* ---- small helpers ----------------------------------------------------------------- */

/*
 * set_err records a failure of kind in r (which may be NULL: a usage error, or no Repl
 * yet), marks r failed, formats the message into the caller's err and returns -1.
 */
static int __attribute__((format(printf, 5, 6)))
set_err(Repl *r, ReplErrKind kind, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (r != NULL)
    {
        r->errkind = kind;
        r->state = ST_FAILED;
    }
    if (err == NULL || errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* chomp copies a libpq message into buf, on one line, without trailing newlines. */
static const char *
chomp(const char *msg, char *buf, size_t size)
{
    size_t n;

    snprintf(buf, size, "%s", msg != NULL && *msg ? msg : "no message from libpq");
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return buf;
}

static uint64_t
get64(const char *p)
{
    const unsigned char *u = (const unsigned char *) p;
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | u[i];
    return v;
}

static void
put64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
    {
        p[i] = (char) (v & 0xff);
        v >>= 8;
    }
}

static int
valid_slot_name(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!(islower((unsigned char) s[n]) || isdigit((unsigned char) s[n]) || s[n] == '_'))
            return 0;
    return n > 0 && n <= REPL_NAME_MAX;
}

/* flush_pos is the flush position we may report: see repl.h on the idle advance. */
static uint64_t
flush_pos(const Repl *r)
{
    uint64_t f = r->confirmed;

    if (!r->no_idle_advance && r->idle_valid && r->confirmed >= r->idle_needs && r->idle_lsn > f)
        f = r->idle_lsn;
    return f;
}

static uint64_t
write_pos(const Repl *r)
{
    uint64_t f = flush_pos(r);

    return r->received > f ? r->received : f;
}

/* ---- errors from the server --------------------------------------------------------- */

/* server_error sets err from a failed setup or streaming result, classified by SQLSTATE. */
static int
server_error(Repl *r, PGresult *res, const char *doing, char *err, size_t errlen)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char msg[512];

    chomp(res ? PQresultErrorMessage(res) : PQerrorMessage(r->conn), msg, sizeof(msg));
    if (state != NULL && strcmp(state, "55006") == 0)
        set_err(r, REPL_ERR_SLOT_IN_USE, err, errlen,
                "replication slot \"%s\" is in use by another process (%s): stop the other "
                "consumer (another ferryd?) or give this one its own slot name", r->slot, msg);
    else if (state != NULL && strcmp(state, "42704") == 0)
        set_err(r, REPL_ERR_CONFIG, err, errlen, "%s: %s (does publication \"%s\" exist?)",
                doing, msg, r->publication);
    else if (state != NULL && (strncmp(state, "42", 2) == 0 || strncmp(state, "55", 2) == 0
                               || strncmp(state, "53", 2) == 0))
        set_err(r, REPL_ERR_CONFIG, err, errlen, "%s: %s", doing, msg);
    else if (state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0)
        set_err(r, REPL_ERR_CONNECT, err, errlen, "%s: %s", doing, msg);
    else
        set_err(r, REPL_ERR_PROTOCOL, err, errlen, "%s: %s", doing, msg);
    return -1;
}

/* ---- setup ------------------------------------------------------------------------- */

void
repl_options_init(ReplOptions *o)
{
    memset(o, 0, sizeof(*o));
    o->conninfo = "";
    o->publication = "ferry";
    o->status_interval_ms = 1000;
    o->setup_timeout_ms = 60000;
    o->application_name = "ferryd";
}

/* send_query sends the query of step, escaping the names it contains. */
static int
send_query(Repl *r, Step step, char *err, size_t errlen)
{
    char sql[1024], lsn[REPL_LSN_BUFLEN], *lit = NULL;
    int rc;

    r->step = step;
    switch (step)
    {
        case STEP_WAL_LEVEL:
            snprintf(sql, sizeof(sql), "SHOW wal_level");
            break;
        case STEP_IDENTIFY:
            snprintf(sql, sizeof(sql), "IDENTIFY_SYSTEM");
            break;
        case STEP_PUBLICATION:
        case STEP_SLOT:
            lit = PQescapeLiteral(r->conn, step == STEP_SLOT ? r->slot : r->publication, SIZE_MAX);
            if (lit == NULL)
                return set_err(r, REPL_ERR_MEMORY, err, errlen, "cannot quote a name: %s",
                               PQerrorMessage(r->conn));
            if (step == STEP_PUBLICATION)
                snprintf(sql, sizeof(sql),
                         "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s", lit);
            else
                snprintf(sql, sizeof(sql),
                         "SELECT plugin, slot_type, database, active, active_pid, "
                         "confirmed_flush_lsn FROM pg_catalog.pg_replication_slots "
                         "WHERE slot_name = %s", lit);
            PQfreemem(lit);
            break;
        case STEP_CREATE_SLOT:
            /* the pre-15 syntax, still accepted: no exported snapshot */
            snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput NOEXPORT_SNAPSHOT",
                     r->slot);
            break;
        case STEP_START:
        {
            /* publication_names is a string holding a list of (quoted) identifiers */
            char pubs[4 * REPL_NAME_MAX + 8], *p = pubs;

            *p++ = '\'';
            *p++ = '"';
            for (const char *s = r->publication; *s; s++)
            {
                if (*s == '"')
                    *p++ = '"';
                else if (*s == '\'')
                    *p++ = '\'';
                *p++ = *s;
            }
            *p++ = '"';
            *p++ = '\'';
            *p = '\0';
            r->start_lsn = r->opt_start_lsn;
            snprintf(sql, sizeof(sql),
                     "START_REPLICATION SLOT %s LOGICAL %s (proto_version '1', publication_names %s)",
                     r->slot, repl_lsn_format(r->start_lsn, lsn), pubs);
            break;
        }
    }
    if (!PQsendQuery(r->conn, sql))
    {
        char msg[512];

        return set_err(r, REPL_ERR_CONNECT, err, errlen, "cannot send \"%.40s\" to PostgreSQL: %s",
                       sql, chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
    }
    rc = PQflush(r->conn);
    if (rc < 0)
    {
        char msg[512];

        return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection: %s",
                       chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
    }
    r->out_pending = rc == 1;
    return 0;
}

/* step_done checks the result of the finished setup query and sends the next one. */
static int
step_done(Repl *r, PGresult *res, char *err, size_t errlen)
{
    static const char *what[] = {"SHOW wal_level", "IDENTIFY_SYSTEM", "checking the publication",
                                 "looking up the replication slot", "CREATE_REPLICATION_SLOT",
                                 "START_REPLICATION"};
    uint64_t lsn;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        if (r->step == STEP_CREATE_SLOT && res != NULL && !r->slot_retry
            && PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL
            && strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42710") == 0)
        {
            /* created by someone else since we looked: look again, once */
            r->slot_retry = 1;
            return send_query(r, STEP_SLOT, err, errlen);
        }
        return server_error(r, res, what[r->step], err, errlen);
    }
    switch (r->step)
    {
        case STEP_WAL_LEVEL:
            if (PQntuples(res) != 1 || PQnfields(res) < 1)
                return set_err(r, REPL_ERR_PROTOCOL, err, errlen, "SHOW wal_level returned no value");
            if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0)
                return set_err(r, REPL_ERR_CONFIG, err, errlen,
                               "PostgreSQL runs with wal_level = %s; logical replication needs "
                               "wal_level = logical: set it in postgresql.conf and restart PostgreSQL",
                               PQgetvalue(res, 0, 0));
            return send_query(r, STEP_IDENTIFY, err, errlen);
        case STEP_IDENTIFY:
            if (PQntuples(res) != 1 || PQnfields(res) < 4)
                return set_err(r, REPL_ERR_PROTOCOL, err, errlen,
                               "IDENTIFY_SYSTEM returned %d rows of %d fields, expected 1 of 4",
                               PQntuples(res), PQnfields(res));
            if (PQgetisnull(res, 0, 3))
                return set_err(r, REPL_ERR_CONFIG, err, errlen,
                               "the replication connection is not bound to a database "
                               "(replication=database was overridden?)");
            snprintf(r->sysid, sizeof(r->sysid), "%s", PQgetvalue(res, 0, 0));
            r->timeline = atoi(PQgetvalue(res, 0, 1));
            snprintf(r->dbname, sizeof(r->dbname), "%s", PQgetvalue(res, 0, 3));
            return send_query(r, STEP_PUBLICATION, err, errlen);
        case STEP_PUBLICATION:
            if (PQntuples(res) == 0)
                return set_err(r, REPL_ERR_CONFIG, err, errlen,
                               "publication \"%s\" does not exist in database \"%s\": "
                               "CREATE EXTENSION ferry creates publication ferry; check the "
                               "database and the publication name", r->publication, r->dbname);
            return send_query(r, STEP_SLOT, err, errlen);
        case STEP_SLOT:
            if (PQntuples(res) == 0)
            {
                if (r->no_create_slot)
                    return set_err(r, REPL_ERR_CONFIG, err, errlen,
                                   "replication slot \"%s\" does not exist (and creating it was "
                                   "not allowed)", r->slot);
                return send_query(r, STEP_CREATE_SLOT, err, errlen);
            }
            if (strcmp(PQgetvalue(res, 0, 1), "logical") != 0)
                return set_err(r, REPL_ERR_CONFIG, err, errlen,
                               "replication slot \"%s\" is a %s slot, not a logical one: drop it "
                               "or choose another slot name", r->slot, PQgetvalue(res, 0, 1));
            if (strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0)
                return set_err(r, REPL_ERR_CONFIG, err, errlen,
                               "replication slot \"%s\" uses plugin %s, not pgoutput: drop it "
                               "(SELECT pg_drop_replication_slot('%s')) or choose another slot name",
                               r->slot, PQgetvalue(res, 0, 0), r->slot);
            if (strcmp(PQgetvalue(res, 0, 2), r->dbname) != 0)
                return set_err(r, REPL_ERR_CONFIG, err, errlen,
                               "replication slot \"%s\" belongs to database \"%s\", not \"%s\": "
                               "choose another slot name", r->slot, PQgetvalue(res, 0, 2),
                               r->dbname);
            if (strcmp(PQgetvalue(res, 0, 3), "t") == 0)
                return set_err(r, REPL_ERR_SLOT_IN_USE, err, errlen,
                               "replication slot \"%s\" is in use by another process (PID %s): "
                               "stop the other consumer (another ferryd?) or give this one its "
                               "own slot name", r->slot, PQgetvalue(res, 0, 4));
            if (!PQgetisnull(res, 0, 5) && repl_lsn_parse(PQgetvalue(res, 0, 5), &lsn) == 0
                && lsn > r->confirmed)
                r->confirmed = lsn;
            return send_query(r, STEP_START, err, errlen);
        case STEP_CREATE_SLOT:
            /* slot_name, consistent_point, snapshot_name, output_plugin */
            if (PQntuples(res) == 1 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1)
                && repl_lsn_parse(PQgetvalue(res, 0, 1), &lsn) == 0 && lsn > r->confirmed)
                r->confirmed = lsn;
            r->slot_created = 1;
            return send_query(r, STEP_START, err, errlen);
        case STEP_START:
            break;
    }
    return set_err(r, REPL_ERR_PROTOCOL, err, errlen,
                   "START_REPLICATION answered with rows instead of starting to stream");
}

/* start is repl_start, saying in *kind (may be NULL) why it failed. */
static Repl *
start(const ReplOptions *o, ReplErrKind *kind, char *err, size_t errlen)
{
    const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
    const char *vals[4];
    Repl *r;

    if (kind != NULL)
        *kind = REPL_ERR_USAGE;
    if (o == NULL || o->slot == NULL || !valid_slot_name(o->slot))
        return set_err(NULL, REPL_ERR_USAGE, err, errlen,
                       "invalid replication slot name \"%s\": use 1 to %d lower-case letters, "
                       "digits and underscores", o && o->slot ? o->slot : "(null)", REPL_NAME_MAX), NULL;
    if (o->publication == NULL || o->publication[0] == '\0' || strlen(o->publication) > REPL_NAME_MAX)
        return set_err(NULL, REPL_ERR_USAGE, err, errlen,
                       "invalid publication name \"%s\": 1 to %d bytes", o->publication ? o->publication : "(null)",
                       REPL_NAME_MAX), NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->slot = strdup(o->slot)) == NULL
        || (r->publication = strdup(o->publication)) == NULL)
    {
        repl_close(r);
        if (kind != NULL)
            *kind = REPL_ERR_MEMORY;
        return set_err(NULL, REPL_ERR_MEMORY, err, errlen, "out of memory opening replication"), NULL;
    }
    r->opt_start_lsn = o->start_lsn;
    r->confirmed = o->start_lsn;
    r->no_create_slot = o->no_create_slot;
    r->no_idle_advance = o->no_idle_advance;
    r->status_interval_ms = o->status_interval_ms > 0 ? o->status_interval_ms : 1000;
    /* like libpq's expand_dbname: a string with '=' or a URI is a conninfo, else a dbname */
    if (o->conninfo != NULL && (strchr(o->conninfo, '=') != NULL
                                || strncmp(o->conninfo, "postgresql://", 13) == 0
                                || strncmp(o->conninfo, "postgres://", 11) == 0))
    {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(o->conninfo, &perr);

        if (opts == NULL)
        {
            char msg[512];

            if (kind != NULL)
                *kind = perr != NULL ? REPL_ERR_CONFIG : REPL_ERR_MEMORY;
            set_err(NULL, REPL_ERR_CONFIG, err, errlen, "invalid conninfo for the replication "
                    "connection: %s", chomp(perr ? perr : "out of memory", msg, sizeof(msg)));
            PQfreemem(perr);
            repl_close(r);
            return NULL;
        }
        PQconninfoFree(opts);
    }
    vals[0] = o->conninfo ? o->conninfo : "";
    vals[1] = "database";
    vals[2] = o->application_name ? o->application_name : "ferryd";
    vals[3] = NULL;
    r->conn = PQconnectStartParams(keys, vals, 1);
    if (r->conn == NULL)
    {
        repl_close(r);
        if (kind != NULL)
            *kind = REPL_ERR_MEMORY;
        return set_err(NULL, REPL_ERR_MEMORY, err, errlen, "out of memory opening replication"), NULL;
    }
    r->state = ST_CONNECTING;
    if (kind != NULL)
        *kind = REPL_OK;
    return r;
}

Repl *
repl_start(const ReplOptions *o, char *err, size_t errlen)
{
    return start(o, NULL, err, errlen);
}

int
repl_connect_poll(Repl *r, char *err, size_t errlen)
{
    char msg[512];

    if (r == NULL || r->state == ST_FAILED)
        return set_err(NULL, REPL_ERR_USAGE, err, errlen, "replication connection already failed");
    if (r->state == ST_STREAMING)
        return 0;
    if (r->state == ST_CONNECTING)
    {
        /* libpq: after PQconnectStart, behave as if PQconnectPoll had said "writing" */
        if (!r->connect_begun && PQstatus(r->conn) != CONNECTION_BAD)
        {
            r->connect_begun = 1;
            return REPL_WANT_WRITE;
        }
        switch (PQconnectPoll(r->conn))
        {
            case PGRES_POLLING_READING:
                return REPL_WANT_READ;
            case PGRES_POLLING_WRITING:
                return REPL_WANT_WRITE;
            case PGRES_POLLING_OK:
                break;
            default:
                chomp(PQerrorMessage(r->conn), msg, sizeof(msg));
                if (strstr(msg, "invalid") != NULL && strstr(msg, "connection option") != NULL)
                    return set_err(r, REPL_ERR_CONFIG, err, errlen, "invalid conninfo for the "
                                   "replication connection: %s", msg);
                if (strstr(msg, "replication role") != NULL)
                    return set_err(r, REPL_ERR_CONFIG, err, errlen, "cannot connect to PostgreSQL "
                                   "for replication: %s (the role needs the REPLICATION attribute: "
                                   "ALTER ROLE ... REPLICATION)", msg);
                if (strstr(msg, "authentication failed") != NULL
                    || (strstr(msg, "database") != NULL && strstr(msg, "does not exist") != NULL))
                    return set_err(r, REPL_ERR_CONFIG, err, errlen, "cannot connect to PostgreSQL "
                                   "for replication: %s", msg);
                return set_err(r, REPL_ERR_CONNECT, err, errlen, "cannot connect to PostgreSQL for "
                               "replication: %s%s", msg, strstr(msg, "Is the server running") ? ""
                               : " (is the server running, and are host and port right?)");
        }
        if (PQsetnonblocking(r->conn, 1) != 0)
            return set_err(r, REPL_ERR_CONNECT, err, errlen, "cannot make the replication "
                           "connection non-blocking: %s", chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
        r->state = ST_SETUP;
        if (send_query(r, STEP_WAL_LEVEL, err, errlen) < 0)
            return -1;
    }
    for (;;)
    {
        PGresult *res;

        if (r->out_pending)
        {
            int rc;

            if (!PQconsumeInput(r->conn) || (rc = PQflush(r->conn)) < 0)
                return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection "
                               "during setup: %s", chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
            r->out_pending = rc == 1;
            if (r->out_pending)
                return REPL_WANT_READ | REPL_WANT_WRITE;
        }
        if (!PQconsumeInput(r->conn))
            return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection "
                           "during setup: %s", chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
        if (PQisBusy(r->conn))
            return REPL_WANT_READ;
        res = PQgetResult(r->conn);
        if (res != NULL && PQresultStatus(res) == PGRES_COPY_BOTH)
        {
            PQclear(res);
            PQclear(r->res);
            r->res = NULL;
            if (r->step != STEP_START)
                return set_err(r, REPL_ERR_PROTOCOL, err, errlen, "the server started streaming "
                               "before START_REPLICATION");
            r->state = ST_STREAMING;
            return 0;
        }
        if (res != NULL)
        {
            if (r->res == NULL)
                r->res = res;
            else
                PQclear(res);
            continue;
        }
        /* the query is complete: check it, send the next one */
        res = r->res;
        r->res = NULL;
        if (step_done(r, res, err, errlen) < 0)
        {
            PQclear(res);
            return -1;
        }
        PQclear(res);
    }
}

Repl *
repl_open_opts(const ReplOptions *o, ReplErrKind *kind, char *err, size_t errlen)
{
    int64_t deadline;
    Repl *r;

    if (kind != NULL)
        *kind = REPL_OK;
    r = start(o, kind, err, errlen);
    if (r == NULL)
        return NULL;
    deadline = o->setup_timeout_ms > 0 ? repl_now_ms() + o->setup_timeout_ms : 0;
    for (;;)
    {
        struct pollfd pfd;
        int rc = repl_connect_poll(r, err, errlen), timeout = -1;
        static const char *steps[] = {"checking wal_level", "identifying the system",
                                      "checking the publication", "looking up the slot",
                                      "creating the slot (it waits for running transactions to end)",
                                      "starting replication"};

        if (rc == 0)
            return r;
        if (rc < 0)
            break;
        if (deadline)
        {
            int64_t left = deadline - repl_now_ms();

            if (left <= 0)
            {
                set_err(r, REPL_ERR_TIMEOUT, err, errlen, "replication setup timed out after %d ms "
                        "while %s", o->setup_timeout_ms,
                        r->state == ST_CONNECTING ? "connecting" : steps[r->step]);
                break;
            }
            timeout = (int) left;
        }
        pfd.fd = repl_socket(r);
        pfd.events = (short) (((rc & REPL_WANT_READ) ? POLLIN : 0) | ((rc & REPL_WANT_WRITE) ? POLLOUT : 0));
        pfd.revents = 0;
        if (pfd.fd < 0)
        {
            set_err(r, REPL_ERR_CONNECT, err, errlen, "replication connection has no socket");
            break;
        }
        (void) poll(&pfd, 1, timeout);
    }
    if (kind != NULL)
        *kind = r->errkind;
    repl_close(r);
    return NULL;
}

Repl *
repl_open(const char *conninfo, const char *slot_name, const char *publication, char *err,
          size_t errlen)
{
    ReplOptions o;

    repl_options_init(&o);
    o.conninfo = conninfo;
    o.slot = slot_name;
    o.publication = publication;
    return repl_open_opts(&o, NULL, err, errlen);
}

/* ---- streaming --------------------------------------------------------------------- */

int
repl_socket(const Repl *r)
{
    return r != NULL && r->conn != NULL ? PQsocket(r->conn) : -1;
}

/* pg_now_us is the realtime clock in microseconds since 2000-01-01. */
static int64_t
pg_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t) ts.tv_sec - PG_EPOCH_UNIX_SECS) * 1000000 + ts.tv_nsec / 1000;
}

/* send_status queues a standby status update and tries to send it. */
static int
send_status(Repl *r, int64_t now_ms, char *err, size_t errlen)
{
    char buf[STATUS_LEN], msg[512];
    uint64_t w = write_pos(r), f = flush_pos(r);
    int rc;

    buf[0] = 'r';
    put64(buf + 1, w);
    put64(buf + 9, f);
    put64(buf + 17, f);
    put64(buf + 25, (uint64_t) pg_now_us());
    buf[33] = 0;
    rc = PQputCopyData(r->conn, buf, STATUS_LEN);
    if (rc < 0)
        return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection "
                       "sending a status update: %s", chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
    if (rc == 0)
    {
        r->status_due = 1;      /* output buffer full: next time */
        r->out_pending = 1;
    }
    else
    {
        r->status_due = 0;
        r->last_status_ms = now_ms;
        r->sent_write = w;
        r->sent_flush = f;
    }
    rc = PQflush(r->conn);
    if (rc < 0)
        return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection "
                       "sending a status update: %s", chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
    r->out_pending = rc == 1 || r->status_due;
    return 0;
}

/* stream_ended reports why PQgetCopyData said the stream is over. */
static int
stream_ended(Repl *r, char *err, size_t errlen)
{
    PGresult *res = PQgetResult(r->conn);
    int rc;

    if (res == NULL || PQresultStatus(res) == PGRES_COMMAND_OK)
    {
        rc = set_err(r, REPL_ERR_CONNECT, err, errlen, "the server ended the replication stream");
    }
    else
        rc = server_error(r, res, "replication stream stopped", err, errlen);
    PQclear(res);
    while ((res = PQgetResult(r->conn)) != NULL && PQresultStatus(res) != PGRES_COPY_BOTH)
        PQclear(res);
    PQclear(res);
    return rc;
}

int
repl_read(Repl *r, repl_data_fn fn, void *arg, char *err, size_t errlen)
{
    char msg[512];
    int count = 0;

    if (r == NULL || r->state != ST_STREAMING || fn == NULL)
        return set_err(NULL, REPL_ERR_USAGE, err, errlen, "repl_read: %s", fn == NULL ? "no handler"
                       : "the replication connection is not streaming");
    if (!PQconsumeInput(r->conn))
        return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection: %s",
                       chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
    for (;;)
    {
        char *buf = NULL;
        int n = PQgetCopyData(r->conn, &buf, 1);

        if (n == 0)
            break;
        if (n == -1)
            return stream_ended(r, err, errlen);
        if (n < 0)
            return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection: %s",
                           chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
        if (buf[0] == 'w')
        {
            uint64_t start, end;
            const char *payload = buf + XLOGDATA_HDR;
            size_t len = (size_t) n - XLOGDATA_HDR;
            int rc;

            if (n < XLOGDATA_HDR)
            {
                PQfreemem(buf);
                return set_err(r, REPL_ERR_PROTOCOL, err, errlen, "XLogData message of %d bytes "
                               "is shorter than its %d-byte header", n, XLOGDATA_HDR);
            }
            start = get64(buf + 1);
            end = get64(buf + 9);
            r->server_time = (int64_t) get64(buf + 17);
            if (start > r->received)
                r->received = start;
            if (end > r->server_wal_end)
                r->server_wal_end = end;
            if (len > 0 && payload[0] == 'B')
                r->in_xact = 1;
            else if (len > 0 && payload[0] == 'C')
                r->in_xact = 0;
            count++;
            if (err != NULL && errlen > 0)
                err[0] = '\0';
            rc = fn(arg, start, end, payload, len, err, errlen);
            if (rc < 0)
            {
                if (err != NULL && errlen > 0 && err[0] == '\0')
                {
                    char lsn[REPL_LSN_BUFLEN];

                    snprintf(err, errlen, "the replication data handler failed at LSN %s",
                             repl_lsn_format(start, lsn));
                }
                PQfreemem(buf);
                r->errkind = REPL_ERR_HANDLER;
                r->state = ST_FAILED;
                return -1;
            }
            if (rc != REPL_KEEP)
                PQfreemem(buf);
        }
        else if (buf[0] == 'k')
        {
            uint64_t end;

            if (n < KEEPALIVE_LEN)
            {
                PQfreemem(buf);
                return set_err(r, REPL_ERR_PROTOCOL, err, errlen, "keepalive message of %d bytes, "
                               "expected %d", n, KEEPALIVE_LEN);
            }
            end = get64(buf + 1);
            r->server_time = (int64_t) get64(buf + 9);
            if (end > r->server_wal_end)
                r->server_wal_end = end;
            if (!r->in_xact && end >= r->received)
            {
                /* nothing for us between what we were sent and end */
                r->idle_valid = 1;
                r->idle_lsn = end;
                r->idle_needs = r->received;
            }
            if (buf[17])
                r->status_due = 1;
            PQfreemem(buf);
        }
        else
        {
            int type = (unsigned char) buf[0];

            PQfreemem(buf);
            return set_err(r, REPL_ERR_PROTOCOL, err, errlen, "unknown replication message "
                           "type 0x%02x", type);
        }
    }
    if (r->status_due && send_status(r, repl_now_ms(), err, errlen) < 0)
        return -1;
    if (r->out_pending && repl_flush(r, err, errlen) < 0)
        return -1;
    return count;
}

void
repl_confirm(Repl *r, uint64_t flush_lsn)
{
    if (r != NULL && flush_lsn > r->confirmed)
        r->confirmed = flush_lsn;
}

int
repl_tick(Repl *r, int64_t now_ms, char *err, size_t errlen)
{
    int64_t since;

    if (r == NULL || r->state == ST_FAILED)
        return set_err(NULL, REPL_ERR_USAGE, err, errlen, "repl_tick: the replication connection "
                       "failed");
    if (r->state != ST_STREAMING)
        return 0;
    since = now_ms - r->last_status_ms;
    if (r->status_due || r->last_status_ms == 0 || since >= HEARTBEAT_MS
        || (since >= r->status_interval_ms
            && (write_pos(r) != r->sent_write || flush_pos(r) != r->sent_flush)))
        return send_status(r, now_ms, err, errlen);
    if (r->out_pending)
        return repl_flush(r, err, errlen) < 0 ? -1 : 0;
    return 0;
}

int
repl_send_status(Repl *r, char *err, size_t errlen)
{
    if (r == NULL || r->state != ST_STREAMING)
        return set_err(NULL, REPL_ERR_USAGE, err, errlen, "repl_send_status: the replication "
                       "connection is not streaming");
    return send_status(r, repl_now_ms(), err, errlen);
}

int
repl_wants_write(const Repl *r)
{
    return r != NULL && r->state != ST_FAILED && (r->out_pending || r->status_due);
}

int
repl_flush(Repl *r, char *err, size_t errlen)
{
    char msg[512];
    int rc;

    if (r == NULL || r->conn == NULL || r->state == ST_FAILED)
        return set_err(NULL, REPL_ERR_USAGE, err, errlen, "repl_flush: no usable connection");
    if (r->status_due && r->state == ST_STREAMING)
        return send_status(r, repl_now_ms(), err, errlen) < 0 ? -1 : r->out_pending;
    rc = PQflush(r->conn);
    if (rc < 0)
        return set_err(r, REPL_ERR_CONNECT, err, errlen, "lost the replication connection: %s",
                       chomp(PQerrorMessage(r->conn), msg, sizeof(msg)));
    r->out_pending = rc == 1;
    return rc;
}

void
repl_close(Repl *r)
{
    if (r == NULL)
        return;
    if (r->conn != NULL && r->state == ST_STREAMING && PQstatus(r->conn) == CONNECTION_OK)
    {
        /* a last status update, so the slot keeps the newest confirmed position */
        if (flush_pos(r) != r->sent_flush && PQsetnonblocking(r->conn, 0) == 0)
        {
            char err[16];

            (void) send_status(r, repl_now_ms(), err, sizeof(err));
            (void) PQflush(r->conn);
        }
    }
    PQclear(r->res);
    if (r->conn != NULL)
        PQfinish(r->conn);
    free(r->slot);
    free(r->publication);
    free(r);
}

void
repl_payload_free(const char *payload)
{
    if (payload != NULL)
        PQfreemem((char *) payload - XLOGDATA_HDR);
}

/* ---- state ------------------------------------------------------------------------- */

ReplErrKind repl_error_kind(const Repl *r) { return r ? r->errkind : REPL_ERR_USAGE; }
uint64_t repl_received_lsn(const Repl *r) { return r->received; }
uint64_t repl_confirmed_lsn(const Repl *r) { return r->confirmed; }
uint64_t repl_flushed_lsn(const Repl *r) { return r->sent_flush; }
uint64_t repl_server_wal_end(const Repl *r) { return r->server_wal_end; }
int64_t repl_server_time(const Repl *r) { return r->server_time; }
uint64_t repl_start_lsn(const Repl *r) { return r->start_lsn; }
int repl_slot_created(const Repl *r) { return r->slot_created; }
const char *repl_system_id(const Repl *r) { return r->sysid; }
int repl_timeline(const Repl *r) { return r->timeline; }

/* ---- helpers ----------------------------------------------------------------------- */

/* parse_hex32 reads 1 to 8 hex digits ending at a stop character; returns chars read. */
static int
parse_hex32(const char *s, char stop, uint32_t *out)
{
    uint32_t v = 0;
    int n = 0;

    for (; s[n] != stop; n++)
    {
        int c = (unsigned char) s[n], d;

        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        if (n == 8)
            return -1;
        v = (v << 4) | (uint32_t) d;
    }
    if (n == 0)
        return -1;
    *out = v;
    return n;
}

int
repl_lsn_parse(const char *s, uint64_t *lsn)
{
    uint32_t hi, lo;
    int n;

    if (s == NULL || (n = parse_hex32(s, '/', &hi)) < 0 || parse_hex32(s + n + 1, '\0', &lo) < 0)
        return -1;
    *lsn = ((uint64_t) hi << 32) | lo;
    return 0;
}

char *
repl_lsn_format(uint64_t lsn, char buf[REPL_LSN_BUFLEN])
{
    snprintf(buf, REPL_LSN_BUFLEN, "%" PRIX32 "/%" PRIX32, (uint32_t) (lsn >> 32), (uint32_t) lsn);
    return buf;
}

int64_t
repl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
