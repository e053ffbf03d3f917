/*
 * test/gateway/auth_test.c -- auth_verify and auth_sign_hs256 (gateway/auth.c): valid
 * tokens, every failure kind, algorithm confusion, tampering, time claims, claim
 * types and limits, and that errors never echo the token or the secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "auth.h"
#include "tap.h"

#define NOW ((time_t) 1700000000)

static const uint8_t secret[] = "ferry-test-secret-0123456789abcdef";
#define SECRET_LEN (sizeof(secret) - 1)

/* ---- helpers ----------------------------------------------------------------------- */

/* b64url returns the unpadded base64url encoding of n bytes (malloc'd). */
static char *
b64url(const char *s, size_t n)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5);
    size_t o = 0, i = 0;

    for (; i + 2 < n; i += 3)
    {
        uint32_t v = ((uint32_t) (uint8_t) s[i] << 16) | ((uint32_t) (uint8_t) s[i + 1] << 8) |
            (uint8_t) s[i + 2];

        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (n - i == 1)
    {
        uint32_t v = (uint32_t) (uint8_t) s[i] << 16;

        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
    }
    else if (n - i == 2)
    {
        uint32_t v = ((uint32_t) (uint8_t) s[i] << 16) | ((uint32_t) (uint8_t) s[i + 1] << 8);

        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

/* craft returns header.payload.sig from JSON texts, unsigned (sig given verbatim). */
static char *
craft(const char *header, const char *payload, const char *sig)
{
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + strlen(sig) + 3;
    char *t = malloc(n);

    snprintf(t, n, "%s.%s.%s", h, p, sig);
    free(h);
    free(p);
    return t;
}

/* sign_with signs an arbitrary JSON payload with libjwt (alg and key as given). */
static char *
sign_with(jwt_alg_t alg, const uint8_t *key, size_t key_len, const char *payload)
{
    jwt_t *jwt = NULL;
    char *tok = NULL;

    if (jwt_new(&jwt) == 0 && jwt_set_alg(jwt, alg, key, (int) key_len) == 0 &&
        jwt_add_grants_json(jwt, payload) == 0)
        tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (tok == NULL)
        bail_out("libjwt could not sign a test token (%s)", payload);
    return tok;
}

/* sign_payload signs a JSON payload HS256 with the test secret. */
static char *
sign_payload(const char *json)
{
    return sign_with(JWT_ALG_HS256, secret, SECRET_LEN, json);
}

/* expect runs auth_verify and checks its result, and that a failure leaves the claims
 * zeroed with an error message that does not contain the secret. Returns the rc. */
static int
expect(const char *token, int want, const char *name)
{
    AuthClaims c;
    char err[512];
    int rc;

    memset(&c, 0x5a, sizeof(c));
    rc = auth_verify(token, secret, SECRET_LEN, NOW, &c, err, sizeof(err));
    is_int(rc, want, "%s: %s", name, auth_result_name(want));
    if (rc != want)
        diag("err: %s", err);
    if (want != AUTH_OK)
    {
        AuthClaims zero;

        memset(&zero, 0, sizeof(zero));
        ok(memcmp(&c, &zero, sizeof(c)) == 0 && err[0] != '\0' &&
           strstr(err, (const char *) secret) == NULL,
           "%s: claims zeroed, an error message, no secret in it", name);
    }
    auth_claims_free(&c);
    return rc;
}

/* ---- tests -------------------------------------------------------------------------- */

static void
test_valid(void)
{
    const char *tenants[] = {"acme", "globex"};
    AuthClaims c;
    char err[256], *tok = NULL;
    int rc;

    rc = auth_sign_hs256(secret, SECRET_LEN, "user-1", tenants, 2, "admin", NOW - 10,
                         NOW + 3600, &tok, err, sizeof(err));
    if (!is_int(rc, AUTH_OK, "auth_sign_hs256 signs a token"))
        bail_out("cannot sign: %s", err);
    rc = auth_verify(tok, secret, SECRET_LEN, NOW, &c, err, sizeof(err));
    is_int(rc, AUTH_OK, "a freshly signed token verifies");
    is_str(c.sub, "user-1", "sub");
    is_str(c.role, "admin", "role");
    is_int(c.n_tenants, 2, "two tenants");
    is_str(c.n_tenants == 2 ? c.tenants[0] : NULL, "acme", "tenants[0]");
    is_str(c.n_tenants == 2 ? c.tenants[1] : NULL, "globex", "tenants[1]");
    is_int(c.exp, NOW + 3600, "exp");
    is_int(c.iat, NOW - 10, "iat");
    is_str(c.json, "{\"sub\":\"user-1\",\"tenants\":[\"acme\",\"globex\"],\"role\":\"admin\"}",
           "claims JSON in the form ferry.apply_mutation takes");
    auth_claims_free(&c);
    ok(c.sub == NULL && c.json == NULL && c.n_tenants == 0, "auth_claims_free zeroes");
    auth_claims_free(&c);           /* twice is harmless */
    auth_claims_free(NULL);

    /* exp is exclusive: valid until the second before. */
    rc = auth_verify(tok, secret, SECRET_LEN, NOW + 3599, &c, err, sizeof(err));
    is_int(rc, AUTH_OK, "valid one second before exp");
    auth_claims_free(&c);
    rc = auth_verify(tok, secret, SECRET_LEN, NOW + 3600, &c, err, sizeof(err));
    is_int(rc, AUTH_ERR_EXPIRED, "expired at exp (mid-connection check with a later now)");
    ok(strstr(err, "expired") != NULL, "the message says expired: %s", err);
    free(tok);

    /* No role: omitted from the JSON (ferry.claim('role') must be NULL, not 'null'). */
    rc = auth_sign_hs256(secret, SECRET_LEN, "u\"2\\", tenants, 1, NULL, NOW, NOW + 60,
                         &tok, err, sizeof(err));
    is_int(rc, AUTH_OK, "signs without a role");
    rc = auth_verify(tok, secret, SECRET_LEN, NOW, &c, err, sizeof(err));
    is_int(rc, AUTH_OK, "verifies without a role");
    ok(c.role == NULL, "role is NULL");
    is_str(c.sub, "u\"2\\", "sub with a quote and a backslash survives");
    is_str(c.json, "{\"sub\":\"u\\\"2\\\\\",\"tenants\":[\"acme\"]}",
           "claims JSON escapes and omits role");
    auth_claims_free(&c);
    free(tok);

    /* Unicode and control characters in claims. */
    {
        const char *t[] = {"t\xc3\xa9nant", "line\nbreak"};

        rc = auth_sign_hs256(secret, SECRET_LEN, "\xe2\x9c\x93", t, 2, "r", NOW, NOW + 60,
                             &tok, err, sizeof(err));
        is_int(rc, AUTH_OK, "signs UTF-8 claims");
        rc = auth_verify(tok, secret, SECRET_LEN, NOW, &c, err, sizeof(err));
        is_int(rc, AUTH_OK, "verifies UTF-8 claims");
        is_str(c.json, "{\"sub\":\"\xe2\x9c\x93\",\"tenants\":[\"t\xc3\xa9nant\",\"line\\nbreak\"],"
               "\"role\":\"r\"}", "UTF-8 kept, control characters escaped");
        auth_claims_free(&c);
        free(tok);
    }

    /* Payloads other issuers write: extra claims, escapes, float times, null role. */
    tok = sign_payload("{\"sub\":\"\\u00e9l\\u00e8ve\",\"tenants\":[\"a\\/b\"],\"exp\":1700003600.9,"
                       "\"iat\":1699999999,\"role\":null,\"aud\":\"x\",\"scope\":[1,{\"k\":[]}]}");
    rc = auth_verify(tok, secret, SECRET_LEN, NOW, &c, err, sizeof(err));
    is_int(rc, AUTH_OK, "a token with extra claims, escapes and a float exp verifies");
    is_str(c.sub, "\xc3\xa9l\xc3\xa8ve", "\\u escapes decoded");
    is_str(c.n_tenants ? c.tenants[0] : NULL, "a/b", "\\/ decoded");
    is_int(c.exp, NOW + 3600, "float exp rounded down");
    ok(c.role == NULL, "role null counts as absent");
    auth_claims_free(&c);
    free(tok);
}

static void
test_algorithms(void)
{
    const char *claims = "{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600}";
    char *good = sign_payload(claims), *tok, *dot;

    expect(good, AUTH_OK, "HS256 with the right secret");

    tok = sign_with(JWT_ALG_HS512, secret, SECRET_LEN, claims);
    expect(tok, AUTH_ERR_WRONG_ALG, "alg confusion: HS512 signed with the same secret");
    free(tok);
    tok = sign_with(JWT_ALG_HS384, secret, SECRET_LEN, claims);
    expect(tok, AUTH_ERR_WRONG_ALG, "HS384 signed with the same secret");
    free(tok);
    tok = sign_with(JWT_ALG_NONE, NULL, 0, claims);
    expect(tok, AUTH_ERR_WRONG_ALG, "alg none, no signature (libjwt-made)");
    free(tok);

    /* alg none carrying a valid HS256 signature of the same header.payload bytes. */
    dot = strrchr(good, '.');
    {
        char *none = craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, dot + 1);

        expect(none, AUTH_ERR_WRONG_ALG, "alg none with a signature appended");
        free(none);
    }
    tok = craft("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, "c2ln");
    expect(tok, AUTH_ERR_WRONG_ALG, "RS256 header");
    free(tok);
    tok = craft("{\"alg\":\"hs256\"}", claims, "c2ln");
    expect(tok, AUTH_ERR_WRONG_ALG, "alg compared exactly (hs256)");
    free(tok);
    tok = craft("{\"alg\":\"\\u0000x\"}", claims, "c2ln");
    expect(tok, AUTH_ERR_MALFORMED, "alg with a NUL escape");
    free(tok);

    /* Wrong secret. */
    {
        const uint8_t other[] = "another-secret";

        tok = sign_with(JWT_ALG_HS256, other, sizeof(other) - 1, claims);
        expect(tok, AUTH_ERR_BAD_SIGNATURE, "HS256 with another secret");
        free(tok);
    }

    /* Tampered payload: another tenant, original signature. */
    {
        char *forged = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                             "{\"sub\":\"u\",\"tenants\":[\"victim\"],\"exp\":1700003600}",
                             dot + 1);
        expect(forged, AUTH_ERR_BAD_SIGNATURE, "tampered payload");
        free(forged);
    }
    /* Tampered signature: one character changed. */
    tok = strdup(good);
    dot = strrchr(tok, '.');
    dot[1] = dot[1] == 'A' ? 'B' : 'A';
    expect(tok, AUTH_ERR_BAD_SIGNATURE, "tampered signature");
    dot[1] = '\0';
    expect(tok, AUTH_ERR_BAD_SIGNATURE, "signature removed");
    free(tok);
    free(good);
}

static void
test_times(void)
{
    char *tok;

    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1699999999}");
    expect(tok, AUTH_ERR_EXPIRED, "exp one second ago");
    free(tok);
    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700000000}");
    expect(tok, AUTH_ERR_EXPIRED, "exp == now");
    free(tok);
    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700000001}");
    expect(tok, AUTH_OK, "exp one second ahead");
    free(tok);
    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"nbf\":1700000600}");
    expect(tok, AUTH_ERR_NOT_YET_VALID, "nbf ten minutes ahead");
    free(tok);
    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"nbf\":1700000030}");
    expect(tok, AUTH_OK, "nbf within the clock-skew leeway");
    free(tok);
    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"iat\":1700000600}");
    expect(tok, AUTH_ERR_NOT_YET_VALID, "iat ten minutes ahead");
    free(tok);
    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"nbf\":1600000000,"
                       "\"iat\":1600000000}");
    expect(tok, AUTH_OK, "nbf and iat in the past");
    free(tok);
    tok = sign_payload("{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":-5}");
    expect(tok, AUTH_ERR_EXPIRED, "negative exp");
    free(tok);
    /* Expiry beats missing claims? No: claim shapes are checked first. */
    tok = sign_payload("{\"tenants\":[\"t\"],\"exp\":1}");
    expect(tok, AUTH_ERR_MISSING_CLAIM, "missing sub reported before expiry");
    free(tok);
}

