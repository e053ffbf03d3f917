/*
 * gateway/frame.c -- decode and encode the WebSocket frames of protocol ferry.v1.
 *
 * Decoding a frame from outside takes three passes, each cheap next to the network:
 *
 *   1. wire_walk reads the protobuf wire format against the message descriptors, without
 *      allocating: well-formed keys and lengths, known nesting no deeper than
 *      FRAME_MAX_DEPTH, and every string field valid UTF-8 without NUL (protobuf-c
 *      checks none of this, and would cut a string at its first NUL silently);
 *   2. protobuf_c_message_unpack with a counting allocator, so that a small frame cannot
 *      expand into unbounded memory (an empty sub-message costs 2 bytes on the wire and
 *      dozens in memory);
 *   3. check_client applies the protocol's rules to the decoded message.
 */
#include "errbuf.h"
#include "frame.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define ALLOC_OVERHEAD 16               /* bytes counted per allocation beyond its size */
#define ERROR_MESSAGE_MAX 1024          /* longest Error.message frame_encode_error sends */

const FrameLimits frame_client_limits = {
    FRAME_MAX_CLIENT_BYTES, FRAME_MAX_DECODED_BYTES, FRAME_MAX_MUTATIONS,
};

const FrameLimits frame_server_limits = {
    FRAME_MAX_SERVER_BYTES, (size_t) 16 * FRAME_MAX_SERVER_BYTES, 0,
};

/* ---- errors and names ----------------------------------------------------------------- */


const char *
frame_result_name(int rc)
{
    switch (rc)
    {
        case FRAME_OK: return "ok";
        case FRAME_ERR_EMPTY: return "empty";
        case FRAME_ERR_TOO_LARGE: return "too_large";
        case FRAME_ERR_MALFORMED: return "malformed";
        case FRAME_ERR_TOO_COMPLEX: return "too_complex";
        case FRAME_ERR_BAD_STRING: return "bad_string";
        case FRAME_ERR_UNKNOWN_TYPE: return "unknown_type";
        case FRAME_ERR_MISSING_FIELD: return "missing_field";
        case FRAME_ERR_BAD_FIELD: return "bad_field";
        case FRAME_ERR_BUFFER: return "buffer";
        case FRAME_ERR_NOMEM: return "nomem";
    }
    return "unknown";
}

Ferry__V1__ErrorCode
frame_error_code(int rc)
{
    switch (rc)
    {
        case FRAME_ERR_TOO_LARGE:
        case FRAME_ERR_TOO_COMPLEX:
            return FERRY__V1__ERROR_CODE__FRAME_TOO_LARGE;
        case FRAME_ERR_NOMEM:
            return FERRY__V1__ERROR_CODE__INTERNAL;
        default:
            return FERRY__V1__ERROR_CODE__BAD_FRAME;
    }
}

int
frame_close_code(Ferry__V1__ErrorCode code)
{
    if (code == FERRY__V1__ERROR_CODE__SHUTTING_DOWN)
        return FRAME_CLOSE_GOING_AWAY;
    if ((int) code <= 0 || (int) code > 999)
        return FRAME_CLOSE_BASE + FERRY__V1__ERROR_CODE__INTERNAL;
    return FRAME_CLOSE_BASE + (int) code;
}

const char *
frame_error_code_name(Ferry__V1__ErrorCode code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&ferry__v1__error_code__descriptor, (int) code);

    return v != NULL ? v->name : "UNKNOWN";
}

static const char *
oneof_name(const ProtobufCMessageDescriptor *desc, unsigned msg_case)
{
    const ProtobufCFieldDescriptor *f;

    if (msg_case == 0)
        return "none";
    f = protobuf_c_message_descriptor_get_field(desc, msg_case);
    return f != NULL ? f->name : "unknown";
}

const char *
frame_client_type(const Ferry__V1__ClientMessage *msg)
{
    if (msg == NULL)
        return "none";
    return oneof_name(&ferry__v1__client_message__descriptor, msg->msg_case);
}

const char *
frame_server_type(const Ferry__V1__ServerMessage *msg)
{
    if (msg == NULL)
        return "none";
    return oneof_name(&ferry__v1__server_message__descriptor, msg->msg_case);
}

