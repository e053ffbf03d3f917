/*
 * test/gateway/hmap_test.c -- the gateway's hash map: put, get, replace, delete, growth, iteration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "tap.h"

int
main(void)
{
	Hmap		m;
	char		key[32];
	int			values[5000];
	int			bad = 0;
	long		seen = 0;

	plan(10);
	hmap_init(&m);
	ok(hmap_get(&m, "x", 1) == NULL, "an empty map finds nothing");

	for (int i = 0; i < 5000; i++)
	{
		values[i] = i;
		snprintf(key, sizeof(key), "key-%d", i);
		if (hmap_put(&m, key, strlen(key), &values[i]) != NULL)
			bad++;
	}
	is_int(bad, 0, "5000 new keys return no previous value");
	is_int((long) m.count, 5000, "the map holds 5000 entries");
	for (int i = 0; i < 5000; i++)
	{
		int		   *v;

		snprintf(key, sizeof(key), "key-%d", i);
		v = hmap_get(&m, key, strlen(key));
		if (v == NULL || *v != i)
			bad++;
	}
	is_int(bad, 0, "every key finds its value after growing");

	ok(hmap_put(&m, "key-7", 5, &values[8]) == &values[7], "replacing returns the previous value");
	ok(hmap_get(&m, "key-7", 5) == &values[8], "and the new value is found");

	for (int i = 0; i < 5000; i += 2)
	{
		snprintf(key, sizeof(key), "key-%d", i);
		hmap_del(&m, key, strlen(key));
	}
	is_int((long) m.count, 2500, "deleting half leaves 2500");
	for (int i = 1; i < 5000; i += 2)
	{
		snprintf(key, sizeof(key), "key-%d", i);
		if (hmap_get(&m, key, strlen(key)) == NULL)
			bad++;
	}
	is_int(bad, 0, "the other half is still found past the deleted slots");

	for (long i = hmap_next(&m, 0); i >= 0; i = hmap_next(&m, i + 1))
		seen++;
	is_int(seen, 2500, "iteration visits every live entry once");

	ok(hmap_put(&m, "a\0b", 3, &values[1]) == NULL && hmap_get(&m, "a\0c", 3) == NULL &&
	   hmap_get(&m, "a\0b", 3) == &values[1], "keys may hold NUL bytes");
	hmap_destroy(&m);
	return done_testing();
}