static void
test_claims(void)
{
    static const struct
    {
        const char *payload;        /* claims to sign */
        int want;                   /* expected result */
        const char *name;           /* test name */
    } cases[] = {
        {"{\"tenants\":[\"t\"],\"exp\":1700003600}", AUTH_ERR_MISSING_CLAIM, "missing sub"},
        {"{\"sub\":\"u\",\"exp\":1700003600}", AUTH_ERR_MISSING_CLAIM, "missing tenants"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"]}", AUTH_ERR_MISSING_CLAIM, "missing exp"},
        {"{\"sub\":\"\",\"tenants\":[\"t\"],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "empty sub"},
        {"{\"sub\":42,\"tenants\":[\"t\"],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "sub a number"},
        {"{\"sub\":null,\"tenants\":[\"t\"],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "sub null"},
        {"{\"sub\":[\"u\"],\"tenants\":[\"t\"],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "sub an array"},
        {"{\"sub\":\"u\",\"tenants\":\"t\",\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "tenants a string"},
        {"{\"sub\":\"u\",\"tenants\":[1,2],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "tenants not strings"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\",null],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "tenants with a null"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\",[\"x\"]],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "tenants nested"},
        {"{\"sub\":\"u\",\"tenants\":[],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "tenants empty"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\",\"\"],\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "an empty tenant"},
        {"{\"sub\":\"u\",\"tenants\":{\"t\":1},\"exp\":1700003600}", AUTH_ERR_BAD_CLAIM, "tenants an object"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":\"1700003600\"}", AUTH_ERR_BAD_CLAIM, "exp a string"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":true}", AUTH_ERR_BAD_CLAIM, "exp a boolean"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1e300}", AUTH_ERR_BAD_CLAIM, "exp absurdly large"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"nbf\":\"x\"}", AUTH_ERR_BAD_CLAIM, "nbf a string"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"iat\":{}}", AUTH_ERR_BAD_CLAIM, "iat an object"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"role\":7}", AUTH_ERR_BAD_CLAIM, "role a number"},
        {"{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"role\":\"\"}", AUTH_ERR_BAD_CLAIM, "role empty"},
    };
    char *tok;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    {
        tok = sign_payload(cases[i].payload);
        expect(tok, cases[i].want, cases[i].name);
        free(tok);
    }

    /* Lengths and counts. */
    {
        char *p = malloc(200000), *t;
        size_t o;
        AuthClaims c;
        char err[256];
        int rc;

        o = (size_t) sprintf(p, "{\"sub\":\"");
        memset(p + o, 's', AUTH_MAX_CLAIM_BYTES + 1);
        o += AUTH_MAX_CLAIM_BYTES + 1;
        sprintf(p + o, "\",\"tenants\":[\"t\"],\"exp\":1700003600}");
        tok = sign_payload(p);
        expect(tok, AUTH_ERR_BAD_CLAIM, "sub longer than AUTH_MAX_CLAIM_BYTES");
        free(tok);

        /* 1000 uuid-like tenants: the most allowed, and within the token size limit. */
        o = (size_t) sprintf(p, "{\"sub\":\"u\",\"exp\":1700003600,\"tenants\":[");
        for (int i = 0; i < AUTH_MAX_TENANTS; i++)
            o += (size_t) sprintf(p + o, "%s\"%08d-0000-4000-8000-000000000000\"", i ? "," : "", i);
        sprintf(p + o, "]}");
        tok = sign_payload(p);
        ok(strlen(tok) <= AUTH_MAX_TOKEN_BYTES, "1000 uuid tenants fit in a token (%zu bytes)",
           strlen(tok));
        rc = auth_verify(tok, secret, SECRET_LEN, NOW, &c, err, sizeof(err));
        is_int(rc, AUTH_OK, "1000 tenants verify");
        is_int(c.n_tenants, AUTH_MAX_TENANTS, "all 1000 tenants read");
        auth_claims_free(&c);
        free(tok);

        o = (size_t) sprintf(p, "{\"sub\":\"u\",\"exp\":1700003600,\"tenants\":[");
        for (int i = 0; i <= AUTH_MAX_TENANTS; i++)
            o += (size_t) sprintf(p + o, "%s\"%d\"", i ? "," : "", i);
        sprintf(p + o, "]}");
        tok = sign_payload(p);
        expect(tok, AUTH_ERR_BAD_CLAIM, "1001 tenants");
        free(tok);

        /* A huge token: refused on length before any decoding. */
        t = malloc(AUTH_MAX_TOKEN_BYTES + 100);
        memset(t, 'a', AUTH_MAX_TOKEN_BYTES + 99);
        t[10] = '.';
        t[20] = '.';
        t[AUTH_MAX_TOKEN_BYTES + 99] = '\0';
        expect(t, AUTH_ERR_MALFORMED, "a token above AUTH_MAX_TOKEN_BYTES");
        free(t);

        /* A validly signed but huge token. */
        o = (size_t) sprintf(p, "{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600,\"pad\":\"");
        memset(p + o, 'x', 60000);
        o += 60000;
        sprintf(p + o, "\"}");
        tok = sign_payload(p);
        ok(strlen(tok) > AUTH_MAX_TOKEN_BYTES, "a signed token of %zu bytes", strlen(tok));
        expect(tok, AUTH_ERR_MALFORMED, "a signed token above the limit");
        free(tok);
        free(p);
    }
}

static void
test_malformed(void)
{
    const char *claims = "{\"sub\":\"u\",\"tenants\":[\"t\"],\"exp\":1700003600}";
    char *good = sign_payload(claims), *tok;
    char *sig = strrchr(good, '.') + 1;
    AuthClaims c;
    char err[256];

    expect(NULL, AUTH_ERR_MALFORMED, "NULL token");
    expect("", AUTH_ERR_MALFORMED, "empty token");
    expect("abc", AUTH_ERR_MALFORMED, "one segment");
    expect("abc.def", AUTH_ERR_MALFORMED, "two segments");
    expect("a.b.c.d", AUTH_ERR_MALFORMED, "four segments");
    expect(".abc.def", AUTH_ERR_MALFORMED, "empty header");
    expect("abc..def", AUTH_ERR_MALFORMED, "empty payload");
    expect("ab c.def.ghi", AUTH_ERR_MALFORMED, "a space");
    expect("abc=.def.ghi", AUTH_ERR_MALFORMED, "base64 padding");
    expect("a+c.def.ghi", AUTH_ERR_MALFORMED, "base64 (not url) alphabet");
    expect("abcde.def.ghi", AUTH_ERR_MALFORMED, "impossible base64 length");
    tok = craft("not json", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "header not JSON");
    free(tok);
    tok = craft("[\"HS256\"]", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "header an array");
    free(tok);
    tok = craft("{\"typ\":\"JWT\"}", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "header without alg");
    free(tok);
    tok = craft("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "alg twice");
    free(tok);
    tok = craft("{\"alg\":256}", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "alg a number");
    free(tok);
    tok = craft("{\"alg\":\"HS256\",\"typ\":\"JWE\"}", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "typ not JWT");
    free(tok);
    tok = craft("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "crit header");
    free(tok);
    tok = craft("{\"alg\":\"HS256\"} x", claims, sig);
    expect(tok, AUTH_ERR_MALFORMED, "trailing garbage after the header");
    free(tok);
    tok = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"u\",", sig);
    expect(tok, AUTH_ERR_MALFORMED, "payload not JSON");
    free(tok);
    tok = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "\"just a string\"", sig);
    expect(tok, AUTH_ERR_MALFORMED, "payload not an object");
    free(tok);
    tok = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"\xff\"}", sig);
    expect(tok, AUTH_ERR_MALFORMED, "payload with invalid UTF-8");
    free(tok);
    {
        /* Deep nesting is handled (jansson stops at 2048 levels); the claims are missing. */
        char deep[2100];
        size_t o = (size_t) sprintf(deep, "{\"a\":");

        for (int i = 0; i < 1000; i++)
            deep[o++] = '[';
        for (int i = 0; i < 1000; i++)
            deep[o++] = ']';
        strcpy(deep + o, "}");
        tok = sign_payload(deep);
        expect(tok, AUTH_ERR_MISSING_CLAIM, "payload nested 1000 deep");
        free(tok);
        memset(deep, '[', 2099);
        deep[2099] = '\0';
        tok = craft("{\"alg\":\"HS256\"}", deep, sig);
        expect(tok, AUTH_ERR_MALFORMED, "payload of 2099 unclosed brackets");
        free(tok);
    }
    tok = craft("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"sub\":\"u\",\"sub\":\"admin\"}", sig);
    expect(tok, AUTH_ERR_MALFORMED, "payload with a duplicate claim");
    free(tok);

    /* No secret on the gateway side. */
    is_int(auth_verify(good, secret, 0, NOW, &c, err, sizeof(err)), AUTH_ERR_INTERNAL,
           "empty secret is the gateway's error");
    is_int(auth_verify(good, NULL, 10, NOW, &c, err, sizeof(err)), AUTH_ERR_INTERNAL,
           "NULL secret");
    is_int(auth_verify(good, secret, SECRET_LEN, NOW, NULL, err, sizeof(err)), AUTH_ERR_INTERNAL,
           "NULL claims");
    is_int(auth_verify("x", secret, SECRET_LEN, NOW, &c, NULL, 0), AUTH_ERR_MALFORMED,
           "no error buffer is fine");

    /* Messages never echo the token. */
    tok = sign_with(JWT_ALG_HS512, secret, SECRET_LEN, claims);
    auth_verify(tok, secret, SECRET_LEN, NOW, &c, err, sizeof(err));
    ok(strstr(err, tok) == NULL && strstr(err, strrchr(tok, '.') + 1) == NULL,
       "wrong-alg error does not contain the token: %s", err);
    free(tok);
    free(good);
}

static void
test_sign_errors(void)
{
    const char *t1[] = {"t"};
    const char *bad[] = {"t", ""};
    char *tok = (char *) "sentinel", err[256];

    is_int(auth_sign_hs256(secret, SECRET_LEN, "", t1, 1, NULL, NOW, NOW + 1, &tok, err, sizeof(err)),
           AUTH_ERR_BAD_CLAIM, "sign: empty sub");
    ok(tok == NULL, "sign: *token_out NULL on failure");
    is_int(auth_sign_hs256(secret, SECRET_LEN, "u", t1, 0, NULL, NOW, NOW + 1, &tok, err, sizeof(err)),
           AUTH_ERR_BAD_CLAIM, "sign: no tenants");
    is_int(auth_sign_hs256(secret, SECRET_LEN, "u", bad, 2, NULL, NOW, NOW + 1, &tok, err, sizeof(err)),
           AUTH_ERR_BAD_CLAIM, "sign: an empty tenant");
    is_int(auth_sign_hs256(secret, SECRET_LEN, "u", t1, 1, "", NOW, NOW + 1, &tok, err, sizeof(err)),
           AUTH_ERR_BAD_CLAIM, "sign: empty role");
    is_int(auth_sign_hs256(secret, SECRET_LEN, "\xc3(", t1, 1, NULL, NOW, NOW + 1, &tok, err, sizeof(err)),
           AUTH_ERR_BAD_CLAIM, "sign: sub not UTF-8");
    is_int(auth_sign_hs256(secret, SECRET_LEN, "u", t1, 1, NULL, NOW, NOW, &tok, err, sizeof(err)),
           AUTH_ERR_BAD_CLAIM, "sign: exp not after iat");
    is_int(auth_sign_hs256(secret, 0, "u", t1, 1, NULL, NOW, NOW + 1, &tok, err, sizeof(err)),
           AUTH_ERR_INTERNAL, "sign: empty secret");
    is_str(auth_result_name(AUTH_ERR_EXPIRED), "expired", "auth_result_name");
    is_str(auth_result_name(12345), "unknown", "auth_result_name of nonsense");
}

int
main(void)
{
    test_valid();
    test_algorithms();
    test_times();
    test_claims();
    test_malformed();
    test_sign_errors();
    return done_testing();
}