/* ---- pass 1: the wire format ---------------------------------------------------------- */

/* utf8_valid says whether n bytes at s are UTF-8 without NUL, overlongs or surrogates. */
static bool
utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n)
    {
        uint8_t c = s[i];
        uint32_t cp;
        size_t len;

        if (c >= 0x01 && c < 0x80)
        {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
        {
            len = 2;
            cp = c & 0x1f;
        }
        else if (c >= 0xe0 && c <= 0xef)
        {
            len = 3;
            cp = c & 0x0f;
        }
        else if (c >= 0xf0 && c <= 0xf4)
        {
            len = 4;
            cp = c & 0x07;
        }
        else
            return false;           /* NUL, a continuation byte, or an invalid lead */
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++)
        {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* read_varint reads a base-128 varint of at most 10 bytes. */
static bool
read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t val = 0;

    for (int i = 0; i < 10; i++)
    {
        uint8_t b;

        if (*p >= end)
            return false;
        b = *(*p)++;
        if (i == 9 && b > 1)
            return false;
        val |= (uint64_t) (b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0)
        {
            *v = val;
            return true;
        }
    }
    return false;
}

/* wire_walk checks the bytes [p, end) as a message of type desc; path names it in
 * errors ("" for the envelope). */
static int
wire_walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
          int depth, const char *path, char *err, size_t errlen)
{
    while (p < end)
    {
        const ProtobufCFieldDescriptor *field;
        uint64_t key, n;
        uint32_t number;
        int wire_type;

        if (!read_varint(&p, end, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
            return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen,
                        "%s%sbad protobuf field key: the frame is not a ferry.v1 message",
                        path, *path ? ": " : "");
        number = (uint32_t) (key >> 3);
        wire_type = (int) (key & 7);
        switch (wire_type)
        {
            case 0:                 /* varint */
                if (!read_varint(&p, end, &n))
                    goto truncated;
                break;
            case 1:                 /* 64-bit */
                if (end - p < 8)
                    goto truncated;
                p += 8;
                break;
            case 5:                 /* 32-bit */
                if (end - p < 4)
                    goto truncated;
                p += 4;
                break;
            case 2:                 /* length-delimited */
                if (!read_varint(&p, end, &n) || n > (uint64_t) (end - p))
                    goto truncated;
                field = protobuf_c_message_descriptor_get_field(desc, number);
                if (field != NULL && field->type == PROTOBUF_C_TYPE_STRING)
                {
                    if (!utf8_valid(p, (size_t) n))
                        return errbuf_fail(FRAME_ERR_BAD_STRING, err, errlen,
                                    "%s%s%s is not valid UTF-8 or contains a NUL byte",
                                    path, *path ? "." : "", field->name);
                }
                else if (field != NULL && field->type == PROTOBUF_C_TYPE_MESSAGE)
                {
                    char sub[192];
                    int rc;

                    if (depth + 1 > FRAME_MAX_DEPTH)
                        return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen,
                                    "%s: messages nested deeper than %d", path,
                                    FRAME_MAX_DEPTH);
                    snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", field->name);
                    rc = wire_walk((const ProtobufCMessageDescriptor *) field->descriptor,
                                   p, p + n, depth + 1, sub, err, errlen);
                    if (rc != FRAME_OK)
                        return rc;
                }
                p += n;
                break;
            default:
                return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen,
                            "%s%sfield %u has wire type %d, which ferry.v1 does not use",
                            path, *path ? ": " : "", number, wire_type);
        }
    }
    return FRAME_OK;

truncated:
    return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen,
                "%s%sa field runs past the end of its message: the frame is truncated or "
                "not a ferry.v1 message", path, *path ? ": " : "");
}

/* ---- pass 2: unpacking with a memory budget -------------------------------------------- */

typedef struct AllocBudget
{
    size_t used;                    /* bytes handed out, ALLOC_OVERHEAD each included */
    size_t cap;                     /* most bytes that may be handed out */
    bool exceeded;                  /* an allocation was refused for the budget */
    bool nomem;                     /* malloc itself failed */
} AllocBudget;

