/*
 * test/gateway/wire_test.c -- hand-encoded Change and ChangeBatch frames decode with protobuf-c.
 */
#include <string.h>

#include "ferry.pb-c.h"
#include "tap.h"
#include "wire.h"

int
main(void)
{
	const char *v1[] = {"42", NULL, "héllo", ""};
	uint32_t	l1[] = {2, 0, 6, 0};
	const char *v2[] = {"7"};
	uint32_t	l2[] = {1};
	Wbuf		c1,
				c2,
				frame;
	WireBatch	wb = {0};
	Ferry__V1__ServerMessage *m;
	Ferry__V1__ChangeBatch *b;

	plan(16);
	wbuf_init(&c1);
	wbuf_init(&c2);
	wbuf_init(&frame);
	wire_change(&c1, WIRE_OP_UPDATE, 4, v1, l1, 12);
	wire_change(&c2, WIRE_OP_DELETE, 1, v2, l2, 0);

	wire_batch_begin(&wb, 9);
	wire_batch_add(&wb, c1.data, c1.len);
	wire_batch_add(&wb, c2.data, c2.len);
	wire_batch_finish(&wb, "123_4", 1700000000123LL, 0, 16, &frame);
	ok(frame.len > 16 && frame.data[0] == 0 && frame.data[15] == 0, "the frame starts after 16 bytes of headroom");

	m = ferry__v1__server_message__unpack(NULL, frame.len - 16, frame.data + 16);
	if (!ok(m != NULL, "protobuf-c decodes the frame"))
		return done_testing();
	is_int(m->msg_case, FERRY__V1__SERVER_MESSAGE__MSG_CHANGES, "it is a ChangeBatch");
	b = m->changes;
	is_int(b->subscription_id, 9, "subscription id");
	is_str(b->offset, "123_4", "offset");
	is_int(b->commit_time_ms, 1700000000123LL, "commit time");
	is_int((long) b->n_changes, 2, "two changes");
	is_int(b->changes[0]->op, FERRY__V1__OP__UPDATE, "first is an UPDATE");
	is_int((long) b->changes[0]->n_values, 4, "with four values");
	is_str(b->changes[0]->values[0], "42", "value 0");
	is_str(b->changes[0]->values[2], "héllo", "value 2 (UTF-8)");
	is_str(b->changes[0]->values[3], "", "value 3 is an empty string, not NULL");
	ok(b->changes[0]->n_nulls == 1 && b->changes[0]->nulls[0] == 1, "value 1 is NULL");
	is_int(b->changes[0]->version, 12, "version");
	ok(b->changes[1]->op == FERRY__V1__OP__DELETE && b->changes[1]->n_values == 1 &&
	   strcmp(b->changes[1]->values[0], "7") == 0, "second is a DELETE of key 7");
	is_int(b->changes[1]->n_nulls, 0, "with no NULLs");
	ferry__v1__server_message__free_unpacked(m, NULL);
	wbuf_free(&c1);
	wbuf_free(&c2);
	wbuf_free(&frame);
	wire_batch_free(&wb);
	return done_testing();
}
