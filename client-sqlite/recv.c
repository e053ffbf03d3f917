/*
 * client-sqlite/recv.c -- what the server sends, applied to the file.
 *
 * One handler per ServerMessage: Welcome (the user check, schema versions, then the
 * Subscribes), Subscribed (the mirror's columns; a fresh start drops old rows),
 * ChangeBatch (rows and offset in one transaction; the parts of a split transaction are
 * kept in ferry_partial and applied with its last part), UpToDate (ends a refetch; "synced"),
 * MustRefetch, MutationResults (one transaction per frame, outcome.c per result), Error
 * (fatal ones close; a subscription's own are retried or kept as the shape's error),
 * Pong, Unsubscribed, TokenExpiring and TokenRefreshed. fy_sync_handle_frame decodes a
 * frame and dispatches it; the unit tests feed it frames directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_HEARTBEAT_MS 15000      /* when Welcome gives none */
#define DEFAULT_IDLE_MS 45000           /* when Welcome gives none */

/* ---- receiving --------------------------------------------------------------------- */

/* Drops every shape's rows (the queue stays): the schema changed, or is too old. */
static int
schema_reset(ferry *db, int64_t version)
{
	int			rc;

	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	for (int i = 0; i < db->nshapes && rc == FERRY_OK; i++)
		rc = fy_rows_drop(db, db->shapes[i]);
	if (rc == FERRY_OK)
		rc = fy_meta_set_int(db, FY_META_SCHEMA_VERSION, version);
	if (rc != FERRY_OK)
	{
		fy_rollback(db);
		return rc;
	}
	db->schema_version = version;
	return fy_commit(db);
}

static int
on_welcome(ferry *db, Ferry__V1__Welcome *w)
{
	FySync	   *sy = &db->sync;
	int			rc;

	if (w->user_id != NULL && w->user_id[0])
	{
		if (db->user_id[0] && strcmp(db->user_id, w->user_id) != 0)
		{
			fy_sync_fatal(db, FERRY_AUTH, "%s belongs to user \"%s\" but the token is for user \"%s\": log out first "
					  "(ferry_logout), or open the other user's file", db->path, db->user_id, w->user_id);
			fy_sync_close(db, NULL, true);
			return FERRY_AUTH;
		}
		if (!db->user_id[0])
		{
			if ((rc = fy_meta_set(db, FY_META_USER_ID, w->user_id)) != FERRY_OK)
				return rc;
			snprintf(db->user_id, sizeof(db->user_id), "%s", w->user_id);
		}
	}
	if (db->schema_version != 0 &&
		(w->schema_version > db->schema_version || db->schema_version < w->min_schema_version))
	{
		/* the cache was built with another schema: drop its rows, keep the queue, refetch */
		if ((rc = schema_reset(db, w->schema_version)) != FERRY_OK)
			return rc;
	}
	else if (db->schema_version != w->schema_version)
	{
		if ((rc = fy_meta_set_int(db, FY_META_SCHEMA_VERSION, w->schema_version)) != FERRY_OK)
			return rc;
		db->schema_version = w->schema_version;
	}
	sy->heartbeat_ms = w->heartbeat_interval_ms ? w->heartbeat_interval_ms : DEFAULT_HEARTBEAT_MS;
	sy->idle_ms = w->idle_timeout_ms ? w->idle_timeout_ms : DEFAULT_IDLE_MS;
	sy->server_max_batch = w->max_mutations_per_batch;
	sy->token_expires_at = w->token_expires_at;
	sy->conn = FY_CONN_READY;
	sy->attempts = 0;
	sy->next_send_at = 0;
	sy->last_heartbeat = fy_mono_ms();
	if (sy->fatal != 0)
	{
		sy->fatal = 0;
		sy->last_error[0] = '\0';
	}
	if (sy->last_error_mutation[0] == '\0')
		sy->last_error[0] = '\0';	/* a connection error is over */
	for (int i = 0; i < db->nshapes; i++)
		if (db->shapes[i]->error == NULL)
			fy_sync_subscribe(db, db->shapes[i]);
	fy_status_changed(db);
	return FERRY_OK;
}