static void *
budget_alloc(void *data, size_t size)
{
    AllocBudget *b = data;
    size_t cost = size + ALLOC_OVERHEAD;
    void *p;

    if (cost < size || cost > b->cap - b->used || b->used > b->cap)
    {
        b->exceeded = true;
        return NULL;
    }
    p = malloc(size);
    if (p == NULL)
    {
        b->nomem = true;
        return NULL;
    }
    b->used += cost;
    return p;
}

static void
budget_free(void *data, void *ptr)
{
    (void) data;
    free(ptr);
}

static void *
plain_alloc(void *data, size_t size)
{
    (void) data;
    return malloc(size);
}

/* Frees what budget_alloc gave: messages outlive their budget. */
static ProtobufCAllocator release_allocator = {plain_alloc, budget_free, NULL};

/* unpack runs passes 1 and 2 for a message of type desc. */
static int
unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
       const FrameLimits *limits, const char *what, ProtobufCMessage **out, char *err,
       size_t errlen)
{
    AllocBudget budget = {0, limits->max_decoded_bytes, false, false};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &budget};
    int rc;

    *out = NULL;
    if (data == NULL || len == 0)
        return errbuf_fail(FRAME_ERR_EMPTY, err, errlen,
                    "empty frame: every binary frame must hold one %s", what);
    if (len > limits->max_frame_bytes)
        return errbuf_fail(FRAME_ERR_TOO_LARGE, err, errlen,
                    "frame of %zu bytes is above the limit of %zu bytes; send smaller "
                    "mutation batches", len, limits->max_frame_bytes);
    rc = wire_walk(desc, data, data + len, 0, "", err, errlen);
    if (rc != FRAME_OK)
        return rc;
    *out = protobuf_c_message_unpack(desc, &alloc, len, data);
    if (*out != NULL)
        return FRAME_OK;
    if (budget.nomem)
        return errbuf_fail(FRAME_ERR_NOMEM, err, errlen, "out of memory decoding a frame");
    if (budget.exceeded)
        return errbuf_fail(FRAME_ERR_TOO_COMPLEX, err, errlen,
                    "decoding this frame would take more than %zu bytes of memory; "
                    "send fewer items per frame", limits->max_decoded_bytes);
    return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen,
                "the frame is not a valid %s (a field has the wrong wire type)", what);
}

/* ---- pass 3: the protocol's rules ------------------------------------------------------- */

enum
{
    TEXT_REQUIRED = 1 << 0,         /* must not be empty */
    TEXT_NO_CONTROL = 1 << 1,       /* no byte below 0x20, no DEL */
    TEXT_OFFSET = 1 << 2,           /* only printable ASCII without space */
};

/* check_text applies a string field's rules. The field's name for errors is prefix,
 * then "[index]" when index >= 0, then suffix: "mutations.mutations[3].id". */
static int
check_text(const char *s, size_t max, int flags, const char *prefix, long index,
           const char *suffix, char *err, size_t errlen)
{
    char name[128];
    size_t n = s != NULL ? strlen(s) : 0;
    int rc = FRAME_OK;
    const char *what = NULL;

    if (n == 0)
    {
        if (flags & TEXT_REQUIRED)
        {
            rc = FRAME_ERR_MISSING_FIELD;
            what = "is required";
        }
    }
    else if (n > max)
        rc = FRAME_ERR_BAD_FIELD;
    else if (flags & (TEXT_NO_CONTROL | TEXT_OFFSET))
    {
        for (size_t i = 0; i < n && rc == FRAME_OK; i++)
        {
            unsigned char c = (unsigned char) s[i];

            if (c < 0x20 || c == 0x7f)
            {
                rc = FRAME_ERR_BAD_FIELD;
                what = "contains a control character";
            }
            else if ((flags & TEXT_OFFSET) && (c == ' ' || c >= 0x80))
            {
                rc = FRAME_ERR_BAD_FIELD;
                what = "is not an offset: \"-1\" or one the server sent";
            }
        }
    }
    if (rc == FRAME_OK)
        return FRAME_OK;
    if (index >= 0)
        snprintf(name, sizeof(name), "%s[%ld]%s", prefix, index, suffix);
    else
        snprintf(name, sizeof(name), "%s%s", prefix, suffix);
    if (what == NULL)
        return errbuf_fail(rc, err, errlen, "%s is %zu bytes long; at most %zu are allowed",
                    name, n, max);
    return errbuf_fail(rc, err, errlen, "%s %s", name, what);
}

