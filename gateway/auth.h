/*
 * gateway/auth.h -- JWT (HS256) verification and signing for ferryd's clients.
 *
 * A client proves who it is with a JWT signed with HMAC-SHA256 and a secret shared
 * with ferryd. The token's claims are
 *
 *     {"sub": "<user>", "tenants": ["<tenant>", ...], "role": "<role>",
 *      "exp": <Unix seconds>, "nbf": <Unix seconds>, "iat": <Unix seconds>}
 *
 * with sub, tenants and exp required, role, nbf and iat optional; other claims are
 * ignored. auth_verify checks everything and hands back the claims ferryd needs, plus
 * the claims JSON that ferry.apply_mutation and ferry.changes_since take (see
 * docs/sql-api.md, "Claims").
 *
 * Mapping to the wire (proto/ferry.proto, ErrorCode): AUTH_ERR_EXPIRED is TOKEN_EXPIRED,
 * AUTH_ERR_INTERNAL is INTERNAL, every other failure is UNAUTHENTICATED. The claims'
 * exp is what ferryd enforces during the connection: it must close (or have received a
 * refreshed token) by then.
 *
 * Neither function logs, and no error message contains the token, the secret or a claim
 * value: messages name the claim and what is wrong with it.
 */
#ifndef FERRY_GATEWAY_AUTH_H
#define FERRY_GATEWAY_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Limits on what a token may hold. Tokens are read into memory more than once (and
 * libjwt copies parts to the stack), so the length limit comes first. */
#define AUTH_MAX_TOKEN_BYTES 65536      /* longest token accepted */
#define AUTH_MAX_TENANTS 1000           /* most entries in "tenants" */
#define AUTH_MAX_CLAIM_BYTES 256        /* longest sub, role or tenant (bytes of UTF-8) */
#define AUTH_LEEWAY_SECONDS 60          /* clock skew tolerated for nbf and iat (not exp) */

/* Results of auth_verify and auth_sign_hs256; negative values are failures. */
typedef enum AuthResult
{
    AUTH_OK = 0,                    /* verified (or signed) */
    AUTH_ERR_MALFORMED = -1,        /* not a JWT: length, structure, base64url, JSON, header */
    AUTH_ERR_WRONG_ALG = -2,        /* alg is not HS256 (none, HS384, HS512, RS256, ...) */
    AUTH_ERR_BAD_SIGNATURE = -3,    /* the HS256 signature does not match the secret */
    AUTH_ERR_EXPIRED = -4,          /* now >= exp */
    AUTH_ERR_NOT_YET_VALID = -5,    /* nbf or iat later than now + AUTH_LEEWAY_SECONDS */
    AUTH_ERR_MISSING_CLAIM = -6,    /* exp, sub or tenants absent */
    AUTH_ERR_BAD_CLAIM = -7,        /* a claim of the wrong type, empty, too long, too many */
    AUTH_ERR_INTERNAL = -8,         /* out of memory, empty secret, invalid arguments */
} AuthResult;

/* The claims of a verified token. Owned by the caller: release with auth_claims_free. */
typedef struct AuthClaims
{
    char *sub;                      /* the user; non-empty */
    char *role;                     /* the role, NULL when the token has none */
    char **tenants;                 /* n_tenants non-empty tenant ids, in token order */
    size_t n_tenants;               /* 1 to AUTH_MAX_TENANTS */
    int64_t exp;                    /* expiry (Unix seconds): invalid from this second on */
    int64_t iat;                    /* issued at (Unix seconds), 0 when absent */
    char *json;                     /* {"sub":..,"tenants":[..],"role":..} (role only when
                                     * present), compact and canonical: equal claims give
                                     * equal text, so it can be compared with strcmp */
} AuthClaims;

/*
 * auth_verify checks `token` (a NUL-terminated compact JWT) against `secret` at time
 * `now` and fills `out` with its claims.
 *
 * Checks, in order: length (AUTH_MAX_TOKEN_BYTES), three base64url segments, a JSON
 * object header (no repeated key) whose alg is exactly "HS256" (any other alg, "none"
 * included, is AUTH_ERR_WRONG_ALG before any signature check), typ "JWT" when present,
 * no "crit", a JSON object payload (no repeated key), the signature; then the claims'
 * types: exp (required, a number), nbf and iat (numbers when present), sub (required,
 * non-empty string), tenants (required, array of 1 to AUTH_MAX_TENANTS non-empty
 * strings), role (a string, or null for none); strings at most AUTH_MAX_CLAIM_BYTES;
 * and last the times: now < exp, nbf and iat not after now + AUTH_LEEWAY_SECONDS. So a
 * token that is both malformed and expired is reported malformed: only a token that
 * would be good but for its age is AUTH_ERR_EXPIRED.
 *
 * Returns AUTH_OK, or an AuthResult failure with a message in err (when errlen > 0) and
 * `out` zeroed. `out` need not be initialised on entry; on AUTH_OK the caller owns it.
 */
int auth_verify(const char *token, const uint8_t *secret, size_t secret_len, time_t now,
                AuthClaims *out, char *err, size_t errlen);

/* auth_claims_free releases what `claims` holds and zeroes it. Safe on a zeroed struct
 * and on NULL; the struct itself is the caller's. */
void auth_claims_free(AuthClaims *claims);

/*
 * auth_sign_hs256 makes an HS256 token with claims sub, tenants (n_tenants >= 1
 * non-empty strings), role (omitted when NULL), iat and exp (> iat). For tests and for
 * ferryd's demo token; the result passes auth_verify while iat - leeway <= now < exp.
 *
 * On AUTH_OK *token_out is a NUL-terminated string the caller frees with free().
 * On failure (AUTH_ERR_BAD_CLAIM for invalid claims, AUTH_ERR_INTERNAL otherwise)
 * *token_out is NULL and err says why.
 */
int auth_sign_hs256(const uint8_t *secret, size_t secret_len, const char *sub,
                    const char *const *tenants, size_t n_tenants, const char *role,
                    time_t iat, time_t exp, char **token_out, char *err, size_t errlen);

/* auth_result_name returns a short lower-case name of an AuthResult ("expired",
 * "bad_signature", ...), for logs and metrics labels. */
const char *auth_result_name(int rc);

#endif                          /* FERRY_GATEWAY_AUTH_H */