/* The shape's rows go and it subscribes again from "-1". */
static int
refetch(ferry *db, FyShape *s, const char *why)
{
	int			rc;

	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	if ((rc = fy_rows_drop(db, s)) != FERRY_OK)
	{
		fy_rollback(db);
		return rc;
	}
	if ((rc = fy_commit(db)) != FERRY_OK)
		return rc;
	(void) why;
	s->sent = s->ready = s->up_to_date = false;
	if (db->sync.conn == FY_CONN_READY)
		fy_sync_subscribe(db, s);
	return FERRY_OK;
}

static int
on_subscribed(ferry *db, Ferry__V1__Subscribed *m)
{
	FyShape    *s = fy_shape_by_id(db, m->subscription_id);
	bool		changed = false;
	bool		had_rows;
	int			rc;

	if (s == NULL || !s->sent || s->resubscribe)
		return FERRY_OK;		/* unsubscribed meanwhile */
	had_rows = s->handle[0] != '\0' || strcmp(s->offset, "-1") != 0;
	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	rc = fy_shape_set_columns(db, s, m->columns, m->n_columns, &changed);
	if (rc == FERRY_OK && changed)
		rc = fy_queue_check_schema(db, s);
	if (rc == FERRY_OK && (changed || (!m->resumed && had_rows)))
		rc = fy_rows_drop(db, s);
	if (rc == FERRY_OK)
	{
		free(s->handle);
		s->handle = fy_strdup(m->handle ? m->handle : "");
		if (!m->resumed)
		{
			free(s->offset);
			s->offset = fy_strdup("-1");
		}
		rc = fy_shape_save_position(db, s);
	}
	if (rc != FERRY_OK)
	{
		fy_rollback(db);
		return rc;
	}
	if ((rc = fy_commit(db)) != FERRY_OK)
		return rc;
	if (changed && m->resumed)
	{
		/* new columns on a resumed stream: start the shape over */
		s->resubscribe = true;
		fy_sync_unsubscribe(db, s->id);
		return FERRY_OK;
	}
	s->ready = true;
	s->attempts = 0;
	db->sync.next_send_at = 0;
	return FERRY_OK;
}

static bool
all_up_to_date(ferry *db)
{
	for (int i = 0; i < db->nshapes; i++)
		if (db->shapes[i]->error == NULL && !db->shapes[i]->up_to_date)
			return false;
	return true;
}

static int
on_changes(ferry *db, Ferry__V1__ChangeBatch *m)
{
	FyShape    *s = fy_shape_by_id(db, m->subscription_id);
	int			rc;

	if (s == NULL || !s->ready)
		return FERRY_OK;
	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	if (m->partial)
	{
		/* the transaction goes on: keep its changes until the last part */
		for (size_t i = 0; i < m->n_changes && rc == FERRY_OK; i++)
			rc = fy_rows_stage(db, s, m->changes[i]);
	}
	else
	{
		rc = fy_rows_apply_staged(db, s);
		for (size_t i = 0; i < m->n_changes && rc == FERRY_OK; i++)
			rc = fy_rows_apply_change(db, s, m->changes[i]);
	}
	if (rc == FERRY_OK && m->offset != NULL && m->offset[0])
	{
		free(s->offset);
		s->offset = fy_strdup(m->offset);
		s->up_to_date = false;
		rc = fy_shape_save_position(db, s);
	}
	if (rc == FERRY_OK)
		rc = fy_hlc_save(db);	/* a clock seen in the rows */
	if (rc != FERRY_OK)
	{
		char		why[600];

		snprintf(why, sizeof(why), "%.590s", db->errmsg);
		fy_rollback(db);
		if (rc == FERRY_PROTOCOL)
		{
			/* rows this client cannot apply: start the shape over rather than loop */
			fy_sync_set_error(db, NULL, "%s; fetching %s again", why, s->tbl);
			return refetch(db, s, why);
		}
		return rc;
	}
	return fy_commit(db);
}