static int
check_hello(const Ferry__V1__Hello *m, char *err, size_t errlen)
{
    int rc;

    if (m->protocol_version == 0)
        return errbuf_fail(FRAME_ERR_MISSING_FIELD, err, errlen,
                    "hello.protocol_version is required (%d for %s)", FRAME_PROTOCOL_VERSION,
                    FRAME_SUBPROTOCOL);
    if ((rc = check_text(m->client_id, FRAME_MAX_ID_BYTES, TEXT_REQUIRED | TEXT_NO_CONTROL,
                         "hello.client_id", -1, "", err, errlen)) != FRAME_OK ||
        (rc = check_text(m->token, AUTH_MAX_TOKEN_BYTES, TEXT_REQUIRED, "hello.token", -1, "",
                         err, errlen)) != FRAME_OK ||
        (rc = check_text(m->client_version, FRAME_MAX_LABEL_BYTES, TEXT_NO_CONTROL,
                         "hello.client_version", -1, "", err, errlen)) != FRAME_OK)
        return rc;
    if (m->schema_version < 0)
        return errbuf_fail(FRAME_ERR_BAD_FIELD, err, errlen,
                    "hello.schema_version must not be negative (0 when the client has no cache)");
    return FRAME_OK;
}

static int
check_subscribe(const Ferry__V1__Subscribe *m, char *err, size_t errlen)
{
    int rc;

    if (m->subscription_id == 0)
        return errbuf_fail(FRAME_ERR_MISSING_FIELD, err, errlen,
                    "subscribe.subscription_id is required and must not be 0");
    if ((rc = check_text(m->table, FRAME_MAX_TABLE_BYTES, TEXT_REQUIRED | TEXT_NO_CONTROL,
                         "subscribe.table", -1, "", err, errlen)) != FRAME_OK ||
        (rc = check_text(m->where, FRAME_MAX_WHERE_BYTES, 0, "subscribe.where", -1, "",
                         err, errlen)) != FRAME_OK ||
        (rc = check_text(m->handle, FRAME_MAX_ID_BYTES, TEXT_NO_CONTROL, "subscribe.handle",
                         -1, "", err, errlen)) != FRAME_OK ||
        (rc = check_text(m->offset, FRAME_MAX_OFFSET_BYTES, TEXT_OFFSET, "subscribe.offset",
                         -1, "", err, errlen)) != FRAME_OK)
        return rc;
    if (m->n_columns > FRAME_MAX_COLUMNS)
        return errbuf_fail(FRAME_ERR_BAD_FIELD, err, errlen,
                    "subscribe.columns lists %zu columns; at most %d are allowed",
                    m->n_columns, FRAME_MAX_COLUMNS);
    for (size_t i = 0; i < m->n_columns; i++)
        if ((rc = check_text(m->columns[i], FRAME_MAX_COLUMN_BYTES,
                             TEXT_REQUIRED | TEXT_NO_CONTROL, "subscribe.columns", (long) i,
                             "", err, errlen)) != FRAME_OK)
            return rc;
    if (m->offset != NULL && m->offset[0] != '\0' && strcmp(m->offset, "-1") != 0 &&
        (m->handle == NULL || m->handle[0] == '\0'))
        return errbuf_fail(FRAME_ERR_BAD_FIELD, err, errlen,
                    "subscribe.offset needs subscribe.handle: an offset only means something "
                    "in the shape it came from");
    return FRAME_OK;
}

