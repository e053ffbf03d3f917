/*
 * gateway/auth.c -- JWT (HS256) verification and signing for ferryd's clients.
 *
 * libjwt 1.10 verifies signatures but checks neither the algorithm (a token signed
 * HS512 with the same secret decodes, as does alg "none" without a key) nor any time
 * claim, and reads claims without checking their types. So auth_verify
 *
 *   1. checks the token's length and shape, and decodes and parses (jansson, duplicate
 *      keys refused) its header and payload itself;
 *   2. pins alg to "HS256" before any signature is looked at (RFC 8725, 3.1);
 *   3. lets libjwt verify the signature, and checks libjwt's idea of the alg again;
 *   4. reads the claims from its own parse of the payload -- the bytes libjwt just
 *      verified -- checking the type of each.
 */
#include "auth.h"
#include "errbuf.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>

#define AUTH_MAX_NUMERIC 1e15           /* largest |exp|, |nbf|, |iat| accepted */
#define AUTH_JSON_FLAGS JSON_REJECT_DUPLICATES  /* how header and payload are parsed */

/* ---- errors ------------------------------------------------------------------------- */


const char *
auth_result_name(int rc)
{
    switch (rc)
    {
        case AUTH_OK: return "ok";
        case AUTH_ERR_MALFORMED: return "malformed";
        case AUTH_ERR_WRONG_ALG: return "wrong_alg";
        case AUTH_ERR_BAD_SIGNATURE: return "bad_signature";
        case AUTH_ERR_EXPIRED: return "expired";
        case AUTH_ERR_NOT_YET_VALID: return "not_yet_valid";
        case AUTH_ERR_MISSING_CLAIM: return "missing_claim";
        case AUTH_ERR_BAD_CLAIM: return "bad_claim";
        case AUTH_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

/* ---- the token's parts ------------------------------------------------------------------ */

static int
b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* b64url_decode decodes n base64url characters (RFC 4648 section 5, no padding) at s
 * into a malloc'd buffer (*out, *out_len bytes). Returns 0, -1 when s is not base64url,
 * -2 when out of memory. */
static int
b64url_decode(const char *s, size_t n, char **out, size_t *out_len)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    char *buf;

    *out = NULL;
    if (n % 4 == 1)
        return -1;
    buf = malloc(n / 4 * 3 + 3);
    if (buf == NULL)
        return -2;
    for (size_t i = 0; i < n; i++)
    {
        int v = b64url_value((unsigned char) s[i]);

        if (v < 0)
        {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t) v;
        bits += 6;
        if (bits >= 8)
        {
            bits -= 8;
            buf[len++] = (char) ((acc >> bits) & 0xff);
        }
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* parse_part decodes one base64url segment and parses it as a JSON object (*out, the
 * caller's reference). `what` names it in errors. */
static int
parse_part(const char *s, size_t n, const char *what, json_t **out, char *err, size_t errlen)
{
    char *buf;
    size_t len = 0;
    json_error_t jerr;
    int rc = b64url_decode(s, n, &buf, &len);

    *out = NULL;
    if (rc == -2)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "out of memory decoding the token");
    if (rc != 0)
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen, "the token's %s is not valid base64url",
                    what);
    /* jansson refuses invalid UTF-8, \u0000, duplicate keys and trailing bytes. Its
     * error text quotes the input, so it is not passed on. */
    *out = json_loadb(buf, len, AUTH_JSON_FLAGS, &jerr);
    free(buf);
    if (*out == NULL || !json_is_object(*out))
    {
        json_decref(*out);
        *out = NULL;
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen,
                    "the token's %s is not a JSON object (or repeats a key)", what);
    }
    return AUTH_OK;
}

/* split_token checks that token (len bytes) is three base64url segments, the first two
 * non-empty, and parses the header and the payload. */
static int
split_token(const char *token, size_t len, json_t **header, json_t **payload, char *err,
            size_t errlen)
{
    const char *dot1 = NULL, *dot2 = NULL;
    int rc;

    *header = *payload = NULL;
    for (size_t i = 0; i < len; i++)
    {
        if (token[i] == '.')
        {
            if (dot1 == NULL)
                dot1 = token + i;
            else if (dot2 == NULL)
                dot2 = token + i;
            else
                return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen,
                            "the token has more than three '.'-separated segments");
        }
        else if (b64url_value((unsigned char) token[i]) < 0)
            return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen,
                        "the token has a character outside base64url at byte %zu", i);
    }
    if (dot2 == NULL)
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen,
                    "the token is not a JWT: it needs three '.'-separated segments");
    if (dot1 == token || dot2 == dot1 + 1)
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen, "the token's header or payload is empty");
    rc = parse_part(token, (size_t) (dot1 - token), "header", header, err, errlen);
    if (rc == AUTH_OK)
        rc = parse_part(dot1 + 1, (size_t) (dot2 - dot1 - 1), "payload", payload, err, errlen);
    if (rc != AUTH_OK)
    {
        json_decref(*header);
        *header = NULL;
    }
    return rc;
}

