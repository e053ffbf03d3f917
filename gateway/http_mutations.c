/*
 * gateway/http_mutations.c -- POST /v1/mutations: a JSON array of mutations, applied in order.
 *
 * The body is an array of mutation objects in ferry.apply_mutation's format,
 * each with its "id". They go through the same queue, worker pool and rate
 * limits as mutations pushed over the WebSocket (writes.c): one WriteQueue
 * per request, so the request's mutations are applied one after another in
 * array order, each in its own transaction and exactly once by id. The
 * answer, once every mutation has its result, is a JSON array of results in
 * the same order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth.h"
#include "frame.h"
#include "gateway.h"
#include "http.h"
#include "http_json.h"
#include "log.h"
#include "writes.h"

static HttpReq *pending_head;	/* requests with mutations in flight */
static Hmap busy;				/* client key -> its request in flight */
static int	busy_init;
static HttpReq *waiting_head;	/* requests waiting for their client's request in flight (FIFO) */
static HttpReq *waiting_tail;

static void
link_pending(HttpReq *r)
{
	r->mprev = NULL;
	r->mnext = pending_head;
	if (pending_head != NULL)
		pending_head->mprev = r;
	pending_head = r;
}

static void
unlink_pending(HttpReq *r)
{
	if (r->mprev != NULL)
		r->mprev->mnext = r->mnext;
	else if (pending_head == r)
		pending_head = r->mnext;
	if (r->mnext != NULL)
		r->mnext->mprev = r->mprev;
	r->mnext = r->mprev = NULL;
}

void
http_wake_writers(void)
{
	for (HttpReq *r = pending_head; r != NULL; r = r->mnext)
		lws_callback_on_writable(r->wsi);
}

/* Takes r out of the waiting list; 1 when it was there. */
static int
unlink_waiting(HttpReq *r)
{
	HttpReq    *prev = NULL;

	for (HttpReq *w = waiting_head; w != NULL; prev = w, w = w->qnext)
		if (w == r)
		{
			if (prev != NULL)
				prev->qnext = r->qnext;
			else
				waiting_head = r->qnext;
			if (waiting_tail == r)
				waiting_tail = prev;
			r->qnext = NULL;
			return 1;
		}
	return 0;
}

void
http_mutations_close(HttpReq *r)
{
	if (r->writes != NULL)
	{
		writes_close(r->writes);
		r->writes = NULL;
		unlink_pending(r);
	}
	unlink_waiting(r);
	if (r->mkey != NULL && busy_init && hmap_get(&busy, r->mkey, strlen(r->mkey)) == r)
	{
		/* the client's next request, if one waits, goes now (from its own callback) */
		hmap_del(&busy, r->mkey, strlen(r->mkey));
		for (HttpReq *w = waiting_head; w != NULL; w = w->qnext)
			if (strcmp(w->mkey, r->mkey) == 0)
			{
				unlink_waiting(w);
				w->mturn = 1;
				lws_callback_on_writable(w->wsi);
				break;
			}
	}
	free(r->mkey);
	free(r->msub);
	free(r->mclient);
	free(r->mclaims);
	r->mkey = r->msub = r->mclient = r->mclaims = NULL;
}

static const char *
status_name(Ferry__V1__MutationStatus s)
{
	switch (s)
	{
		case FERRY__V1__MUTATION_STATUS__APPLIED:
			return "applied";
		case FERRY__V1__MUTATION_STATUS__DUPLICATE:
			return "duplicate";
		case FERRY__V1__MUTATION_STATUS__CONFLICT:
			return "conflict";
		case FERRY__V1__MUTATION_STATUS__REJECTED:
			return "rejected";
		default:
			return "retry";
	}
}