static int
check_mutations(const Ferry__V1__MutationBatch *m, const FrameLimits *limits, char *err,
                size_t errlen)
{
    int rc;

    if (m->n_mutations == 0)
        return errbuf_fail(FRAME_ERR_MISSING_FIELD, err, errlen,
                    "mutations: the batch holds no mutation");
    if (limits->max_mutations > 0 && m->n_mutations > limits->max_mutations)
        return errbuf_fail(FRAME_ERR_TOO_LARGE, err, errlen,
                    "mutations: %zu mutations in one batch; at most %zu are allowed",
                    m->n_mutations, limits->max_mutations);
    for (size_t i = 0; i < m->n_mutations; i++)
    {
        const Ferry__V1__Mutation *mu = m->mutations[i];
        const char *j;

        if (mu == NULL)
            return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen, "mutations.mutations[%zu] is missing", i);
        if ((rc = check_text(mu->id, FRAME_MAX_ID_BYTES, TEXT_REQUIRED | TEXT_NO_CONTROL,
                             "mutations.mutations", (long) i, ".id", err, errlen)) != FRAME_OK ||
            (rc = check_text(mu->json, FRAME_MAX_MUTATION_BYTES, TEXT_REQUIRED,
                             "mutations.mutations", (long) i, ".json", err, errlen)) != FRAME_OK)
            return rc;
        for (j = mu->json; *j == ' ' || *j == '\t' || *j == '\n' || *j == '\r'; j++)
            ;
        if (*j != '{')
            return errbuf_fail(FRAME_ERR_BAD_FIELD, err, errlen,
                        "mutations.mutations[%zu].json must be a JSON object", i);
    }
    return FRAME_OK;
}

static int
check_client(const Ferry__V1__ClientMessage *msg, const FrameLimits *limits, char *err,
             size_t errlen)
{
    switch (msg->msg_case)
    {
        case FERRY__V1__CLIENT_MESSAGE__MSG__NOT_SET:
            break;
        case FERRY__V1__CLIENT_MESSAGE__MSG_HELLO:
            return msg->hello ? check_hello(msg->hello, err, errlen) : FRAME_ERR_MALFORMED;
        case FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE:
            return msg->subscribe ? check_subscribe(msg->subscribe, err, errlen)
                : FRAME_ERR_MALFORMED;
        case FERRY__V1__CLIENT_MESSAGE__MSG_UNSUBSCRIBE:
            if (msg->unsubscribe == NULL)
                return FRAME_ERR_MALFORMED;
            if (msg->unsubscribe->subscription_id == 0)
                return errbuf_fail(FRAME_ERR_MISSING_FIELD, err, errlen,
                            "unsubscribe.subscription_id is required and must not be 0");
            return FRAME_OK;
        case FERRY__V1__CLIENT_MESSAGE__MSG_MUTATIONS:
            return msg->mutations ? check_mutations(msg->mutations, limits, err, errlen)
                : FRAME_ERR_MALFORMED;
        case FERRY__V1__CLIENT_MESSAGE__MSG_HEARTBEAT:
            return msg->heartbeat ? FRAME_OK : FRAME_ERR_MALFORMED;
        case FERRY__V1__CLIENT_MESSAGE__MSG_REFRESH_TOKEN:
            if (msg->refresh_token == NULL)
                return FRAME_ERR_MALFORMED;
            return check_text(msg->refresh_token->token, AUTH_MAX_TOKEN_BYTES, TEXT_REQUIRED,
                              "refresh_token.token", -1, "", err, errlen);
        default:
            break;
    }
    if (msg->base.n_unknown_fields > 0)
        return errbuf_fail(FRAME_ERR_UNKNOWN_TYPE, err, errlen,
                    "unknown message type (field %u of ClientMessage); this server speaks %s "
                    "version %d", msg->base.unknown_fields[0].tag, FRAME_SUBPROTOCOL,
                    FRAME_PROTOCOL_VERSION);
    return errbuf_fail(FRAME_ERR_UNKNOWN_TYPE, err, errlen, "the frame's ClientMessage holds no message");
}

/* ---- decoding: the API -------------------------------------------------------------------- */

