/*
 * gateway/wire.h -- hand-rolled protobuf encoding of the messages on the hot path.
 *
 * Every change goes to disk once, as an encoded ferry.v1.Change, and leaves for
 * each subscriber inside a ChangeBatch built by concatenating the stored bytes:
 * no decoding and re-encoding per subscriber. Field numbers are those of
 * proto/ferry.proto (Change, ChangeBatch, ServerMessage.changes); every other
 * message is encoded with protobuf-c (gateway/frame.c).
 */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer. */
typedef struct Wbuf
{
	uint8_t    *data;			/* bytes */
	size_t		len;			/* used */
	size_t		cap;			/* allocated */
} Wbuf;

void		wbuf_init(Wbuf *b);
void		wbuf_free(Wbuf *b);
void		wbuf_reset(Wbuf *b);
void		wbuf_reserve(Wbuf *b, size_t extra);
void		wbuf_put(Wbuf *b, const void *p, size_t n);
void		wbuf_varint(Wbuf *b, uint64_t v);
void		wbuf_tag(Wbuf *b, uint32_t field, uint32_t wiretype);
void		wbuf_bytes_field(Wbuf *b, uint32_t field, const void *p, size_t n);
void		wbuf_varint_field(Wbuf *b, uint32_t field, uint64_t v);
size_t		wire_varint_len(uint64_t v);

/* ferry.v1.Op */
#define WIRE_OP_INSERT 1
#define WIRE_OP_UPDATE 2
#define WIRE_OP_DELETE 3

/*
 * wire_change encodes a Change: op, n values (values[i] NULL for SQL NULL,
 * lens[i] its length), the row's version. Appends to b.
 */
void		wire_change(Wbuf *b, int op, int n, const char *const *values, const uint32_t *lens,
						int64_t version);

/*
 * A ChangeBatch frame (a ServerMessage with its `changes` member) is built in
 * three steps: begin, add each stored Change, finish. The frame is written
 * after `headroom` bytes (LWS_PRE), so lws_write can send it in place.
 */
typedef struct WireBatch
{
	Wbuf		body;			/* the ChangeBatch body being built */
	uint32_t	subscription_id;	/* ChangeBatch.subscription_id */
	int			nchanges;		/* changes added */
} WireBatch;

void		wire_batch_begin(WireBatch *wb, uint32_t subscription_id);
void		wire_batch_add(WireBatch *wb, const uint8_t *change, size_t len);
/* Finishes into out (reset first): headroom zero bytes, then the ServerMessage. */
void		wire_batch_finish(WireBatch *wb, const char *offset, int64_t commit_time_ms, int partial,
							  size_t headroom, Wbuf *out);
void		wire_batch_free(WireBatch *wb);

#endif