/* check_header: alg exactly "HS256", typ "JWT" (any case) when present, no crit. */
static int
check_header(json_t *header, char *err, size_t errlen)
{
    json_t *alg = json_object_get(header, "alg");
    json_t *typ = json_object_get(header, "typ");
    const char *name;
    bool printable = true;

    if (alg == NULL)
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen, "the token's header has no alg");
    if (!json_is_string(alg))
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen, "the token's header field alg is not a string");
    if (typ != NULL && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen,
                    "the token's header has a typ other than \"JWT\"");
    if (json_object_get(header, "crit") != NULL)
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen,
                    "the token's header lists critical extensions (crit), which ferryd "
                    "does not support");
    name = json_string_value(alg);
    if (strcmp(name, "HS256") == 0)
        return AUTH_OK;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            printable = false;
    if (strlen(name) > 16)
        printable = false;
    return errbuf_fail(AUTH_ERR_WRONG_ALG, err, errlen,
                "the token is signed with alg %s%s%s; ferryd accepts only HS256",
                printable ? "\"" : "", printable ? name : "(unprintable)", printable ? "\"" : "");
}

/* ---- claims ------------------------------------------------------------------------------ */

/* time_claim reads claim `name` as a NumericDate (seconds since 1970, integer or not). */
static int
time_claim(json_t *payload, const char *name, bool required, bool *present, int64_t *val,
           char *err, size_t errlen)
{
    json_t *v = json_object_get(payload, name);

    *present = false;
    *val = 0;
    if (v == NULL)
    {
        if (required)
            return errbuf_fail(AUTH_ERR_MISSING_CLAIM, err, errlen,
                        "the token has no \"%s\" claim; ferryd requires one", name);
        return AUTH_OK;
    }
    if (json_is_integer(v) && llabs((long long) json_integer_value(v)) <= (long long) AUTH_MAX_NUMERIC)
        *val = (int64_t) json_integer_value(v);
    else if (json_is_real(v) && isfinite(json_real_value(v)) &&
             fabs(json_real_value(v)) <= AUTH_MAX_NUMERIC)
        *val = (int64_t) floor(json_real_value(v));
    else
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "the token's \"%s\" claim is not a number of seconds since 1970", name);
    *present = true;
    return AUTH_OK;
}

/* string_value checks that v is a non-empty string of at most AUTH_MAX_CLAIM_BYTES and
 * copies it into *out. Returns 0, -1 when it is not such a string, -2 out of memory. */
static int
string_value(json_t *v, char **out)
{
    size_t n;

    *out = NULL;
    if (!json_is_string(v))
        return -1;
    n = json_string_length(v);
    if (n == 0 || n > AUTH_MAX_CLAIM_BYTES)
        return -1;
    *out = strdup(json_string_value(v));
    return *out != NULL ? 0 : -2;
}

/* string_claim reads claim `name` into *out (malloc'd). A JSON null counts as absent
 * when null_ok. */
static int
string_claim(json_t *payload, const char *name, bool required, bool null_ok, char **out,
             char *err, size_t errlen)
{
    json_t *v = json_object_get(payload, name);
    int rc;

    *out = NULL;
    if (v == NULL || (null_ok && json_is_null(v)))
    {
        if (required)
            return errbuf_fail(AUTH_ERR_MISSING_CLAIM, err, errlen,
                        "the token has no \"%s\" claim; ferryd requires one", name);
        return AUTH_OK;
    }
    rc = string_value(v, out);
    if (rc == -2)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "out of memory reading the claims");
    if (rc != 0)
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "the token's \"%s\" claim must be a non-empty string of at most %d bytes",
                    name, AUTH_MAX_CLAIM_BYTES);
    return AUTH_OK;
}

