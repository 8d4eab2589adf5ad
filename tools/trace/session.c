/* SPDX-License-Identifier: MIT */
/*
 * Sessions: a front-end's connection, ours to the back-end, and the two of
 * the back-end channel once interposed; how each closes (after its queue
 * drains, or a deadline), and what the session's end means for the exit
 * status.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/clock.h"
#include "trace.h"

static bool
is_benign_close(int reason)
{
	switch (-reason) {
	case 0:
	case VHU_EDISCONNECT:
	case VHU_EPARTIAL:
	case ECONNRESET:
	case EPIPE:
		return true;
	default:
		return false;
	}
}

static bool
is_protocol_fault(int err)
{
	return vhu_err_is_invalid_message(err) || vhu_err_is_incorrect_fds(err) ||
	       err == -VHU_EOVERSIZED;
}

void
session_fault(struct session *s, int err)
{
	if (s->fault == 0 && !is_benign_close(err)) {
		s->fault = err;
	}
}

void
end_close_after_drain(struct end *e)
{
	if (e == NULL || e->draining) {
		return;
	}
	e->draining = true;
	e->drain_until = tool_now_ns() + DRAIN_NS;
	if (vhu_conn_sendq_len(e->conn) == 0) {
		vhu_conn_close(e->conn);
	}
}

bool
end_finishing(const struct end *e)
{
	return e->rx_over && e->tx_shut;
}

/*
 * An end of s on chan facing side, not yet attached. On the main channel
 * the front-end sends requests and the back-end replies; on the back-end
 * channel the roles are reversed.
 */
struct end *
end_new(struct session *s, uint8_t chan, uint8_t side)
{
	struct end *e = calloc(1, sizeof(*e));
	bool requests = (chan == VHU_CHAN_FRONTEND) == (side == SIDE_FRONT);

	if (e == NULL) {
		return NULL;
	}
	e->s = s;
	e->chan = chan;
	e->side = side;
	e->strict.channel = chan;
	e->strict.expect = requests ? VHU_EXPECT_REQUEST : VHU_EXPECT_REPLY;
	e->strict.max_size = VHU_DEFAULT_MAX_SIZE;
	return e;
}

void
end_link(struct end *e)
{
	e->next = e->s->ends;
	e->s->ends = e;
}

static void
end_unlink(struct end *e)
{
	struct end **p;

	for (p = &e->s->ends; *p != NULL; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			return;
		}
	}
}

int
end_attach(struct session *s, uint8_t chan, uint8_t side, int fd, struct end **out)
{
	struct vhu_conn_opts o;
	struct end *e = end_new(s, chan, side);
	int rc;

	if (e == NULL) {
		close(fd);
		return -ENOMEM;
	}
	conn_opts(&o, chan);
	rc = vhu_conn_attach(app.ring, fd, &o, &conn_ops, e, &e->conn);
	if (rc < 0) {
		free(e);
		return rc;
	}
	end_link(e);
	*out = e;
	return 0;
}

static void
session_unlink(struct session *s)
{
	struct session **p;

	for (p = &app.sessions; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			return;
		}
	}
}

static enum status
session_status(const struct session *s)
{
	if (s->connect_failed) {
		return ST_CONNECT;
	}
	if (s->fault == 0) {
		return ST_OK;
	}
	return is_protocol_fault(s->fault) ? ST_PROTOCOL : ST_FAIL;
}

/* The last end of s is gone. */
static void
session_end(struct session *s)
{
	enum status st = session_status(s);
	char text[64];

	snprintf(text, sizeof(text), "ended (exit status %d)", (int)st);
	trace_event(s, "session_end", NULL, NULL, s->fault, text);
	session_unlink(s);
	free(s);
	if (!app.opt.keep) {
		app.status = st;
		app.done = true;
	}
}

/* End every connection of s, each once its queued messages have left. */
void
session_shutdown(struct session *s)
{
	struct end *e;

	s->ending = true;
	for (e = s->ends; e != NULL; e = e->next) {
		end_close_after_drain(e);
	}
}

void
on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct end *e = ctx;
	struct session *s;
	struct end *peer;
	uint8_t chan, side;
	bool clean;
	char text[256];

	(void)conn;
	if (e == NULL) {
		/* Accepted, but no session could be set up for it; already reported. */
		return;
	}
	s = e->s;
	chan = e->chan;
	side = e->side;
	peer = e->peer;
	/*
	 * Both directions ended by half-closes, forwarded each way: the peer
	 * end has hung up too and was shut down, so it closes by itself once
	 * what is queued to it has left.
	 */
	clean = end_finishing(e) && (reason == -VHU_EDISCONNECT || reason == -VHU_EPARTIAL);
	if (peer != NULL) {
		peer->peer = NULL;
		if (peer->held) {
			/* Its held message has nowhere to go now: let it be dropped. */
			vhu_conn_resume_recv(peer->conn);
		}
	}
	end_unlink(e);
	free(e);
	if (reason == 0) {
		snprintf(text, sizeof(text), "%s: closed the %s side", chan_name(chan),
			 side_name(side));
	} else if (reason == s->refused) {
		/* Our own doing, already explained on stderr. */
		snprintf(text, sizeof(text), "%s: closed the %s side: %s", chan_name(chan),
			 side_name(side), vhu_strerror(reason));
	} else {
		snprintf(text, sizeof(text), "%s: the %s side closed: %s", chan_name(chan),
			 side_name(side), vhu_strerror(reason));
	}
	trace_event(s, "close", chan_name(chan), side_name(side), reason, text);
	if (!is_benign_close(reason) && reason != s->refused) {
		fprintf(stderr, "vhu-trace: session %u: %s, %s side: %s (%s); closing both sides\n",
			s->id, chan_name(chan), side_name(side), vhu_strerror(reason),
			vhu_errname(reason));
		session_fault(s, reason);
	}
	if (s->ending || (chan == VHU_CHAN_FRONTEND && !(clean && peer != NULL))) {
		/* The main channel is over (or the session failed): everything goes. */
		session_shutdown(s);
	} else if (!clean) {
		/* The back-end channel ends alone; the main channel goes on. */
		end_close_after_drain(peer);
	}
	if (s->ends == NULL) {
		session_end(s);
	}
}

void
drain_check(void)
{
	int64_t now = tool_now_ns();
	struct session *s;
	struct end *e;

	for (s = app.sessions; s != NULL; s = s->next) {
		for (e = s->ends; e != NULL; e = e->next) {
			if (e->draining &&
			    (vhu_conn_sendq_len(e->conn) == 0 || now >= e->drain_until)) {
				vhu_conn_close(e->conn);
			}
		}
	}
}