void
http_mutations_handle(HttpReq *r)
{
	AuthClaims	claims;
	json_t	   *doc;
	json_error_t jerr;
	char		err[512];
	char		client_id[FRAME_MAX_ID_BYTES + 1];
	Ferry__V1__MutationBatch batch = FERRY__V1__MUTATION_BATCH__INIT;
	Ferry__V1__Mutation *ms = NULL;
	Ferry__V1__Mutation **mp = NULL;
	size_t		n = 0;
	size_t		dumped = 0;		/* ms[0..dumped-1].json came from json_dumps */

	if (r->mkey == NULL)
	{
		/* the first time: who sends, for whom (the headers may be gone when its turn comes) */
		int			l;

		if (http_auth(r, &claims) != 0)
			return;
		l = lws_hdr_custom_copy(r->wsi, client_id, sizeof(client_id), "ferry-client-id:", 16);
		if (l <= 0)
			snprintf(client_id, sizeof(client_id), "http:%.120s", claims.sub);
		r->msub = strdup(claims.sub);
		r->mclient = strdup(client_id);
		r->mclaims = strdup(claims.json);
		r->mkey = malloc(strlen(r->msub) + strlen(r->mclient) + 2);
		sprintf(r->mkey, "%s\n%s", r->msub, r->mclient);
		auth_claims_free(&claims);
	}
	memset(&claims, 0, sizeof(claims));
	doc = json_loadb(r->in.len ? (const char *) r->in.data : "", r->in.len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL || !json_is_array(doc))
	{
		if (doc == NULL)
			snprintf(err, sizeof(err), "the body is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
					 jerr.column);
		else
			snprintf(err, sizeof(err), "the body must be a JSON array of mutations");
		http_error(r, 400, "BAD_JSON", err, NULL);
		goto out;
	}
	n = json_array_size(doc);
	if (n == 0 || n > FRAME_MAX_MUTATIONS)
	{
		snprintf(err, sizeof(err), "send 1 to %d mutations per request", FRAME_MAX_MUTATIONS);
		http_error(r, 400, "BAD_REQUEST", err, NULL);
		goto out;
	}
	ms = calloc(n, sizeof(*ms));
	mp = calloc(n, sizeof(*mp));
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *m = json_array_get(doc, i);
		json_t	   *id = json_object_get(m, "id");

		ferry__v1__mutation__init(&ms[i]);
		mp[i] = &ms[i];
		if (!json_is_object(m) || !json_is_string(id) || json_string_length(id) == 0 ||
			json_string_length(id) > FRAME_MAX_ID_BYTES || strlen(json_string_value(id)) != json_string_length(id))
		{
			snprintf(err, sizeof(err), "mutation %zu: each mutation is an object with an \"id\" string of 1 to %d "
					 "bytes", i, FRAME_MAX_ID_BYTES);
			http_error(r, 400, "BAD_REQUEST", err, NULL);
			goto out;
		}
		ms[i].id = (char *) json_string_value(id);
		ms[i].json = json_dumps(m, JSON_COMPACT);
		dumped = i + 1;
		if (ms[i].json == NULL || strlen(ms[i].json) > FRAME_MAX_MUTATION_BYTES)
		{
			snprintf(err, sizeof(err), "mutation %zu is above %d bytes", i, FRAME_MAX_MUTATION_BYTES);
			http_error(r, 400, "TOO_LARGE", err, NULL);
			goto out;
		}
	}
	/* one request of a client at a time: later ones wait, in order */
	if (!busy_init)
	{
		hmap_init(&busy);
		busy_init = 1;
	}
	{
		HttpReq    *active = hmap_get(&busy, r->mkey, strlen(r->mkey));

		if (active != NULL && active != r)
		{
			r->qnext = NULL;
			if (waiting_tail != NULL)
				waiting_tail->qnext = r;
			else
				waiting_head = r;
			waiting_tail = r;
			goto out;			/* the body stays for its turn */
		}
		hmap_put(&busy, r->mkey, strlen(r->mkey), r);
	}
	wbuf_free(&r->in);
	batch.n_mutations = n;
	batch.mutations = mp;
	r->writes = writes_open(r->wsi, r->mclient, r->msub, r->mclaims);
	r->nmutations = (int) n;
	r->nresults = 0;
	wbuf_init(&r->results);
	link_pending(r);
	writes_push(r->writes, &batch, gw_now_us());
out:
	for (size_t i = 0; i < dumped; i++)
		free(ms[i].json);
	free(ms);
	free(mp);
	json_decref(doc);
	auth_claims_free(&claims);
}

void
http_mutations_writable(HttpReq *r)
{
	uint8_t    *buf;
	size_t		len;
	int			retry_ms = -1;

	while (r->writes != NULL && writes_take(r->writes, &buf, &len))
	{
		Ferry__V1__ServerMessage *m = NULL;
		char		err[256];

		if (frame_decode_server(buf + LWS_PRE, len, NULL, &m, err, sizeof(err)) == FRAME_OK &&
			m->msg_case == FERRY__V1__SERVER_MESSAGE__MSG_MUTATION_RESULTS)
		{
			for (size_t i = 0; i < m->mutation_results->n_results; i++)
			{
				Ferry__V1__MutationResult *res = m->mutation_results->results[i];
				char		num[64];

				wbuf_put(&r->results, r->nresults > 0 ? ",\n" : "", r->nresults > 0 ? 2 : 0);
				wbuf_put(&r->results, "{\"id\":", 6);
				http_json_cstr(&r->results, res->id);
				wbuf_put(&r->results, ",\"status\":\"", 11);
				wbuf_put(&r->results, status_name(res->status), strlen(status_name(res->status)));
				snprintf(num, sizeof(num), "\",\"version\":%lld", (long long) res->version);
				wbuf_put(&r->results, num, strlen(num));
				if (res->error_code != NULL && res->error_code[0] != '\0')
				{
					wbuf_put(&r->results, ",\"error_code\":", 14);
					http_json_cstr(&r->results, res->error_code);
					wbuf_put(&r->results, ",\"error_message\":", 17);
					http_json_cstr(&r->results, res->error_message ? res->error_message : "");
				}
				if (res->status == FERRY__V1__MUTATION_STATUS__RETRY)
				{
					snprintf(num, sizeof(num), ",\"retry_after_ms\":%u", res->retry_after_ms);
					wbuf_put(&r->results, num, strlen(num));
					if ((int) res->retry_after_ms > retry_ms)
						retry_ms = (int) res->retry_after_ms;
				}
				wbuf_put(&r->results, ",\"result\":", 10);
				if (res->result_json != NULL && res->result_json[0] != '\0')
					wbuf_put(&r->results, res->result_json, strlen(res->result_json));
				else
					wbuf_put(&r->results, "null", 4);
				wbuf_put(&r->results, "}", 1);
				r->nresults++;
			}
		}
		else
			log_error("http", "cannot read mutation results: %s", err);
		frame_free_server(m);
		free(buf);
	}
	if (r->nresults >= r->nmutations && r->writes != NULL)
	{
		Wbuf		b;
		char		hdr[128];

		wbuf_init(&b);
		wbuf_reserve(&b, LWS_PRE + r->results.len + 4);
		memset(b.data, 0, LWS_PRE);
		b.len = LWS_PRE;
		wbuf_put(&b, "[", 1);
		wbuf_put(&b, r->results.data, r->results.len);
		wbuf_put(&b, "]\n", 2);
		wbuf_free(&r->results);
		http_mutations_close(r);
		snprintf(hdr, sizeof(hdr), "cache-control: no-store\n");
		if (retry_ms >= 0)
			snprintf(hdr + strlen(hdr), sizeof(hdr) - strlen(hdr), "retry-after: %d\n", (retry_ms + 999) / 1000);
		http_respond_buf(r, 200, hdr, &b);
	}
}