/* tenants_claim reads "tenants": an array of 1 to AUTH_MAX_TENANTS non-empty strings. */
static int
tenants_claim(json_t *payload, AuthClaims *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(payload, "tenants");
    size_t n;

    if (v == NULL)
        return errbuf_fail(AUTH_ERR_MISSING_CLAIM, err, errlen,
                    "the token has no \"tenants\" claim; ferryd requires the list of tenants "
                    "the user may see");
    if (!json_is_array(v))
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "the token's \"tenants\" claim must be an array of strings");
    n = json_array_size(v);
    if (n == 0)
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "the token's \"tenants\" claim is empty; it must list at least one tenant");
    if (n > AUTH_MAX_TENANTS)
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "the token's \"tenants\" claim lists %zu tenants; at most %d are allowed",
                    n, AUTH_MAX_TENANTS);
    out->tenants = calloc(n, sizeof(char *));
    if (out->tenants == NULL)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "out of memory reading the claims");
    for (size_t i = 0; i < n; i++)
    {
        int rc = string_value(json_array_get(v, i), &out->tenants[i]);

        if (rc == -2)
            return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "out of memory reading the claims");
        if (rc != 0)
            return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                        "the token's \"tenants\" claim must hold non-empty strings of at most "
                        "%d bytes; element %zu does not", AUTH_MAX_CLAIM_BYTES, i);
        out->n_tenants++;
    }
    return AUTH_OK;
}

/* claims_object builds {"sub","tenants","role"} (role only when not NULL); NULL when a
 * string is not valid UTF-8 or memory ran out. The caller owns the reference. */
static json_t *
claims_object(const char *sub, const char *const *tenants, size_t n_tenants, const char *role)
{
    json_t *o = json_object(), *arr = json_array();
    bool ok = o != NULL && arr != NULL;

    ok = ok && json_object_set_new(o, "sub", json_string(sub)) == 0;
    ok = ok && json_object_set(o, "tenants", arr) == 0;
    for (size_t i = 0; ok && i < n_tenants; i++)
        ok = json_array_append_new(arr, json_string(tenants[i])) == 0;
    if (ok && role != NULL)
        ok = json_object_set_new(o, "role", json_string(role)) == 0;
    json_decref(arr);
    if (!ok)
    {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* read_claims fills out from the verified payload and checks the times against now. */
static int
read_claims(json_t *payload, time_t now, AuthClaims *out, char *err, size_t errlen)
{
    int64_t nbf, iat;
    bool has_exp, has_nbf, has_iat;
    json_t *canon;
    int rc;

    if ((rc = time_claim(payload, "exp", true, &has_exp, &out->exp, err, errlen)) != AUTH_OK ||
        (rc = time_claim(payload, "nbf", false, &has_nbf, &nbf, err, errlen)) != AUTH_OK ||
        (rc = time_claim(payload, "iat", false, &has_iat, &iat, err, errlen)) != AUTH_OK ||
        (rc = string_claim(payload, "sub", true, false, &out->sub, err, errlen)) != AUTH_OK ||
        (rc = tenants_claim(payload, out, err, errlen)) != AUTH_OK ||
        (rc = string_claim(payload, "role", false, true, &out->role, err, errlen)) != AUTH_OK)
        return rc;
    out->iat = has_iat ? iat : 0;
    if ((int64_t) now >= out->exp)
        return errbuf_fail(AUTH_ERR_EXPIRED, err, errlen,
                    "the token expired %lld s ago; get a new one and send RefreshToken or "
                    "reconnect", (long long) ((int64_t) now - out->exp));
    if (has_nbf && nbf > (int64_t) now + AUTH_LEEWAY_SECONDS)
        return errbuf_fail(AUTH_ERR_NOT_YET_VALID, err, errlen,
                    "the token is not valid for another %lld s (nbf); check the issuer's clock",
                    (long long) (nbf - (int64_t) now));
    if (has_iat && iat > (int64_t) now + AUTH_LEEWAY_SECONDS)
        return errbuf_fail(AUTH_ERR_NOT_YET_VALID, err, errlen,
                    "the token was issued %lld s in the future (iat); check the issuer's clock",
                    (long long) (iat - (int64_t) now));
    canon = claims_object(out->sub, (const char *const *) out->tenants, out->n_tenants,
                          out->role);
    out->json = canon != NULL ? json_dumps(canon, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(canon);
    if (out->json == NULL)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "out of memory building the claims");
    return AUTH_OK;
}

/* ---- the API ----------------------------------------------------------------------------- */

void
auth_claims_free(AuthClaims *claims)
{
    if (claims == NULL)
        return;
    free(claims->sub);
    free(claims->role);
    for (size_t i = 0; i < claims->n_tenants; i++)
        free(claims->tenants[i]);
    free(claims->tenants);
    free(claims->json);
    memset(claims, 0, sizeof(*claims));
}

int
auth_verify(const char *token, const uint8_t *secret, size_t secret_len, time_t now,
            AuthClaims *out, char *err, size_t errlen)
{
    json_t *header = NULL, *payload = NULL;
    jwt_t *jwt = NULL;
    size_t len;
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "auth_verify: no claims to fill");
    memset(out, 0, sizeof(*out));
    if (secret == NULL || secret_len == 0 || secret_len > INT_MAX)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen,
                    "the gateway has no usable JWT secret; configure one");
    if (token == NULL || token[0] == '\0')
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen, "no token was given");
    /* First, as libjwt copies the token's parts to the stack (alloca). */
    len = strnlen(token, AUTH_MAX_TOKEN_BYTES + 1);
    if (len > AUTH_MAX_TOKEN_BYTES)
        return errbuf_fail(AUTH_ERR_MALFORMED, err, errlen, "the token is longer than %d bytes",
                    AUTH_MAX_TOKEN_BYTES);

    rc = split_token(token, len, &header, &payload, err, errlen);
    if (rc == AUTH_OK)
        rc = check_header(header, err, errlen);
    json_decref(header);
    if (rc != AUTH_OK)
        goto done;

    rc = jwt_decode(&jwt, token, secret, (int) secret_len);
    if (rc == ENOMEM)
    {
        rc = errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "out of memory verifying the token");
        goto done;
    }
    if (rc != 0 || jwt == NULL)
    {
        rc = errbuf_fail(AUTH_ERR_BAD_SIGNATURE, err, errlen,
                  "the token's signature does not match the gateway's secret");
        goto done;
    }
    /* check_header pinned HS256 already; this guards against the two disagreeing. */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
    {
        rc = errbuf_fail(AUTH_ERR_WRONG_ALG, err, errlen,
                  "the token is not signed with HS256; ferryd accepts only HS256");
        goto done;
    }
    rc = read_claims(payload, now, out, err, errlen);

