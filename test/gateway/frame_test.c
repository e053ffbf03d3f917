/*
 * test/gateway/frame_test.c -- frame encoding and decoding (gateway/frame.c): round
 * trips of every client and server message, every decode error, unknown fields
 * ignored (frames written by hand), limits, headroom and buffer handling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "frame.h"
#include "tap.h"

#define HEADROOM 16                     /* stands in for LWS_PRE */

/* ---- a raw protobuf writer, for frames the encoder would never produce -------------- */

typedef struct Raw
{
    uint8_t *data;                      /* bytes written, malloc'd */
    size_t len;                         /* bytes used */
    size_t cap;                         /* bytes allocated */
} Raw;

static void
raw_bytes(Raw *r, const void *p, size_t n)
{
    if (r->len + n > r->cap)
    {
        r->cap = (r->len + n) * 2 + 64;
        r->data = realloc(r->data, r->cap);
        if (r->data == NULL)
            bail_out("out of memory");
    }
    memcpy(r->data + r->len, p, n);
    r->len += n;
}

static void
raw_varint(Raw *r, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;

    do
    {
        b[n] = (uint8_t) (v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    raw_bytes(r, b, n);
}

static void
raw_key(Raw *r, uint32_t field, int wire_type)
{
    raw_varint(r, ((uint64_t) field << 3) | (uint64_t) wire_type);
}

static void
raw_len(Raw *r, uint32_t field, const void *p, size_t n)
{
    raw_key(r, field, 2);
    raw_varint(r, n);
    raw_bytes(r, p, n);
}

static void
raw_str(Raw *r, uint32_t field, const char *s)
{
    raw_len(r, field, s, strlen(s));
}

/* raw_wrap returns a ClientMessage envelope whose field `member` holds inner. */
static Raw
raw_wrap(uint32_t member, const Raw *inner)
{
    Raw env = {0};

    raw_len(&env, member, inner->data, inner->len);
    return env;
}

/* ---- helpers ------------------------------------------------------------------------- */

/* encode_client packs msg (test helper; bails out on failure). */
static uint8_t *
encode_client(const Ferry__V1__ClientMessage *msg, size_t *len)
{
    uint8_t *buf;
    char err[256];
    int rc = frame_encode_client_alloc(msg, 0, &buf, len, err, sizeof(err));

    if (rc != FRAME_OK)
        bail_out("frame_encode_client_alloc: %s", err);
    return buf;
}

/* decode_rc decodes bytes as a ClientMessage with the default limits, returns the rc and
 * frees the message; the error text goes to errbuf. */
static int
decode_rc(const uint8_t *data, size_t len, const FrameLimits *limits, char *errbuf, size_t errlen)
{
    Ferry__V1__ClientMessage *m = NULL;
    int rc = frame_decode_client(data, len, limits, &m, errbuf, errlen);

    if ((rc == FRAME_OK) != (m != NULL))
        diag("decode returned %d with message %p", rc, (void *) m);
    frame_free_client(m);
    return rc;
}

/* expect_client checks that a ClientMessage decodes to the given result. */
static void
expect_client(const Ferry__V1__ClientMessage *msg, int want, const char *want_in_err,
              const char *name)
{
    size_t len;
    uint8_t *buf = encode_client(msg, &len);
    char err[512] = "";
    int rc = decode_rc(buf, len, NULL, err, sizeof(err));

    is_int(rc, want, "%s: %s", name, frame_result_name(want));
    if (want_in_err != NULL && !ok(strstr(err, want_in_err) != NULL,
                                   "%s: the error names %s", name, want_in_err))
        diag("err: %s", err);
    free(buf);
}

/* expect_raw checks that raw bytes decode to the given result. */
static void
expect_raw(const Raw *r, int want, const char *want_in_err, const char *name)
{
    char err[512] = "";
    int rc = decode_rc(r->data, r->len, NULL, err, sizeof(err));

    is_int(rc, want, "%s: %s", name, frame_result_name(want));
    if (rc != want)
        diag("err: %s", err);
    if (want_in_err != NULL && !ok(strstr(err, want_in_err) != NULL,
                                   "%s: the error names %s", name, want_in_err))
        diag("err: %s", err);
}

/* roundtrip_server encodes msg into a caller buffer with headroom and decodes it. */
static Ferry__V1__ServerMessage *
roundtrip_server(const Ferry__V1__ServerMessage *msg, const char *name)
{
    uint8_t buf[4096];
    size_t len = 0;
    char err[256];
    Ferry__V1__ServerMessage *out = NULL;
    int rc;

    memset(buf, 0xaa, sizeof(buf));
    rc = frame_encode_server(msg, buf, sizeof(buf), HEADROOM, &len, err, sizeof(err));
    if (!is_int(rc, FRAME_OK, "%s: encodes", name))
        diag("err: %s", err);
    is_int(len, frame_server_size(msg), "%s: length is frame_server_size", name);
    {
        int untouched = 1;

        for (int i = 0; i < HEADROOM; i++)
            untouched &= buf[i] == 0xaa;
        ok(untouched, "%s: headroom left untouched", name);
    }
    rc = frame_decode_server(buf + HEADROOM, len, NULL, &out, err, sizeof(err));
    if (!is_int(rc, FRAME_OK, "%s: decodes", name))
        diag("err: %s", err);
    if (out != NULL)
        is_str(frame_server_type(out), name, "%s: type survives", name);
    return out;
}

/* ---- round trips --------------------------------------------------------------------- */

static void
test_client_roundtrips(void)
{
    Ferry__V1__ClientMessage env = FERRY__V1__CLIENT_MESSAGE__INIT, *out;
    uint8_t *buf;
    size_t len;
    char err[256];

    /* hello */
    {
        Ferry__V1__Hello h = FERRY__V1__HELLO__INIT;

        h.protocol_version = 1;
        h.client_id = "device-7";
        h.token = "aaa.bbb.ccc";
        h.schema_version = 42;
        h.client_version = "libferry/0.1.0";
        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HELLO;
        env.hello = &h;
        buf = encode_client(&env, &len);
        is_int(frame_decode_client(buf, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "hello round trip");
        if (out == NULL)
            bail_out("hello did not decode: %s", err);
        is_str(frame_client_type(out), "hello", "type name hello");
        ok(out->hello->protocol_version == 1 && out->hello->schema_version == 42,
           "hello numbers");
        is_str(out->hello->client_id, "device-7", "hello.client_id");
        is_str(out->hello->token, "aaa.bbb.ccc", "hello.token");
        is_str(out->hello->client_version, "libferry/0.1.0", "hello.client_version");
        frame_free_client(out);
        free(buf);
    }
    /* subscribe (resume, with columns and where) */
    {
        Ferry__V1__Subscribe s = FERRY__V1__SUBSCRIBE__INIT;
        char *cols[] = {"id", "title", "done"};

        s.subscription_id = 3;
        s.table = "public.todos";
        s.where = "done = false AND title <> 'x'";
        s.n_columns = 3;
        s.columns = cols;
        s.handle = "8812-1700000000";
        s.offset = "26739776_4";
        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE;
        env.subscribe = &s;
        buf = encode_client(&env, &len);
        is_int(frame_decode_client(buf, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "subscribe round trip");
        if (out == NULL)
            bail_out("subscribe did not decode: %s", err);
        is_int(out->subscribe->subscription_id, 3, "subscribe.subscription_id");
        is_str(out->subscribe->table, "public.todos", "subscribe.table");
        is_str(out->subscribe->where, "done = false AND title <> 'x'", "subscribe.where");
        ok(out->subscribe->n_columns == 3 && strcmp(out->subscribe->columns[2], "done") == 0,
           "subscribe.columns");
        is_str(out->subscribe->handle, "8812-1700000000", "subscribe.handle");
        is_str(out->subscribe->offset, "26739776_4", "subscribe.offset");
        frame_free_client(out);
        free(buf);
    }
    /* unsubscribe */
    {
        Ferry__V1__Unsubscribe u = FERRY__V1__UNSUBSCRIBE__INIT;

        u.subscription_id = 9;
        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_UNSUBSCRIBE;
        env.unsubscribe = &u;
        buf = encode_client(&env, &len);
        is_int(frame_decode_client(buf, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "unsubscribe round trip");
        ok(out && out->unsubscribe->subscription_id == 9, "unsubscribe.subscription_id");
        frame_free_client(out);
        free(buf);
    }
    /* mutations */
    {
        Ferry__V1__MutationBatch b = FERRY__V1__MUTATION_BATCH__INIT;
        Ferry__V1__Mutation m1 = FERRY__V1__MUTATION__INIT, m2 = FERRY__V1__MUTATION__INIT;
        Ferry__V1__Mutation *ms[] = {&m1, &m2};

        m1.id = "6f1c1f5e-0000-4000-8000-000000000001";
        m1.json = "{\"table\":\"public.todos\",\"op\":\"insert\",\"changes\":{\"title\":{\"new\":\"caf\xc3\xa9\"}}}";
        m2.id = "6f1c1f5e-0000-4000-8000-000000000002";
        m2.json = " \n{\"table\":\"public.todos\",\"op\":\"delete\",\"key\":{\"id\":1}}";
        b.n_mutations = 2;
        b.mutations = ms;
        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_MUTATIONS;
        env.mutations = &b;
        buf = encode_client(&env, &len);
        is_int(frame_decode_client(buf, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "mutations round trip");
        if (out == NULL)
            bail_out("mutations did not decode: %s", err);
        is_int(out->mutations->n_mutations, 2, "two mutations");
        is_str(out->mutations->mutations[0]->id, m1.id, "mutation id");
        is_str(out->mutations->mutations[0]->json, m1.json, "mutation json, UTF-8 intact");
        is_str(out->mutations->mutations[1]->json, m2.json, "mutation json with leading space");
        frame_free_client(out);
        free(buf);
    }
    /* heartbeat */
    {
        Ferry__V1__Heartbeat h = FERRY__V1__HEARTBEAT__INIT;

        h.sent_at_ms = 1700000000123ULL;
        h.pending_mutations = 5;
        h.oldest_pending_age_ms = 64000;
        h.failed_mutations = 1;
        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HEARTBEAT;
        env.heartbeat = &h;
        buf = encode_client(&env, &len);
        is_int(frame_decode_client(buf, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "heartbeat round trip");
        ok(out && out->heartbeat->sent_at_ms == 1700000000123ULL &&
           out->heartbeat->pending_mutations == 5 && out->heartbeat->oldest_pending_age_ms == 64000 &&
           out->heartbeat->failed_mutations == 1, "heartbeat fields");
        frame_free_client(out);
        free(buf);

        /* An all-default heartbeat is a 2-byte frame and still valid. */
        h = (Ferry__V1__Heartbeat) FERRY__V1__HEARTBEAT__INIT;
        buf = encode_client(&env, &len);
        is_int(len, 2, "empty heartbeat is 2 bytes");
        is_int(decode_rc(buf, len, NULL, err, sizeof(err)), FRAME_OK, "empty heartbeat decodes");
        free(buf);
    }
    /* refresh_token */
    {
        Ferry__V1__RefreshToken t = FERRY__V1__REFRESH_TOKEN__INIT;

        t.token = "xxx.yyy.zzz";
        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_REFRESH_TOKEN;
        env.refresh_token = &t;
        buf = encode_client(&env, &len);
        is_int(frame_decode_client(buf, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "refresh_token round trip");
        is_str(out ? out->refresh_token->token : NULL, "xxx.yyy.zzz", "refresh_token.token");
        frame_free_client(out);
        free(buf);
    }
}

static void
test_server_roundtrips(void)
{
    Ferry__V1__ServerMessage env = FERRY__V1__SERVER_MESSAGE__INIT, *out;

    {
        Ferry__V1__Welcome w = FERRY__V1__WELCOME__INIT;

        w.protocol_version = 1;
        w.schema_version = 12;
        w.min_schema_version = 10;
        w.server_version = "ferryd/0.1.0";
        w.session_id = "s-1";
        w.heartbeat_interval_ms = 15000;
        w.idle_timeout_ms = 45000;
        w.token_expires_at = 1700003600;
        w.max_frame_bytes = FRAME_MAX_CLIENT_BYTES;
        w.max_mutations_per_batch = FRAME_MAX_MUTATIONS;
        w.user_id = "user-1";
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_WELCOME;
        env.welcome = &w;
        out = roundtrip_server(&env, "welcome");
        ok(out && out->welcome->schema_version == 12 && out->welcome->min_schema_version == 10 &&
           out->welcome->heartbeat_interval_ms == 15000 && out->welcome->idle_timeout_ms == 45000 &&
           out->welcome->token_expires_at == 1700003600 &&
           out->welcome->max_frame_bytes == FRAME_MAX_CLIENT_BYTES &&
           out->welcome->max_mutations_per_batch == FRAME_MAX_MUTATIONS &&
           strcmp(out->welcome->server_version, "ferryd/0.1.0") == 0 &&
           strcmp(out->welcome->user_id, "user-1") == 0, "welcome fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__Subscribed s = FERRY__V1__SUBSCRIBED__INIT;
        Ferry__V1__Column c1 = FERRY__V1__COLUMN__INIT, c2 = FERRY__V1__COLUMN__INIT;
        Ferry__V1__Column *cols[] = {&c1, &c2};

        c1.name = "id";
        c1.type = "bigint";
        c1.key = 1;
        c1.type_oid = 20;
        c1.not_null = 1;
        c2.name = "tags";
        c2.type = "text[]";
        c2.type_oid = 1009;
        s.subscription_id = 3;
        s.handle = "h-1";
        s.n_columns = 2;
        s.columns = cols;
        s.table = "public.todos";
        s.offset = "-1";
        s.resumed = 0;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED;
        env.subscribed = &s;
        out = roundtrip_server(&env, "subscribed");
        ok(out && out->subscribed->n_columns == 2 && out->subscribed->columns[0]->key &&
           out->subscribed->columns[0]->type_oid == 20 && !out->subscribed->columns[1]->key &&
           strcmp(out->subscribed->columns[1]->type, "text[]") == 0 &&
           strcmp(out->subscribed->handle, "h-1") == 0 &&
           strcmp(out->subscribed->offset, "-1") == 0, "subscribed fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__ChangeBatch b = FERRY__V1__CHANGE_BATCH__INIT;
        Ferry__V1__Change ins = FERRY__V1__CHANGE__INIT, del = FERRY__V1__CHANGE__INIT;
        Ferry__V1__Change *chs[] = {&ins, &del};
        char *vals[] = {"1", "", "{a,\"b c\"}"};
        uint32_t nulls[] = {1};
        char *key[] = {"2"};

        ins.op = FERRY__V1__OP__INSERT;
        ins.n_values = 3;
        ins.values = vals;
        ins.n_nulls = 1;
        ins.nulls = nulls;
        ins.version = 1;
        del.op = FERRY__V1__OP__DELETE;
        del.n_values = 1;
        del.values = key;
        del.version = 7;
        b.subscription_id = 3;
        b.offset = "26739776_1";
        b.n_changes = 2;
        b.changes = chs;
        b.commit_time_ms = 1700000000999LL;
        b.partial = 1;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_CHANGES;
        env.changes = &b;
        out = roundtrip_server(&env, "changes");
        ok(out && out->changes->n_changes == 2 &&
           out->changes->changes[0]->op == FERRY__V1__OP__INSERT &&
           out->changes->changes[0]->n_values == 3 &&
           strcmp(out->changes->changes[0]->values[2], "{a,\"b c\"}") == 0 &&
           out->changes->changes[0]->n_nulls == 1 && out->changes->changes[0]->nulls[0] == 1 &&
           out->changes->changes[1]->op == FERRY__V1__OP__DELETE &&
           out->changes->changes[1]->version == 7 &&
           strcmp(out->changes->offset, "26739776_1") == 0 &&
           out->changes->commit_time_ms == 1700000000999LL && out->changes->partial,
           "changes fields: ops, values, nulls, versions, offset");
        frame_free_server(out);
    }
    {
        Ferry__V1__UpToDate u = FERRY__V1__UP_TO_DATE__INIT;

        u.subscription_id = 3;
        u.offset = "26739776_1";
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE;
        env.up_to_date = &u;
        out = roundtrip_server(&env, "up_to_date");
        ok(out && out->up_to_date->subscription_id == 3 &&
           strcmp(out->up_to_date->offset, "26739776_1") == 0, "up_to_date fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__MustRefetch m = FERRY__V1__MUST_REFETCH__INIT;

        m.subscription_id = 4;
        m.reason = "the table was truncated";
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_MUST_REFETCH;
        env.must_refetch = &m;
        out = roundtrip_server(&env, "must_refetch");
        ok(out && out->must_refetch->subscription_id == 4 &&
           strcmp(out->must_refetch->reason, "the table was truncated") == 0, "must_refetch fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__MutationResults rs = FERRY__V1__MUTATION_RESULTS__INIT;
        Ferry__V1__MutationResult r1 = FERRY__V1__MUTATION_RESULT__INIT;
        Ferry__V1__MutationResult r2 = FERRY__V1__MUTATION_RESULT__INIT;
        Ferry__V1__MutationResult *rp[] = {&r1, &r2};

        r1.id = "m1";
        r1.status = FERRY__V1__MUTATION_STATUS__APPLIED;
        r1.version = 2;
        r1.result_json = "{\"id\":\"m1\",\"status\":\"applied\",\"version\":2}";
        r2.id = "m2";
        r2.status = FERRY__V1__MUTATION_STATUS__RETRY;
        r2.error_code = "rate_limited";
        r2.error_message = "too many pushes; retry in 2 s";
        r2.retry_after_ms = 2000;
        rs.n_results = 2;
        rs.results = rp;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_MUTATION_RESULTS;
        env.mutation_results = &rs;
        out = roundtrip_server(&env, "mutation_results");
        ok(out && out->mutation_results->n_results == 2 &&
           out->mutation_results->results[0]->status == FERRY__V1__MUTATION_STATUS__APPLIED &&
           out->mutation_results->results[0]->version == 2 &&
           strcmp(out->mutation_results->results[0]->result_json, r1.result_json) == 0 &&
           out->mutation_results->results[1]->status == FERRY__V1__MUTATION_STATUS__RETRY &&
           out->mutation_results->results[1]->retry_after_ms == 2000 &&
           strcmp(out->mutation_results->results[1]->error_code, "rate_limited") == 0,
           "mutation_results fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__Error e = FERRY__V1__ERROR__INIT;

        e.code = FERRY__V1__ERROR_CODE__BAD_WHERE;
        e.message = "where: function now() is not supported";
        e.subscription_id = 5;
        e.fatal = 0;
        e.retry_after_ms = 0;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_ERROR;
        env.error = &e;
        out = roundtrip_server(&env, "error");
        ok(out && out->error->code == FERRY__V1__ERROR_CODE__BAD_WHERE &&
           out->error->subscription_id == 5 && !out->error->fatal &&
           strcmp(out->error->message, e.message) == 0, "error fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__Pong p = FERRY__V1__PONG__INIT;

        p.echo_sent_at_ms = 1700000000123ULL;
        p.server_time_ms = 1700000000200LL;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_PONG;
        env.pong = &p;
        out = roundtrip_server(&env, "pong");
        ok(out && out->pong->echo_sent_at_ms == 1700000000123ULL &&
           out->pong->server_time_ms == 1700000000200LL, "pong fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__Unsubscribed u = FERRY__V1__UNSUBSCRIBED__INIT;

        u.subscription_id = 9;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_UNSUBSCRIBED;
        env.unsubscribed = &u;
        out = roundtrip_server(&env, "unsubscribed");
        ok(out && out->unsubscribed->subscription_id == 9, "unsubscribed fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__TokenRefreshed t = FERRY__V1__TOKEN_REFRESHED__INIT;

        t.token_expires_at = 1700007200;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_TOKEN_REFRESHED;
        env.token_refreshed = &t;
        out = roundtrip_server(&env, "token_refreshed");
        ok(out && out->token_refreshed->token_expires_at == 1700007200, "token_refreshed fields");
        frame_free_server(out);
    }
    {
        Ferry__V1__TokenExpiring t = FERRY__V1__TOKEN_EXPIRING__INIT;

        t.token_expires_at = 1700003600;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_TOKEN_EXPIRING;
        env.token_expiring = &t;
        out = roundtrip_server(&env, "token_expiring");
        ok(out && out->token_expiring->token_expires_at == 1700003600, "token_expiring fields");
        frame_free_server(out);
    }
}

/* ---- decode errors --------------------------------------------------------------------- */

static void
test_decode_errors(void)
{
    Ferry__V1__ClientMessage env = FERRY__V1__CLIENT_MESSAGE__INIT;
    Ferry__V1__Hello h = FERRY__V1__HELLO__INIT;
    Ferry__V1__Subscribe s = FERRY__V1__SUBSCRIBE__INIT;
    Ferry__V1__MutationBatch b = FERRY__V1__MUTATION_BATCH__INIT;
    Ferry__V1__Mutation mu = FERRY__V1__MUTATION__INIT;
    Ferry__V1__Mutation *mus[] = {&mu};
    Ferry__V1__ClientMessage *out = (Ferry__V1__ClientMessage *) 1;
    char err[512];
    Raw r = {0}, inner = {0};

    /* Size and wire format. */
    is_int(frame_decode_client((const uint8_t *) "", 0, NULL, &out, err, sizeof(err)),
           FRAME_ERR_EMPTY, "empty frame");
    ok(out == NULL, "*out is NULL on failure");
    is_int(frame_decode_client(NULL, 5, NULL, &out, err, sizeof(err)), FRAME_ERR_EMPTY,
           "NULL data");
    {
        size_t n = FRAME_MAX_CLIENT_BYTES + 1;
        uint8_t *big = calloc(1, n);

        is_int(decode_rc(big, n, NULL, err, sizeof(err)), FRAME_ERR_TOO_LARGE,
               "frame one byte above 1 MiB");
        ok(strstr(err, "1048576") != NULL, "the error states the limit: %s", err);
        free(big);
    }
    {
        FrameLimits small = {64, FRAME_MAX_DECODED_BYTES, FRAME_MAX_MUTATIONS};
        uint8_t buf[65] = {0};

        is_int(decode_rc(buf, 65, &small, err, sizeof(err)), FRAME_ERR_TOO_LARGE,
               "a caller's smaller frame limit");
    }
    {
        const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

        is_int(decode_rc(garbage, sizeof(garbage), NULL, err, sizeof(err)), FRAME_ERR_MALFORMED,
               "garbage bytes");
    }
    raw_str(&inner, 2, "device");
    r = raw_wrap(1, &inner);
    r.len--;
    expect_raw(&r, FRAME_ERR_MALFORMED, NULL, "truncated frame");
    free(r.data);
    free(inner.data);
    inner = (Raw) {0};

    r = (Raw) {0};
    raw_key(&r, 1, 0);              /* hello as a varint */
    raw_varint(&r, 5);
    expect_raw(&r, FRAME_ERR_MALFORMED, NULL, "a message field with the varint wire type");
    free(r.data);
    r = (Raw) {0};
    raw_key(&r, 1, 3);              /* a group */
    raw_key(&r, 1, 4);
    expect_raw(&r, FRAME_ERR_MALFORMED, "wire type 3", "a group (wire type 3)");
    free(r.data);
    r = (Raw) {0};
    raw_key(&r, 0, 0);
    raw_varint(&r, 1);
    expect_raw(&r, FRAME_ERR_MALFORMED, NULL, "field number 0");
    free(r.data);
    r = (Raw) {0};
    raw_key(&r, 1, 2);
    raw_varint(&r, 1000);           /* length past the end */
    raw_bytes(&r, "abc", 3);
    expect_raw(&r, FRAME_ERR_MALFORMED, NULL, "a length past the end");
    free(r.data);
    r = (Raw) {0};
    raw_key(&r, 5, 2);
    raw_bytes(&r, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    expect_raw(&r, FRAME_ERR_MALFORMED, NULL, "an over-long length varint");
    free(r.data);
    r = (Raw) {0};
    raw_key(&r, 2, 2);              /* subscribe.table (field 2) holding a string field with a varint */
    inner = (Raw) {0};
    raw_key(&inner, 2, 0);
    raw_varint(&inner, 7);
    raw_varint(&r, inner.len);
    raw_bytes(&r, inner.data, inner.len);
    expect_raw(&r, FRAME_ERR_MALFORMED, NULL, "a string field with the varint wire type");
    free(r.data);
    free(inner.data);

    /* Strings. */
    {
        static const struct
        {
            const char *bytes;      /* the client_id */
            size_t len;             /* its length */
            const char *name;       /* test name */
        } bad[] = {
            {"dev\xff", 4, "invalid UTF-8 byte"},
            {"dev\xc3", 4, "truncated UTF-8 sequence"},
            {"\xc0\xaf", 2, "overlong encoding"},
            {"\xed\xa0\x80", 3, "UTF-16 surrogate"},
            {"\xf4\x90\x80\x80", 4, "above U+10FFFF"},
            {"dev\0ice", 7, "embedded NUL"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        {
            inner = (Raw) {0};
            raw_key(&inner, 1, 0);
            raw_varint(&inner, 1);
            raw_len(&inner, 2, bad[i].bytes, bad[i].len);
            raw_str(&inner, 3, "a.b.c");
            r = raw_wrap(1, &inner);
            expect_raw(&r, FRAME_ERR_BAD_STRING, "hello.client_id", bad[i].name);
            free(r.data);
            free(inner.data);
        }
        /* Bad UTF-8 deep inside: mutations.mutations[].json */
        inner = (Raw) {0};
        {
            Raw m = {0};

            raw_str(&m, 1, "id-1");
            raw_len(&m, 2, "{\"x\":\"\xfe\"}", 9);
            raw_len(&inner, 1, m.data, m.len);
            free(m.data);
        }
        r = raw_wrap(4, &inner);
        expect_raw(&r, FRAME_ERR_BAD_STRING, "mutations.mutations.json", "bad UTF-8 in a mutation's json");
        free(r.data);
        free(inner.data);
    }

    /* Unknown and empty envelopes. */
    r = (Raw) {0};
    raw_str(&r, 20, "a message from the future");
    expect_raw(&r, FRAME_ERR_UNKNOWN_TYPE, "field 20", "unknown message type");
    free(r.data);
    r = (Raw) {0};
    raw_key(&r, 99, 0);
    raw_varint(&r, 1);
    expect_raw(&r, FRAME_ERR_UNKNOWN_TYPE, NULL, "only an unknown varint field");
    free(r.data);
    {
        Ferry__V1__ClientMessage none = FERRY__V1__CLIENT_MESSAGE__INIT;
        uint8_t *buf;
        size_t len;

        is_int(frame_encode_client_alloc(&none, 0, &buf, &len, err, sizeof(err)),
               FRAME_ERR_UNKNOWN_TYPE, "encoding an empty envelope is refused");
        ok(buf == NULL, "no buffer for a refused encode");
    }

    /* Hello's required fields. */
    env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HELLO;
    env.hello = &h;
    h.protocol_version = 1;
    h.client_id = "dev";
    h.token = "";
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "hello.token", "hello without a token");
    h.token = "a.b.c";
    h.client_id = "";
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "hello.client_id", "hello without a client_id");
    h.client_id = "dev";
    h.protocol_version = 0;
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "hello.protocol_version", "hello without a version");
    h.protocol_version = 1;
    expect_client(&env, FRAME_OK, NULL, "hello complete");
    {
        char id[FRAME_MAX_ID_BYTES + 2];
        char *tok = malloc(AUTH_MAX_TOKEN_BYTES + 2);

        memset(id, 'i', sizeof(id) - 1);
        id[sizeof(id) - 1] = '\0';
        h.client_id = id;
        expect_client(&env, FRAME_ERR_BAD_FIELD, "at most 128", "client_id of 129 bytes");
        id[FRAME_MAX_ID_BYTES] = '\0';
        expect_client(&env, FRAME_OK, NULL, "client_id of 128 bytes");
        h.client_id = "dev\nice";
        expect_client(&env, FRAME_ERR_BAD_FIELD, "control character", "client_id with a newline");
        h.client_id = "dev";
        memset(tok, 'a', AUTH_MAX_TOKEN_BYTES + 1);
        tok[AUTH_MAX_TOKEN_BYTES + 1] = '\0';
        h.token = tok;
        expect_client(&env, FRAME_ERR_BAD_FIELD, "hello.token", "token above AUTH_MAX_TOKEN_BYTES");
        h.token = "a.b.c";
        free(tok);
    }
    h.schema_version = -1;
    expect_client(&env, FRAME_ERR_BAD_FIELD, "schema_version", "negative schema_version");
    h.schema_version = 0;

    /* An empty (present, all defaults) hello. */
    r = (Raw) {0};
    raw_len(&r, 1, "", 0);
    expect_raw(&r, FRAME_ERR_MISSING_FIELD, "hello.protocol_version", "an empty hello");
    free(r.data);

    /* Subscribe. */
    env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE;
    env.subscribe = &s;
    s.table = "todos";
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "subscription_id", "subscribe with id 0");
    s.subscription_id = 1;
    s.table = "";
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "subscribe.table", "subscribe without a table");
    s.table = "todos";
    expect_client(&env, FRAME_OK, NULL, "minimal subscribe");
    s.offset = "-1";
    expect_client(&env, FRAME_OK, NULL, "offset -1 without a handle");
    s.offset = "123_4";
    expect_client(&env, FRAME_ERR_BAD_FIELD, "handle", "an offset without a handle");
    s.handle = "h";
    expect_client(&env, FRAME_OK, NULL, "an offset with a handle");
    s.offset = "123 4";
    expect_client(&env, FRAME_ERR_BAD_FIELD, "subscribe.offset", "an offset with a space");
    s.offset = "-1";
    {
        char **cols = calloc(FRAME_MAX_COLUMNS + 1, sizeof(char *));
        char longcol[FRAME_MAX_COLUMN_BYTES + 2];
        char *where = malloc(FRAME_MAX_WHERE_BYTES + 2);

        for (int i = 0; i <= FRAME_MAX_COLUMNS; i++)
            cols[i] = "c";
        s.columns = cols;
        s.n_columns = FRAME_MAX_COLUMNS + 1;
        expect_client(&env, FRAME_ERR_BAD_FIELD, "1601", "1601 columns");
        s.n_columns = FRAME_MAX_COLUMNS;
        expect_client(&env, FRAME_OK, NULL, "1600 columns");
        memset(longcol, 'c', sizeof(longcol) - 1);
        longcol[sizeof(longcol) - 1] = '\0';
        cols[7] = longcol;
        expect_client(&env, FRAME_ERR_BAD_FIELD, "subscribe.columns[7]", "a column name too long");
        cols[7] = "";
        expect_client(&env, FRAME_ERR_MISSING_FIELD, "subscribe.columns[7]", "an empty column name");
        s.n_columns = 0;
        s.columns = NULL;
        memset(where, 'w', FRAME_MAX_WHERE_BYTES + 1);
        where[FRAME_MAX_WHERE_BYTES + 1] = '\0';
        s.where = where;
        expect_client(&env, FRAME_ERR_BAD_FIELD, "subscribe.where", "where above 16 KiB");
        s.where = "";
        free(cols);
        free(where);
    }

    /* Unsubscribe and refresh_token. */
    {
        Ferry__V1__Unsubscribe u = FERRY__V1__UNSUBSCRIBE__INIT;
        Ferry__V1__RefreshToken t = FERRY__V1__REFRESH_TOKEN__INIT;

        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_UNSUBSCRIBE;
        env.unsubscribe = &u;
        expect_client(&env, FRAME_ERR_MISSING_FIELD, "unsubscribe.subscription_id", "unsubscribe id 0");
        env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_REFRESH_TOKEN;
        env.refresh_token = &t;
        expect_client(&env, FRAME_ERR_MISSING_FIELD, "refresh_token.token", "refresh without a token");
    }

    /* Mutation batches. */
    env.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_MUTATIONS;
    env.mutations = &b;
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "no mutation", "an empty batch");
    b.n_mutations = 1;
    b.mutations = mus;
    mu.json = "{}";
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "mutations.mutations[0].id", "a mutation without an id");
    mu.id = "m-1";
    mu.json = "";
    expect_client(&env, FRAME_ERR_MISSING_FIELD, "mutations.mutations[0].json", "a mutation without json");
    mu.json = "[1]";
    expect_client(&env, FRAME_ERR_BAD_FIELD, "JSON object", "mutation json not an object");
    mu.json = "{\"op\":\"insert\"}";
    expect_client(&env, FRAME_OK, NULL, "one mutation");
    {
        char *big = malloc(FRAME_MAX_MUTATION_BYTES + 2);

        big[0] = '{';
        memset(big + 1, ' ', FRAME_MAX_MUTATION_BYTES);
        big[FRAME_MAX_MUTATION_BYTES + 1] = '\0';
        mu.json = big;
        expect_client(&env, FRAME_ERR_BAD_FIELD, "json", "mutation json above 256 KiB");
        mu.json = "{}";
        free(big);
    }
    {
        Ferry__V1__Mutation **many = calloc(FRAME_MAX_MUTATIONS + 1, sizeof(*many));
        FrameLimits tight = {FRAME_MAX_CLIENT_BYTES, 4096, FRAME_MAX_MUTATIONS};
        uint8_t *buf;
        size_t len;

        for (int i = 0; i <= FRAME_MAX_MUTATIONS; i++)
            many[i] = &mu;
        b.mutations = many;
        b.n_mutations = FRAME_MAX_MUTATIONS + 1;
        expect_client(&env, FRAME_ERR_TOO_LARGE, "1001", "1001 mutations in a batch");
        b.n_mutations = FRAME_MAX_MUTATIONS;
        expect_client(&env, FRAME_OK, NULL, "1000 mutations in a batch");
        buf = encode_client(&env, &len);
        is_int(decode_rc(buf, len, &tight, err, sizeof(err)), FRAME_ERR_TOO_COMPLEX,
               "a memory budget of 4 KiB refuses 1000 mutations");
        ok(strstr(err, "4096") != NULL, "the error states the budget: %s", err);
        free(buf);
        {
            FrameLimits few = {FRAME_MAX_CLIENT_BYTES, FRAME_MAX_DECODED_BYTES, 10};

            b.n_mutations = 11;
            buf = encode_client(&env, &len);
            is_int(decode_rc(buf, len, &few, err, sizeof(err)), FRAME_ERR_TOO_LARGE,
                   "a caller's smaller batch limit");
            free(buf);
        }
        free(many);
    }

    /* The memory budget against amplification: 500k empty mutations in 1 MiB. */
    r = (Raw) {0};
    inner = (Raw) {0};
    while (inner.len + 2 < FRAME_MAX_CLIENT_BYTES - 8)
        raw_len(&inner, 1, "", 0);
    r = raw_wrap(4, &inner);
    expect_raw(&r, FRAME_ERR_TOO_COMPLEX, NULL, "a 1 MiB frame of empty mutations");
    free(r.data);
    free(inner.data);
}

/* ---- unknown fields, for evolution ------------------------------------------------------- */

static void
test_unknown_fields(void)
{
    Raw hello = {0}, r = {0}, sub = {0};
    Ferry__V1__ClientMessage *out = NULL;
    char err[256];
    const uint8_t fixed[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    /* A Hello from a future client: extra fields of every wire type. */
    raw_key(&hello, 1, 0);
    raw_varint(&hello, 1);
    raw_str(&hello, 2, "device-9");
    raw_key(&hello, 99, 0);             /* unknown varint */
    raw_varint(&hello, 123456789);
    raw_str(&hello, 3, "a.b.c");
    raw_len(&hello, 100, "\xff\xfe not UTF-8, but unknown", 25);  /* unknown bytes */
    raw_key(&hello, 101, 1);            /* unknown fixed64 */
    raw_bytes(&hello, fixed, 8);
    raw_key(&hello, 102, 5);            /* unknown fixed32 */
    raw_bytes(&hello, fixed, 4);
    raw_key(&hello, 536870911, 0);      /* the largest field number */
    raw_varint(&hello, 1);
    raw_len(&r, 1, hello.data, hello.len);
    raw_key(&r, 50, 0);                 /* and one in the envelope */
    raw_varint(&r, 7);
    is_int(frame_decode_client(r.data, r.len, NULL, &out, err, sizeof(err)), FRAME_OK,
           "a Hello with unknown fields decodes");
    if (out == NULL)
        diag("err: %s", err);
    is_str(out ? out->hello->client_id : NULL, "device-9", "known field before unknown ones");
    is_str(out ? out->hello->token : NULL, "a.b.c", "known field after unknown ones");
    ok(out && out->hello->base.n_unknown_fields == 5, "unknown fields kept aside (%u)",
       out ? out->hello->base.n_unknown_fields : 0u);
    frame_free_client(out);
    free(r.data);

    /* An unknown sub-message inside Subscribe, with a known field after it. */
    r = (Raw) {0};
    raw_key(&sub, 1, 0);
    raw_varint(&sub, 4);
    raw_len(&sub, 30, hello.data, hello.len);
    raw_str(&sub, 2, "todos");
    raw_len(&r, 2, sub.data, sub.len);
    is_int(frame_decode_client(r.data, r.len, NULL, &out, err, sizeof(err)), FRAME_OK,
           "a Subscribe with an unknown nested message decodes");
    is_str(out ? out->subscribe->table : NULL, "todos", "subscribe.table read past it");
    frame_free_client(out);
    free(r.data);
    free(sub.data);
    free(hello.data);

    /* A server message from the future: the client skips it. */
    {
        Ferry__V1__ServerMessage *s = NULL;

        r = (Raw) {0};
        raw_str(&r, 40, "new");
        is_int(frame_decode_server(r.data, r.len, NULL, &s, err, sizeof(err)),
               FRAME_ERR_UNKNOWN_TYPE, "an unknown server message type");
        ok(s == NULL, "nothing decoded");
        free(r.data);
    }
}

/* ---- encoding -------------------------------------------------------------------------- */

static void
test_encoding(void)
{
    Ferry__V1__ServerMessage env = FERRY__V1__SERVER_MESSAGE__INIT, *out = NULL;
    Ferry__V1__UpToDate u = FERRY__V1__UP_TO_DATE__INIT;
    uint8_t buf[64], *heap = NULL;
    size_t len = 0, need;
    char err[256];

    u.subscription_id = 1;
    u.offset = "123_4";
    env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE;
    env.up_to_date = &u;
    need = frame_server_size(&env);
    is_int(frame_encode_server(&env, buf, HEADROOM + need - 1, HEADROOM, &len, err, sizeof(err)),
           FRAME_ERR_BUFFER, "a buffer one byte short");
    is_int(len, need, "*len says the size needed");
    is_int(frame_encode_server(&env, buf, HEADROOM + need, HEADROOM, &len, err, sizeof(err)),
           FRAME_OK, "an exact buffer");
    is_int(frame_encode_server(&env, buf, 8, HEADROOM, &len, err, sizeof(err)),
           FRAME_ERR_BUFFER, "headroom larger than the buffer");
    is_int(frame_encode_server_alloc(&env, HEADROOM, &heap, &len, err, sizeof(err)), FRAME_OK,
           "frame_encode_server_alloc");
    is_int(len, need, "allocated frame's length");
    ok(heap != NULL && memcmp(heap + HEADROOM, buf + HEADROOM, len) == 0,
       "same bytes as the caller-buffer encoding");
    free(heap);

    env.up_to_date = NULL;
    is_int(frame_encode_server(&env, buf, sizeof(buf), 0, &len, err, sizeof(err)),
           FRAME_ERR_UNKNOWN_TYPE, "a case without its message is refused");
    env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG__NOT_SET;
    is_int(frame_encode_server(&env, buf, sizeof(buf), 0, &len, err, sizeof(err)),
           FRAME_ERR_UNKNOWN_TYPE, "an empty envelope is refused");
    {
        Ferry__V1__Change c = FERRY__V1__CHANGE__INIT;
        Ferry__V1__Change *cs[] = {&c};
        Ferry__V1__ChangeBatch b = FERRY__V1__CHANGE_BATCH__INIT;
        char *vals[] = {"1", NULL};

        c.op = FERRY__V1__OP__INSERT;
        c.n_values = 2;
        c.values = vals;
        b.subscription_id = 1;
        b.n_changes = 1;
        b.changes = cs;
        env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_CHANGES;
        env.changes = &b;
        is_int(frame_encode_server(&env, buf, sizeof(buf), 0, &len, err, sizeof(err)),
               FRAME_ERR_MALFORMED, "a NULL value string is refused, not packed");
    }

    /* Error frames. */
    {
        char longmsg[3000];

        is_int(frame_encode_error(FERRY__V1__ERROR_CODE__TOKEN_EXPIRED, "the token expired 5 s ago",
                                  0, true, 0, HEADROOM, &heap, &len, err, sizeof(err)),
               FRAME_OK, "frame_encode_error");
        is_int(frame_decode_server(heap + HEADROOM, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "error frame decodes");
        ok(out && out->error->code == FERRY__V1__ERROR_CODE__TOKEN_EXPIRED && out->error->fatal &&
           strcmp(out->error->message, "the token expired 5 s ago") == 0, "error frame fields");
        frame_free_server(out);
        free(heap);

        /* 'é' repeated: a cut at 1024 bytes must not split one. */
        for (size_t i = 0; i + 1 < sizeof(longmsg); i += 2)
        {
            longmsg[i] = '\xc3';
            longmsg[i + 1] = '\xa9';
        }
        longmsg[sizeof(longmsg) - 1] = '\0';
        longmsg[sizeof(longmsg) - 2] = 'x';
        memmove(longmsg + 1, longmsg, sizeof(longmsg) - 2);
        longmsg[0] = 'x';           /* odd offset: byte 1024 is a continuation byte */
        is_int(frame_encode_error(FERRY__V1__ERROR_CODE__INTERNAL, longmsg, 3, false, 100, 0,
                                  &heap, &len, err, sizeof(err)), FRAME_OK, "a long error message");
        is_int(frame_decode_server(heap, len, NULL, &out, err, sizeof(err)), FRAME_OK,
               "the cut message is still valid UTF-8");
        ok(out && strlen(out->error->message) <= 1024 && strlen(out->error->message) >= 1020,
           "message cut near 1024 bytes (%zu)", out ? strlen(out->error->message) : 0);
        ok(out && out->error->retry_after_ms == 100 && out->error->subscription_id == 3,
           "retry_after_ms and subscription_id");
        frame_free_server(out);
        free(heap);
        is_int(frame_encode_error(FERRY__V1__ERROR_CODE__INTERNAL, NULL, 0, false, 0, 0,
                                  &heap, &len, err, sizeof(err)), FRAME_OK, "a NULL message");
        free(heap);
    }

    /* Codes and names. */
    is_int(frame_error_code(FRAME_ERR_TOO_LARGE), FERRY__V1__ERROR_CODE__FRAME_TOO_LARGE,
           "too large maps to FRAME_TOO_LARGE");
    is_int(frame_error_code(FRAME_ERR_TOO_COMPLEX), FERRY__V1__ERROR_CODE__FRAME_TOO_LARGE,
           "too complex maps to FRAME_TOO_LARGE");
    is_int(frame_error_code(FRAME_ERR_BAD_STRING), FERRY__V1__ERROR_CODE__BAD_FRAME,
           "bad string maps to BAD_FRAME");
    is_int(frame_error_code(FRAME_ERR_NOMEM), FERRY__V1__ERROR_CODE__INTERNAL, "nomem maps to INTERNAL");
    is_int(frame_close_code(FERRY__V1__ERROR_CODE__TOKEN_EXPIRED), 4005, "TOKEN_EXPIRED closes with 4005");
    is_int(frame_close_code(FERRY__V1__ERROR_CODE__SLOW_CLIENT), 4014, "SLOW_CLIENT closes with 4014");
    is_int(frame_close_code(FERRY__V1__ERROR_CODE__SHUTTING_DOWN), 1001, "SHUTTING_DOWN closes with 1001");
    is_str(frame_error_code_name(FERRY__V1__ERROR_CODE__SCHEMA_TOO_OLD), "SCHEMA_TOO_OLD",
           "error code name");
    is_str(frame_error_code_name((Ferry__V1__ErrorCode) 777), "UNKNOWN", "unknown code name");
    is_str(frame_client_type(NULL), "none", "type of NULL");
    is_str(frame_result_name(FRAME_ERR_BAD_FIELD), "bad_field", "frame_result_name");
}

int
main(void)
{
    test_client_roundtrips();
    test_server_roundtrips();
    test_decode_errors();
    test_unknown_fields();
    test_encoding();
    return done_testing();
}
