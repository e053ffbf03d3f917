/*
 * gateway/wire.c -- hand-rolled protobuf encoding of the messages on the hot path.
 */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define WT_VARINT 0
#define WT_LEN 2

/* Field numbers from proto/ferry.proto. */
#define CHANGE_OP 1
#define CHANGE_VALUES 2
#define CHANGE_NULLS 3
#define CHANGE_VERSION 4
#define BATCH_SUBSCRIPTION 1
#define BATCH_OFFSET 2
#define BATCH_CHANGES 3
#define BATCH_COMMIT_TIME 4
#define BATCH_PARTIAL 5
#define SERVER_CHANGES 3

void
wbuf_init(Wbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void
wbuf_free(Wbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void
wbuf_reset(Wbuf *b)
{
	b->len = 0;
}

void
wbuf_reserve(Wbuf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	while (b->cap < b->len + extra)
		b->cap = b->cap ? b->cap * 2 : 256;
	b->data = realloc(b->data, b->cap);
	if (b->data == NULL)
		abort();				/* out of memory: nothing sensible is left to do */
}

void
wbuf_put(Wbuf *b, const void *p, size_t n)
{
	wbuf_reserve(b, n);
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

size_t
wire_varint_len(uint64_t v)
{
	size_t		n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

void
wbuf_varint(Wbuf *b, uint64_t v)
{
	wbuf_reserve(b, 10);
	while (v >= 0x80)
	{
		b->data[b->len++] = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	b->data[b->len++] = (uint8_t) v;
}

void
wbuf_tag(Wbuf *b, uint32_t field, uint32_t wiretype)
{
	wbuf_varint(b, ((uint64_t) field << 3) | wiretype);
}

void
wbuf_bytes_field(Wbuf *b, uint32_t field, const void *p, size_t n)
{
	wbuf_tag(b, field, WT_LEN);
	wbuf_varint(b, n);
	wbuf_put(b, p, n);
}

void
wbuf_varint_field(Wbuf *b, uint32_t field, uint64_t v)
{
	wbuf_tag(b, field, WT_VARINT);
	wbuf_varint(b, v);
}

void
wire_change(Wbuf *b, int op, int n, const char *const *values, const uint32_t *lens, int64_t version)
{
	size_t		nulls_len = 0;

	wbuf_varint_field(b, CHANGE_OP, (uint64_t) op);
	for (int i = 0; i < n; i++)
	{
		if (values[i] == NULL)
		{
			nulls_len += wire_varint_len((uint64_t) i);
			wbuf_bytes_field(b, CHANGE_VALUES, "", 0);
		}
		else
			wbuf_bytes_field(b, CHANGE_VALUES, values[i], lens[i]);
	}
	if (nulls_len > 0)
	{
		/* packed repeated uint32 */
		wbuf_tag(b, CHANGE_NULLS, WT_LEN);
		wbuf_varint(b, nulls_len);
		for (int i = 0; i < n; i++)
			if (values[i] == NULL)
				wbuf_varint(b, (uint64_t) i);
	}
	if (version != 0)
		wbuf_varint_field(b, CHANGE_VERSION, (uint64_t) version);
}

void
wire_batch_begin(WireBatch *wb, uint32_t subscription_id)
{
	wbuf_reset(&wb->body);
	wb->subscription_id = subscription_id;
	wb->nchanges = 0;
}

void
wire_batch_add(WireBatch *wb, const uint8_t *change, size_t len)
{
	wbuf_bytes_field(&wb->body, BATCH_CHANGES, change, len);
	wb->nchanges++;
}

void
wire_batch_finish(WireBatch *wb, const char *offset, int64_t commit_time_ms, int partial,
				  size_t headroom, Wbuf *out)
{
	Wbuf		head;
	size_t		body_len;

	/* Fields 1 and 2 precede the changes; field order does not matter to readers. */
	wbuf_init(&head);
	if (wb->subscription_id != 0)
		wbuf_varint_field(&head, BATCH_SUBSCRIPTION, wb->subscription_id);
	wbuf_bytes_field(&head, BATCH_OFFSET, offset, strlen(offset));
	if (commit_time_ms != 0)
		wbuf_varint_field(&wb->body, BATCH_COMMIT_TIME, (uint64_t) commit_time_ms);
	if (partial)
		wbuf_varint_field(&wb->body, BATCH_PARTIAL, 1);
	body_len = head.len + wb->body.len;

	wbuf_reset(out);
	wbuf_reserve(out, headroom + body_len + 16);
	memset(out->data, 0, headroom);
	out->len = headroom;
	wbuf_tag(out, SERVER_CHANGES, WT_LEN);
	wbuf_varint(out, body_len);
	wbuf_put(out, head.data, head.len);
	wbuf_put(out, wb->body.data, wb->body.len);
	wbuf_free(&head);
}

void
wire_batch_free(WireBatch *wb)
{
	wbuf_free(&wb->body);
}