done:
    if (jwt != NULL)
        jwt_free(jwt);
    json_decref(payload);
    if (rc != AUTH_OK)
        auth_claims_free(out);
    return rc;
}

int
auth_sign_hs256(const uint8_t *secret, size_t secret_len, const char *sub,
                const char *const *tenants, size_t n_tenants, const char *role,
                time_t iat, time_t exp, char **token_out, char *err, size_t errlen)
{
    json_t *grants = NULL;
    char *text = NULL;
    jwt_t *jwt = NULL;
    int rc = AUTH_OK;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (token_out == NULL)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "auth_sign_hs256: no output pointer");
    *token_out = NULL;
    if (secret == NULL || secret_len == 0 || secret_len > INT_MAX)
        return errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "a JWT secret must not be empty");
    if (sub == NULL || sub[0] == '\0' || strlen(sub) > AUTH_MAX_CLAIM_BYTES)
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "sub must be a non-empty string of at most %d bytes", AUTH_MAX_CLAIM_BYTES);
    if (role != NULL && (role[0] == '\0' || strlen(role) > AUTH_MAX_CLAIM_BYTES))
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "role must be NULL or a non-empty string of at most %d bytes",
                    AUTH_MAX_CLAIM_BYTES);
    if (tenants == NULL || n_tenants == 0 || n_tenants > AUTH_MAX_TENANTS)
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen, "a token needs 1 to %d tenants",
                    AUTH_MAX_TENANTS);
    for (size_t i = 0; i < n_tenants; i++)
        if (tenants[i] == NULL || tenants[i][0] == '\0' || strlen(tenants[i]) > AUTH_MAX_CLAIM_BYTES)
            return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                        "tenant %zu must be a non-empty string of at most %d bytes", i,
                        AUTH_MAX_CLAIM_BYTES);
    if (exp <= iat)
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen, "exp must be later than iat");

    grants = claims_object(sub, tenants, n_tenants, role);
    if (grants == NULL)
        return errbuf_fail(AUTH_ERR_BAD_CLAIM, err, errlen,
                    "sub, tenants and role must be valid UTF-8");
    if (json_object_set_new(grants, "iat", json_integer((json_int_t) iat)) != 0 ||
        json_object_set_new(grants, "exp", json_integer((json_int_t) exp)) != 0 ||
        (text = json_dumps(grants, JSON_COMPACT)) == NULL)
    {
        rc = errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "out of memory signing a token");
        goto done;
    }
    if (jwt_new(&jwt) != 0 ||
        jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int) secret_len) != 0 ||
        jwt_add_grants_json(jwt, text) != 0)
    {
        rc = errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "libjwt could not build the token");
        goto done;
    }
    *token_out = jwt_encode_str(jwt);
    if (*token_out == NULL)
        rc = errbuf_fail(AUTH_ERR_INTERNAL, err, errlen, "libjwt could not sign the token");
done:
    if (jwt != NULL)
        jwt_free(jwt);
    free(text);
    json_decref(grants);
    return rc;
}
