/*
 * gateway/frame.h -- decode and encode the WebSocket frames of protocol ferry.v1.
 *
 * One binary WebSocket message is one protobuf message: a Ferry__V1__ClientMessage from
 * the client, a Ferry__V1__ServerMessage from the server (proto/ferry.proto, generated
 * into build/proto/ferry.pb-c.h; docs/protocol.md describes the protocol).
 *
 * Decoding never trusts the bytes: it checks the frame's size, walks the wire format
 * against the message descriptors (every string field must be UTF-8 without NUL),
 * unpacks with an allocator that caps the memory one message may take, and then checks
 * what the protocol requires of each message (required fields, lengths, counts). It
 * returns a FrameResult and a message for the peer in the caller's buffer; it never
 * aborts and never logs.
 *
 * Encoding writes `headroom` bytes of nothing followed by the packed message, so that a
 * caller can hand buf + LWS_PRE to lws_write without copying.
 */
#ifndef FERRY_GATEWAY_FRAME_H
#define FERRY_GATEWAY_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.pb-c.h"

/* The protocol's names; also in docs/protocol.md. */
#define FRAME_SUBPROTOCOL "ferry.v1"    /* Sec-WebSocket-Protocol */
#define FRAME_PATH "/v1/ws"             /* the WebSocket endpoint */
#define FRAME_PROTOCOL_VERSION 1        /* Hello/Welcome.protocol_version */

/* Default limits (FrameLimits below can change the first three). */
#define FRAME_MAX_CLIENT_BYTES (1024 * 1024)        /* one ClientMessage */
#define FRAME_MAX_SERVER_BYTES (16 * 1024 * 1024)   /* one ServerMessage */
#define FRAME_MAX_DECODED_BYTES (8 * 1024 * 1024)   /* memory one decoded ClientMessage takes */
#define FRAME_MAX_MUTATIONS 1000                    /* mutations in one MutationBatch */
#define FRAME_MAX_MUTATION_BYTES (256 * 1024)       /* one Mutation.json */
#define FRAME_MAX_ID_BYTES 128                      /* client_id, mutation id, handle */
#define FRAME_MAX_OFFSET_BYTES 64                   /* Subscribe.offset */
#define FRAME_MAX_TABLE_BYTES 256                   /* Subscribe.table */
#define FRAME_MAX_WHERE_BYTES (16 * 1024)           /* Subscribe.where */
#define FRAME_MAX_COLUMNS 1600                      /* Subscribe.columns (Postgres' maximum) */
#define FRAME_MAX_COLUMN_BYTES 128                  /* one entry of Subscribe.columns */
#define FRAME_MAX_LABEL_BYTES 128                   /* Hello.client_version */
#define FRAME_MAX_DEPTH 8                           /* nesting of messages on the wire */

/* Fatal errors close the socket with WebSocket close code FRAME_CLOSE_BASE + ErrorCode
 * (4000-4999 is the range RFC 6455 leaves to applications), except SHUTTING_DOWN, which
 * closes with the standard "going away". */
#define FRAME_CLOSE_BASE 4000
#define FRAME_CLOSE_GOING_AWAY 1001

/* Results of the functions below; negative values are failures. */
typedef enum FrameResult
{
    FRAME_OK = 0,                   /* done */
    FRAME_ERR_EMPTY = -1,           /* a frame of zero bytes */
    FRAME_ERR_TOO_LARGE = -2,       /* above the frame size limit (encode: above FRAME_MAX_SERVER_BYTES) */
    FRAME_ERR_MALFORMED = -3,       /* not protobuf wire format for this message */
    FRAME_ERR_TOO_COMPLEX = -4,     /* decoding would take more than the memory limit */
    FRAME_ERR_BAD_STRING = -5,      /* a string field that is not UTF-8, or holds a NUL */
    FRAME_ERR_UNKNOWN_TYPE = -6,    /* no message in the envelope, or one this side does not know */
    FRAME_ERR_MISSING_FIELD = -7,   /* a required field is absent or empty */
    FRAME_ERR_BAD_FIELD = -8,       /* a field out of range: too long, too many, zero id */
    FRAME_ERR_BUFFER = -9,          /* encode: the caller's buffer is too small */
    FRAME_ERR_NOMEM = -10,          /* out of memory */
} FrameResult;

/* Limits one decode applies; NULL means the defaults above. */
typedef struct FrameLimits
{
    size_t max_frame_bytes;         /* largest frame accepted */
    size_t max_decoded_bytes;       /* most memory the decoded message may take */
    size_t max_mutations;           /* most mutations in one MutationBatch; 0 = no limit */
} FrameLimits;

extern const FrameLimits frame_client_limits;  /* FRAME_MAX_CLIENT_BYTES, ..._DECODED_BYTES, ..._MUTATIONS */
extern const FrameLimits frame_server_limits;  /* FRAME_MAX_SERVER_BYTES, 16x that, no mutations */

/* ---- decoding ---------------------------------------------------------------------- */

