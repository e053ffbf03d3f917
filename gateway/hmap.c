/*
 * gateway/hmap.c -- a string-keyed hash map of pointers (open addressing, linear probing).
 */
#include <stdlib.h>
#include <string.h>

#include "hmap.h"

uint64_t
hmap_hash(const void *key, size_t len)
{
	/* FNV-1a, 64 bit */
	const unsigned char *p = key;
	uint64_t	h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
	{
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

void
hmap_init(Hmap *m)
{
	memset(m, 0, sizeof(*m));
}

void
hmap_destroy(Hmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slots[i].key);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

static HmapEntry *
find(const Hmap *m, const void *key, size_t keylen, uint64_t h)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1))
	{
		HmapEntry  *e = &m->slots[i];

		if (e->key == NULL && !e->tomb)
			return NULL;
		if (e->key != NULL && e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
			return e;
	}
}

static void
grow(Hmap *m)
{
	Hmap		n;

	n.cap = m->cap ? m->cap * 2 : 16;
	n.count = n.used = 0;
	n.slots = calloc(n.cap, sizeof(HmapEntry));
	for (size_t i = 0; i < m->cap; i++)
	{
		HmapEntry  *e = &m->slots[i];
		size_t		j;

		if (e->key == NULL)
			continue;
		for (j = e->hash & (n.cap - 1); n.slots[j].key != NULL; j = (j + 1) & (n.cap - 1))
			;
		n.slots[j] = *e;
		n.slots[j].tomb = 0;
		n.count++;
		n.used++;
	}
	free(m->slots);
	*m = n;
}

void *
hmap_get(const Hmap *m, const void *key, size_t keylen)
{
	HmapEntry  *e = find(m, key, keylen, hmap_hash(key, keylen));

	return e != NULL ? e->value : NULL;
}

void *
hmap_put(Hmap *m, const void *key, size_t keylen, void *value)
{
	uint64_t	h = hmap_hash(key, keylen);
	HmapEntry  *e = find(m, key, keylen, h);
	size_t		i;

	if (e != NULL)
	{
		void	   *old = e->value;

		e->value = value;
		return old;
	}
	if ((m->used + 1) * 4 >= m->cap * 3)
		grow(m);
	for (i = h & (m->cap - 1); m->slots[i].key != NULL; i = (i + 1) & (m->cap - 1))
		;
	e = &m->slots[i];
	if (!e->tomb)
		m->used++;
	e->key = malloc(keylen + 1);
	memcpy(e->key, key, keylen);
	e->key[keylen] = '\0';
	e->keylen = keylen;
	e->hash = h;
	e->value = value;
	e->tomb = 0;
	m->count++;
	return NULL;
}

void *
hmap_del(Hmap *m, const void *key, size_t keylen)
{
	HmapEntry  *e = find(m, key, keylen, hmap_hash(key, keylen));
	void	   *old;

	if (e == NULL)
		return NULL;
	old = e->value;
	free(e->key);
	e->key = NULL;
	e->value = NULL;
	e->tomb = 1;
	m->count--;
	return old;
}

long
hmap_next(const Hmap *m, long i)
{
	for (; i >= 0 && (size_t) i < m->cap; i++)
		if (m->slots[i].key != NULL)
			return i;
	return -1;
}