static int
on_up_to_date(ferry *db, Ferry__V1__UpToDate *m)
{
	FyShape    *s = fy_shape_by_id(db, m->subscription_id);
	int			rc;

	if (s == NULL || !s->ready)
		return FERRY_OK;
	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	if (s->refetch)
		rc = fy_rows_refetch_done(db, s);
	if (m->offset != NULL && m->offset[0])
	{
		free(s->offset);
		s->offset = fy_strdup(m->offset);
	}
	s->up_to_date = true;
	s->last_sync_ms = fy_now_ms();
	if (rc == FERRY_OK)
		rc = fy_shape_save_position(db, s);
	if (rc == FERRY_OK && all_up_to_date(db))
	{
		db->last_sync_ms = s->last_sync_ms;
		rc = fy_meta_set_int(db, FY_META_LAST_SYNC, db->last_sync_ms);
	}
	if (rc != FERRY_OK)
	{
		fy_rollback(db);
		return rc;
	}
	return fy_commit(db);
}

static int
on_results(ferry *db, Ferry__V1__MutationResults *m)
{
	int			rc;

	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	for (size_t i = 0; i < m->n_results && rc == FERRY_OK; i++)
		if (m->results[i]->id != NULL)
			rc = fy_result_apply(db, m->results[i]);
	if (rc != FERRY_OK)
	{
		fy_rollback(db);
		return rc;
	}
	if ((rc = fy_commit(db)) != FERRY_OK)
		return rc;
	for (size_t i = 0; i < m->n_results; i++)
		if (m->results[i]->id != NULL)
			fy_sync_answered(db, m->results[i]->id);
	db->sync.next_send_at = 0;
	return FERRY_OK;
}

static int
on_error(ferry *db, Ferry__V1__Error *e)
{
	FySync	   *sy = &db->sync;
	const char *msg = e->message ? e->message : "";

	if (e->fatal)
	{
		sy->retry_after_ms = e->retry_after_ms;
		sy->closing = true;
		switch (e->code)
		{
			case FERRY__V1__ERROR_CODE__UNAUTHENTICATED:
			case FERRY__V1__ERROR_CODE__FORBIDDEN:
				fy_sync_fatal(db, FERRY_AUTH, "the server refused the token: %s", msg);
				break;
			case FERRY__V1__ERROR_CODE__TOKEN_EXPIRED:
				if (sy->conn == FY_CONN_HELLO)
					fy_sync_fatal(db, FERRY_AUTH, "the server refused the token: %s", msg);
				else
					fy_sync_set_error(db, NULL, "the token expired: %s", msg);
				break;
			case FERRY__V1__ERROR_CODE__UNSUPPORTED_VERSION:
				fy_sync_fatal(db, FERRY_PROTOCOL, "the server does not speak this client's protocol: %s (update libferry)",
						  msg);
				break;
			case FERRY__V1__ERROR_CODE__SCHEMA_TOO_OLD:
				/* drop the cache and come back as a new client (schema 0) at once */
				fy_sync_set_error(db, NULL, "the cached data is too old for the server: fetching it again");
				if (schema_reset(db, 0) != FERRY_OK)
					return FERRY_DB;
				sy->attempts = -1;	/* reconnect without waiting */
				break;
			default:
				fy_sync_set_error(db, NULL, "the server closed the connection: %s", msg);
				break;
		}
		return FERRY_OK;
	}
	if (e->subscription_id != 0)
	{
		FyShape    *s = fy_shape_by_id(db, e->subscription_id);

		if (s == NULL)
			return FERRY_OK;
		s->sent = s->ready = s->up_to_date = false;
		switch (e->code)
		{
			case FERRY__V1__ERROR_CODE__RATE_LIMITED:
			case FERRY__V1__ERROR_CODE__UNAVAILABLE:
			case FERRY__V1__ERROR_CODE__INTERNAL:
			case FERRY__V1__ERROR_CODE__SLOW_CLIENT:
			case FERRY__V1__ERROR_CODE__TOO_MANY_SUBSCRIPTIONS:
				s->retry_at = fy_mono_ms() + fy_backoff_ms(db, ++s->attempts, e->retry_after_ms);
				fy_sync_set_error(db, NULL, "%s: %s (trying again)", s->tbl, msg);
				return FERRY_OK;
			case FERRY__V1__ERROR_CODE__BAD_OFFSET:
				fy_sync_set_error(db, NULL, "%s: %s (fetching it again)", s->tbl, msg);
				return refetch(db, s, msg);
			default:
				{
					int			rc;

					free(s->error);
					s->error = fy_sprintf("the server refused the subscription to %s: %s", s->tbl, msg);
					fy_sync_set_error(db, NULL, "%s", s->error);
					if ((rc = fy_begin(db)) != FERRY_OK)
						return rc;
					if ((rc = fy_shape_save_position(db, s)) != FERRY_OK)
					{
						fy_rollback(db);
						return rc;
					}
					return fy_commit(db);
				}
		}
	}
	switch (e->code)
	{
		case FERRY__V1__ERROR_CODE__UNAUTHENTICATED:
		case FERRY__V1__ERROR_CODE__TOKEN_EXPIRED:
			/* a refused RefreshToken; the old token still holds: ask again later */
			sy->refresh_sent = false;
			sy->refresh_at = fy_mono_ms() + 10000;
			fy_sync_set_error(db, NULL, "the server refused the new token: %s", msg);
			return FERRY_OK;
		default:
			/* most likely about our oldest MutationBatch (e.g. a server that takes none) */
			if (sy->inflight != NULL)
				return fy_sync_batch_refused(db, e);
			fy_sync_set_error(db, NULL, "the server reported: %s", msg);
			return FERRY_OK;
	}
}