/*
 * frame_decode_client decodes and validates one frame from a client. On FRAME_OK *out is
 * the message, which the caller releases with frame_free_client. On failure *out is NULL
 * and err (when errlen > 0) holds a message fit to send back in an Error frame, naming
 * the field concerned ("subscribe.columns: ...").
 *
 * FRAME_ERR_UNKNOWN_TYPE is what a newer client's new message type gives: answer it
 * with a non-fatal BAD_FRAME error and keep the connection.
 */
int frame_decode_client(const uint8_t *data, size_t len, const FrameLimits *limits,
                        Ferry__V1__ClientMessage **out, char *err, size_t errlen);

/* frame_free_client releases a message from frame_decode_client (NULL is fine). */
void frame_free_client(Ferry__V1__ClientMessage *msg);

/*
 * frame_decode_server decodes one frame from the server (for clients and tests): the
 * same wire checks as frame_decode_client, and a known message type, but none of the
 * per-field rules. A client should skip a frame that gives FRAME_ERR_UNKNOWN_TYPE: it is
 * a newer server's message. Release *out with frame_free_server.
 */
int frame_decode_server(const uint8_t *data, size_t len, const FrameLimits *limits,
                        Ferry__V1__ServerMessage **out, char *err, size_t errlen);

/* frame_free_server releases a message from frame_decode_server (NULL is fine). */
void frame_free_server(Ferry__V1__ServerMessage *msg);

/* ---- encoding ---------------------------------------------------------------------- */

/* frame_server_size returns the packed size of msg, headroom not included. */
size_t frame_server_size(const Ferry__V1__ServerMessage *msg);

/*
 * frame_encode_server packs msg into buf (cap bytes) after `headroom` bytes it leaves
 * untouched, and sets *len to the packed size (headroom not included). Fails with
 * FRAME_ERR_BUFFER when headroom + size > cap (then *len is the size needed), with
 * FRAME_ERR_TOO_LARGE above FRAME_MAX_SERVER_BYTES, with FRAME_ERR_UNKNOWN_TYPE when no
 * message is set in the envelope, and with FRAME_ERR_MALFORMED when the structure is
 * not packable (a NULL where a message or string must be).
 */
int frame_encode_server(const Ferry__V1__ServerMessage *msg, uint8_t *buf, size_t cap,
                        size_t headroom, size_t *len, char *err, size_t errlen);

/* frame_encode_server_alloc does the same into a malloc'd buffer of headroom + *len
 * bytes, stored in *buf; the caller frees it with free(). */
int frame_encode_server_alloc(const Ferry__V1__ServerMessage *msg, size_t headroom,
                              uint8_t **buf, size_t *len, char *err, size_t errlen);

/* frame_encode_client and frame_encode_client_alloc: the same for a ClientMessage (for
 * clients and tests); the limit is FRAME_MAX_CLIENT_BYTES. */
int frame_encode_client(const Ferry__V1__ClientMessage *msg, uint8_t *buf, size_t cap,
                        size_t headroom, size_t *len, char *err, size_t errlen);
int frame_encode_client_alloc(const Ferry__V1__ClientMessage *msg, size_t headroom,
                              uint8_t **buf, size_t *len, char *err, size_t errlen);

/*
 * frame_encode_error builds and packs an Error frame into a malloc'd buffer (headroom
 * + *len bytes, freed by the caller with free()). message may be NULL; it is cut at
 * 1024 bytes (on a UTF-8 boundary).
 */
int frame_encode_error(Ferry__V1__ErrorCode code, const char *message,
                       uint32_t subscription_id, bool fatal, uint32_t retry_after_ms,
                       size_t headroom, uint8_t **buf, size_t *len, char *err, size_t errlen);

/* ---- names and codes --------------------------------------------------------------- */

/* frame_error_code maps a failed frame_decode_client result to the ErrorCode to send:
 * FRAME_TOO_LARGE for FRAME_ERR_TOO_LARGE and FRAME_ERR_TOO_COMPLEX, INTERNAL for
 * FRAME_ERR_NOMEM, BAD_FRAME otherwise. */
Ferry__V1__ErrorCode frame_error_code(int rc);

/* frame_close_code returns the WebSocket close code for a fatal Error of this code:
 * 4000 + code, 1001 for SHUTTING_DOWN, 4019 (INTERNAL) for a value out of range. */
int frame_close_code(Ferry__V1__ErrorCode code);

/* frame_error_code_name returns the proto name of an ErrorCode ("BAD_FRAME"), or
 * "UNKNOWN" for a value the proto does not define. */
const char *frame_error_code_name(Ferry__V1__ErrorCode code);

/* frame_client_type and frame_server_type return the oneof member's name ("hello",
 * "changes", ...), or "none" when none is set. For logs and metrics. */
const char *frame_client_type(const Ferry__V1__ClientMessage *msg);
const char *frame_server_type(const Ferry__V1__ServerMessage *msg);

/* frame_result_name returns a short name of a FrameResult ("malformed", ...). */
const char *frame_result_name(int rc);

#endif                          /* FERRY_GATEWAY_FRAME_H */