int
frame_decode_client(const uint8_t *data, size_t len, const FrameLimits *limits,
                    Ferry__V1__ClientMessage **out, char *err, size_t errlen)
{
    ProtobufCMessage *m;
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return errbuf_fail(FRAME_ERR_NOMEM, err, errlen, "frame_decode_client: no output pointer");
    *out = NULL;
    if (limits == NULL)
        limits = &frame_client_limits;
    rc = unpack(&ferry__v1__client_message__descriptor, data, len, limits, "ClientMessage",
                &m, err, errlen);
    if (rc != FRAME_OK)
        return rc;
    rc = check_client((Ferry__V1__ClientMessage *) m, limits, err, errlen);
    if (rc != FRAME_OK)
    {
        if (err != NULL && errlen > 0 && err[0] == '\0')
            errbuf_fail(rc, err, errlen, "the frame's %s message is incomplete",
                 frame_client_type((Ferry__V1__ClientMessage *) m));
        protobuf_c_message_free_unpacked(m, &release_allocator);
        return rc;
    }
    *out = (Ferry__V1__ClientMessage *) m;
    return FRAME_OK;
}

void
frame_free_client(Ferry__V1__ClientMessage *msg)
{
    if (msg != NULL)
        protobuf_c_message_free_unpacked(&msg->base, &release_allocator);
}

int
frame_decode_server(const uint8_t *data, size_t len, const FrameLimits *limits,
                    Ferry__V1__ServerMessage **out, char *err, size_t errlen)
{
    ProtobufCMessage *m;
    Ferry__V1__ServerMessage *msg;
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return errbuf_fail(FRAME_ERR_NOMEM, err, errlen, "frame_decode_server: no output pointer");
    *out = NULL;
    if (limits == NULL)
        limits = &frame_server_limits;
    rc = unpack(&ferry__v1__server_message__descriptor, data, len, limits, "ServerMessage",
                &m, err, errlen);
    if (rc != FRAME_OK)
        return rc;
    msg = (Ferry__V1__ServerMessage *) m;
    if (msg->msg_case == FERRY__V1__SERVER_MESSAGE__MSG__NOT_SET || msg->welcome == NULL)
    {
        rc = msg->base.n_unknown_fields > 0
            ? errbuf_fail(FRAME_ERR_UNKNOWN_TYPE, err, errlen,
                   "unknown message type (field %u of ServerMessage); skip it",
                   msg->base.unknown_fields[0].tag)
            : errbuf_fail(FRAME_ERR_UNKNOWN_TYPE, err, errlen,
                   "the frame's ServerMessage holds no message");
        protobuf_c_message_free_unpacked(m, &release_allocator);
        return rc;
    }
    *out = msg;
    return FRAME_OK;
}

void
frame_free_server(Ferry__V1__ServerMessage *msg)
{
    if (msg != NULL)
        protobuf_c_message_free_unpacked(&msg->base, &release_allocator);
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* encode packs m (whose oneof case is msg_case and member `member`) after headroom. */
static int
encode(const ProtobufCMessage *m, unsigned msg_case, const void *member, size_t max,
       uint8_t *buf, size_t cap, size_t headroom, size_t *len, char *err, size_t errlen)
{
    size_t size, written;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (len != NULL)
        *len = 0;
    if (m == NULL || len == NULL)
        return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen, "nothing to encode");
    if (msg_case == 0 || member == NULL)
        return errbuf_fail(FRAME_ERR_UNKNOWN_TYPE, err, errlen, "no message is set in the envelope");
    if (!protobuf_c_message_check(m))
        return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen,
                    "the %s message has a NULL string or message, or an uninitialised part",
                    oneof_name(m->descriptor, msg_case));
    size = protobuf_c_message_get_packed_size(m);
    *len = size;
    if (size > max)
        return errbuf_fail(FRAME_ERR_TOO_LARGE, err, errlen,
                    "a %s frame of %zu bytes is above the limit of %zu bytes",
                    oneof_name(m->descriptor, msg_case), size, max);
    if (buf == NULL || headroom > cap || size > cap - headroom)
        return errbuf_fail(FRAME_ERR_BUFFER, err, errlen,
                    "a %s frame needs %zu bytes after %zu of headroom; the buffer has %zu",
                    oneof_name(m->descriptor, msg_case), size, headroom, cap);
    written = protobuf_c_message_pack(m, buf + headroom);
    if (written != size)
        return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen,
                    "packing %s wrote %zu bytes instead of %zu",
                    oneof_name(m->descriptor, msg_case), written, size);
    return FRAME_OK;
}