/* fy_sync_handle_frame decodes and applies one ServerMessage. */
int
fy_sync_handle_frame(ferry *db, const uint8_t *data, size_t len)
{
	Ferry__V1__ServerMessage *m = ferry__v1__server_message__unpack(NULL, len, data);
	int			rc = FERRY_OK;

	if (m == NULL)
		return fy_err(db, FERRY_PROTOCOL, "the server sent a frame this client cannot decode");
	switch (m->msg_case)
	{
		case FERRY__V1__SERVER_MESSAGE__MSG_WELCOME:
			rc = on_welcome(db, m->welcome);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED:
			rc = on_subscribed(db, m->subscribed);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_CHANGES:
			rc = on_changes(db, m->changes);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE:
			rc = on_up_to_date(db, m->up_to_date);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_MUST_REFETCH:
			{
				FyShape    *s = fy_shape_by_id(db, m->must_refetch->subscription_id);

				if (s != NULL && s->sent && !s->resubscribe)
					rc = refetch(db, s, m->must_refetch->reason);
				break;
			}
		case FERRY__V1__SERVER_MESSAGE__MSG_MUTATION_RESULTS:
			rc = on_results(db, m->mutation_results);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_ERROR:
			rc = on_error(db, m->error);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_PONG:
			if (db->sync.conn == FY_CONN_READY && all_up_to_date(db))
			{
				db->last_sync_ms = fy_now_ms();
				fy_meta_set_int(db, FY_META_LAST_SYNC, db->last_sync_ms);
			}
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_UNSUBSCRIBED:
			{
				FyShape    *s = fy_shape_by_id(db, m->unsubscribed->subscription_id);

				if (s != NULL && s->resubscribe)
				{
					s->resubscribe = false;
					s->sent = false;
					fy_sync_subscribe(db, s);
				}
				break;
			}
		case FERRY__V1__SERVER_MESSAGE__MSG_TOKEN_EXPIRING:
			if (!db->sync.refresh_sent)
				fy_sync_refresh(db);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_TOKEN_REFRESHED:
			db->sync.refresh_sent = false;
			db->sync.token_expires_at = m->token_refreshed->token_expires_at;
			break;
		default:
			break;				/* a newer server's message: skip it */
	}
	ferry__v1__server_message__free_unpacked(m, NULL);
	return rc;
}
