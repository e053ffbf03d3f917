/*
 * test/fuzz/fuzz_pgoutput.c -- libFuzzer target for gateway/pgoutput: any bytes, decoded
 * as one pgoutput message, must give 0 or -1 with an error, never a crash, an overread
 * or a leak; a decoded message's values must lie inside the input, and a decoded Relation
 * must round-trip through the relation cache.
 *
 * Seed corpus: test/fuzz/corpus/fuzz_pgoutput/ (real messages from a PostgreSQL 15
 * walsender, written by test/gateway/pgoutput_decode.c with FERRY_PGO_CORPUS=DIR).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgoutput.h"

/* check_tuple touches every value byte (ASan checks them) and traps on values outside. */
static unsigned
check_tuple(const PgoTuple *t, const uint8_t *data, size_t size)
{
    unsigned sum = 0;

    if (t->ncols < 0 || t->ncols > PGO_MAX_COLUMNS)
        abort();
    for (int i = 0; i < t->ncols; i++)
    {
        const PgoDatum *d = &t->cols[i];

        if (d->kind != 'n' && d->kind != 'u' && d->kind != 't' && d->kind != 'b')
            abort();
        if (d->data == NULL)
            continue;
        if ((const uint8_t *) d->data < data || (const uint8_t *) d->data + d->len > data + size)
            abort();
        for (uint32_t k = 0; k < d->len; k++)
            sum += (unsigned char) d->data[k];
    }
    return sum;
}

/* check_msg checks a decoded message against its input; returns a sum of what it read. */
static unsigned
check_msg(const PgoMsg *m, const uint8_t *data, size_t size)
{
    char err[256];
    PgoRelcache *rc;
    const PgoRelation *rel;
    unsigned sum = 0;

    switch (m->type)
    {
        case PGO_INSERT:
            sum += check_tuple(&m->insert.newtup, data, size);
            break;
        case PGO_UPDATE:
            sum += check_tuple(&m->update.oldtup, data, size);
            sum += check_tuple(&m->update.newtup, data, size);
            break;
        case PGO_DELETE:
            sum += check_tuple(&m->delete.oldtup, data, size);
            break;
        case PGO_RELATION:
            rc = pgo_relcache_new();
            if (rc == NULL)
                return 0;
            rel = pgo_relcache_put(rc, &m->relation, err, sizeof(err));
            if (rel == NULL || pgo_relcache_get(rc, m->relation.relid) != rel
                || rel->ncols != m->relation.ncols || strcmp(rel->relname, m->relation.relname) != 0)
                abort();
            for (int i = 0; i < rel->ncols; i++)
                if (strcmp(rel->cols[i].name, m->relation.cols[i].name) != 0)
                    abort();
            pgo_relcache_free(rc);
            break;
        case PGO_TRUNCATE:
            for (uint32_t i = 0; i < m->truncate.nrels; i++)
                sum += m->truncate.relids[i];
            break;
        case PGO_MESSAGE:
            if ((const uint8_t *) m->message.content < data
                || (const uint8_t *) m->message.content + m->message.len > data + size)
                abort();
            break;
        default:
            break;
    }
    return sum;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static PgoMsg reused;       /* reused across inputs, as a consumer would */
    static volatile unsigned sink;
    PgoMsg fresh, *mp = &reused;
    char err[256];

    /* odd sizes decode into a fresh PgoMsg (empty scratch), even ones into the reused one */
    if (size & 1)
    {
        pgo_msg_init(&fresh);
        mp = &fresh;
    }
    err[0] = '\0';
    if (pgo_decode(mp, data, size, err, sizeof(err)) < 0)
    {
        if (err[0] == '\0' || strstr(err, "offset") == NULL)
            abort();            /* every error says where */
    }
    else
        sink += check_msg(mp, data, size);
    if (mp == &fresh)
        pgo_msg_free(&fresh);
    return 0;
}