/* encode_alloc sizes m, allocates headroom + size and packs into it. */
static int
encode_alloc(const ProtobufCMessage *m, unsigned msg_case, const void *member, size_t max,
             size_t headroom, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
    size_t need;
    uint8_t *p;
    int rc;

    if (buf == NULL)
        return errbuf_fail(FRAME_ERR_MALFORMED, err, errlen, "nothing to encode into");
    *buf = NULL;
    rc = encode(m, msg_case, member, max, NULL, 0, headroom, len, err, errlen);
    if (rc != FRAME_ERR_BUFFER)
        return rc == FRAME_OK ? FRAME_ERR_MALFORMED : rc;
    need = headroom + *len;
    p = malloc(need > 0 ? need : 1);
    if (p == NULL)
        return errbuf_fail(FRAME_ERR_NOMEM, err, errlen, "out of memory encoding a frame");
    rc = encode(m, msg_case, member, max, p, need, headroom, len, err, errlen);
    if (rc != FRAME_OK)
    {
        free(p);
        return rc;
    }
    *buf = p;
    return FRAME_OK;
}

size_t
frame_server_size(const Ferry__V1__ServerMessage *msg)
{
    return msg != NULL ? protobuf_c_message_get_packed_size(&msg->base) : 0;
}

int
frame_encode_server(const Ferry__V1__ServerMessage *msg, uint8_t *buf, size_t cap,
                    size_t headroom, size_t *len, char *err, size_t errlen)
{
    return encode(msg ? &msg->base : NULL, msg ? msg->msg_case : 0, msg ? msg->welcome : NULL,
                  FRAME_MAX_SERVER_BYTES, buf, cap, headroom, len, err, errlen);
}

int
frame_encode_server_alloc(const Ferry__V1__ServerMessage *msg, size_t headroom,
                          uint8_t **buf, size_t *len, char *err, size_t errlen)
{
    return encode_alloc(msg ? &msg->base : NULL, msg ? msg->msg_case : 0,
                        msg ? msg->welcome : NULL, FRAME_MAX_SERVER_BYTES, headroom, buf, len,
                        err, errlen);
}

int
frame_encode_client(const Ferry__V1__ClientMessage *msg, uint8_t *buf, size_t cap,
                    size_t headroom, size_t *len, char *err, size_t errlen)
{
    return encode(msg ? &msg->base : NULL, msg ? msg->msg_case : 0, msg ? msg->hello : NULL,
                  FRAME_MAX_CLIENT_BYTES, buf, cap, headroom, len, err, errlen);
}

int
frame_encode_client_alloc(const Ferry__V1__ClientMessage *msg, size_t headroom,
                          uint8_t **buf, size_t *len, char *err, size_t errlen)
{
    return encode_alloc(msg ? &msg->base : NULL, msg ? msg->msg_case : 0,
                        msg ? msg->hello : NULL, FRAME_MAX_CLIENT_BYTES, headroom, buf, len,
                        err, errlen);
}

int
frame_encode_error(Ferry__V1__ErrorCode code, const char *message, uint32_t subscription_id,
                   bool fatal, uint32_t retry_after_ms, size_t headroom, uint8_t **buf,
                   size_t *len, char *err, size_t errlen)
{
    Ferry__V1__ServerMessage env = FERRY__V1__SERVER_MESSAGE__INIT;
    Ferry__V1__Error e = FERRY__V1__ERROR__INIT;
    char text[ERROR_MESSAGE_MAX + 1];
    size_t n = message != NULL ? strlen(message) : 0;

    if (n > ERROR_MESSAGE_MAX)
    {
        n = ERROR_MESSAGE_MAX;
        while (n > 0 && ((unsigned char) message[n] & 0xc0) == 0x80)
            n--;                    /* do not cut a UTF-8 sequence */
    }
    if (n > 0)
        memcpy(text, message, n);
    text[n] = '\0';
    e.code = code;
    e.message = text;
    e.subscription_id = subscription_id;
    e.fatal = fatal;
    e.retry_after_ms = retry_after_ms;
    env.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_ERROR;
    env.error = &e;
    return frame_encode_server_alloc(&env, headroom, buf, len, err, errlen);
}
