/*
 * test/gateway/repl_wal_level.c -- repl_open on a server with wal_level = replica fails
 * with an error that says what to change.
 *
 * Starts its own throwaway cluster with test/pgcluster.sh (FERRY_PG_CONF="wal_level =
 * replica") and removes it at the end; skipped when FERRY_ROOT is not set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl.h"
#include "tap.h"

int
main(void)
{
    const char *root = getenv("FERRY_ROOT");
    char dir[] = "/tmp/ferry-wl.XXXXXX", cmd[1024], line[512], host[256] = "", port[32] = "";
    char conninfo[600], err[512];
    ReplOptions o;
    ReplErrKind kind;
    Repl *r;
    FILE *p;

    if (root == NULL)
        skip_all("FERRY_ROOT is not set (run under test/run.sh)");
    if (mkdtemp(dir) == NULL)
        bail_out("mkdtemp failed");
    /* pgcluster.sh wants an empty directory it may create */
    snprintf(cmd, sizeof(cmd), "rmdir %s && FERRY_PG_FAST=1 FERRY_PG_CONF='wal_level = replica' "
             "'%s/test/pgcluster.sh' start %s 2>&1", dir, root, dir);
    p = popen(cmd, "r");
    if (p == NULL)
        bail_out("cannot run %s", cmd);
    while (fgets(line, sizeof(line), p) != NULL)
    {
        if (sscanf(line, "export PGHOST=%255s", host) == 1 || sscanf(line, "export PGPORT=%31s", port) == 1)
            continue;
    }
    if (pclose(p) != 0 || host[0] == '\0' || port[0] == '\0')
        skip_all("could not start a cluster with wal_level = replica in %s", dir);

    plan(3);
    snprintf(conninfo, sizeof(conninfo), "host=%s port=%s user=postgres dbname=postgres", host, port);
    repl_options_init(&o);
    o.conninfo = conninfo;
    o.slot = "ferry_wl";
    r = repl_open_opts(&o, &kind, err, sizeof(err));
    ok(r == NULL, "repl_open fails on wal_level = replica");
    is_int(kind, REPL_ERR_CONFIG, "as a configuration error");
    ok(strstr(err, "wal_level = replica") != NULL && strstr(err, "wal_level = logical") != NULL
       && strstr(err, "restart") != NULL, "saying what to change: %s", err);
    repl_close(r);

    snprintf(cmd, sizeof(cmd), "'%s/test/pgcluster.sh' stop %s >/dev/null 2>&1", root, dir);
    if (system(cmd) != 0)
        diag("could not remove the cluster in %s", dir);
    return done_testing();
}
