/*
 * test/fuzz/fuzz_frame.c -- libFuzzer target for the WebSocket frame decoder
 * (gateway/frame.c): arbitrary bytes as a ClientMessage and as a ServerMessage.
 *
 * Properties checked beyond "no crash, no leak, no sanitizer report":
 *   - a decode either fails with *out NULL and an error message, or succeeds;
 *   - a successfully decoded ClientMessage re-encodes, and the re-encoding decodes
 *     again to a message of the same type (what the server accepted stays acceptable);
 *   - auth_verify either fills the claims (with their JSON) or leaves them zeroed;
 *   - tighter limits (memory budget, batch size) only ever change the result to
 *     FRAME_ERR_TOO_COMPLEX or FRAME_ERR_TOO_LARGE.
 * A property violation aborts: that is the fuzzer's way to report it.
 *
 * Seeds: test/fuzz/corpus/fuzz_frame/ (encoded messages of every type).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "frame.h"

#define FUZZ_SECRET "ferry-fuzz-secret"   /* the seed tokens are signed with it */
#define FUZZ_NOW ((time_t) 1700000000)   /* fixed, so that runs are reproducible */

static void
check(int cond, const char *what)
{
    if (!cond)
    {
        fprintf(stderr, "fuzz_frame: property violated: %s\n", what);
        abort();
    }
}

/* verify runs a token through auth_verify and checks the result's shape. */
static void
verify(const char *token)
{
    AuthClaims c;
    char err[512];
    int rc = auth_verify(token, (const uint8_t *) FUZZ_SECRET, strlen(FUZZ_SECRET), FUZZ_NOW,
                         &c, err, sizeof(err));

    if (rc == AUTH_OK)
        check(c.sub != NULL && c.n_tenants >= 1 && c.json != NULL && c.exp > FUZZ_NOW,
              "auth: a verified token has sub, tenants, claims JSON and a future exp");
    else
        check(c.sub == NULL && c.json == NULL && c.n_tenants == 0 && err[0] != '\0',
              "auth: a refused token leaves the claims zeroed and says why");
    auth_claims_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Ferry__V1__ClientMessage *msg = NULL, *again = NULL, *tight_msg = NULL;
    Ferry__V1__ServerMessage *smsg = NULL;
    FrameLimits tight = {FRAME_MAX_CLIENT_BYTES, 2048, 8};
    char err[512];
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc, rc2;

    err[0] = '\0';
    rc = frame_decode_client(data, size, NULL, &msg, err, sizeof(err));
    check((rc == FRAME_OK) == (msg != NULL), "client: rc and message agree");
    check(rc == FRAME_OK || err[0] != '\0', "client: a failure has a message");
    if (rc == FRAME_OK && msg->msg_case == FERRY__V1__CLIENT_MESSAGE__MSG_HELLO)
        verify(msg->hello->token);
    if (rc == FRAME_OK && msg->msg_case == FERRY__V1__CLIENT_MESSAGE__MSG_REFRESH_TOKEN)
        verify(msg->refresh_token->token);
    if (rc == FRAME_OK)
    {
        rc2 = frame_encode_client_alloc(msg, 16, &buf, &len, err, sizeof(err));
        check(rc2 == FRAME_OK, "client: a decoded message re-encodes");
        rc2 = frame_decode_client(buf + 16, len, NULL, &again, err, sizeof(err));
        check(rc2 == FRAME_OK, "client: a re-encoded message decodes");
        check(again->msg_case == msg->msg_case, "client: the type survives re-encoding");
        frame_free_client(again);
        free(buf);
    }

    rc2 = frame_decode_client(data, size, &tight, &tight_msg, err, sizeof(err));
    check(rc2 == rc || rc2 == FRAME_ERR_TOO_COMPLEX || rc2 == FRAME_ERR_TOO_LARGE,
          "client: tighter limits only add TOO_COMPLEX or TOO_LARGE");
    frame_free_client(tight_msg);
    frame_free_client(msg);

    rc = frame_decode_server(data, size, NULL, &smsg, err, sizeof(err));
    check((rc == FRAME_OK) == (smsg != NULL), "server: rc and message agree");
    if (rc == FRAME_OK)
    {
        rc2 = frame_encode_server_alloc(smsg, 0, &buf, &len, err, sizeof(err));
        check(rc2 == FRAME_OK || rc2 == FRAME_ERR_TOO_LARGE, "server: a decoded message re-encodes");
        if (rc2 == FRAME_OK)
            free(buf);
    }
    frame_free_server(smsg);
    return 0;
}
