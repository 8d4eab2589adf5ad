/* SPDX-License-Identifier: MIT */
/*
 * Forwarding: every message goes to the peer of the connection it came
 * from, unmodified, fds included, after its trace line; SET_BACKEND_REQ_FD
 * gets the back-end channel interposed through a socketpair of ours.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "trace.h"

static int on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx);
static void on_writable(struct vhu_conn *conn, void *ctx);
static void on_hangup(struct vhu_conn *conn, int reason, void *ctx);

const struct vhu_conn_ops conn_ops = {
	.on_message = on_message,
	.on_close = on_close,
	.on_writable = on_writable,
	.on_hangup = on_hangup,
};

void
conn_opts(struct vhu_conn_opts *o, uint8_t chan)
{
	memset(o, 0, sizeof(*o));
	o->recv_mode = app.opt.recv_mode;
	o->frames_only = true;
	o->rules.channel = chan;
	o->rules.expect = VHU_EXPECT_EITHER;
	o->rules.max_size = TRACE_MAX_SIZE;
	o->sendq_bytes = SENDQ_BYTES;
	o->sendq_msgs = SENDQ_MSGS;
}

static bool
is_unix_stream(int fd)
{
	int v;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0 || v != AF_UNIX) {
		return false;
	}
	len = sizeof(v);
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_STREAM;
}

/*
 * Is fd, passed as the back-end channel, fit to be interposed? Not if it
 * leads back to one of our own connections (the front-end's own socket,
 * or that of another session): the tracer would then hold the far end of
 * its own connection, which would never see EOF, so the session would
 * outlive the front-end. lib's fd-kind rule checks one connection at a
 * time; every connection of every session is asked.
 */
static int
channel_fd_check(const struct end *e, const struct vhu_msg *msg, const char **why)
{
	const struct session *s;
	const struct end *o;
	int rc;

	*why = "is not a connected Unix stream socket";
	rc = vhu_msg_check_fd_kinds(&e->strict, &msg->hdr, msg->fds.fd, msg->fds.n, -1);
	if (rc < 0) {
		return rc;
	}
	*why = "leads back to vhu-trace's own connection";
	rc = vhu_msg_check_fd_kinds(&e->strict, &msg->hdr, msg->fds.fd, msg->fds.n,
				    vhu_conn_fd(e->conn));
	for (s = app.sessions; rc == 0 && s != NULL; s = s->next) {
		for (o = s->ends; rc == 0 && o != NULL; o = o->next) {
			if (o != e && o->conn != NULL) {
				rc = vhu_msg_check_fd_kinds(&e->strict, &msg->hdr, msg->fds.fd,
							    msg->fds.n, vhu_conn_fd(o->conn));
			}
		}
	}
	return rc;
}

/*
 * Queue msg to the peer of e with its fds, subst in place of the first if
 * subst >= 0. The fds leave msg only once the send succeeded (the queue
 * owns them then); on failure they are all still in msg, so the message
 * can be held (VHU_MSG_HOLD) and forwarded again, fds exactly once.
 */
static int
send_to_peer(struct end *e, struct vhu_msg *msg, int subst)
{
	int fds[VHU_MAX_FDS];
	unsigned int n = 0, first = 0, i;
	int rc;

	if (subst >= 0) {
		fds[n++] = subst;
		first = 1;
	}
	for (i = first; i < msg->fds.n && n < VHU_MAX_FDS; i++) {
		fds[n++] = msg->fds.fd[i];
	}
	rc = vhu_conn_send(e->peer->conn, &msg->hdr, msg->body, msg->hdr.size, NULL, 0, fds, n);
	if (rc == 0) {
		for (i = first; i < msg->fds.n; i++) {
			(void)vhu_fds_take(&msg->fds, i);
		}
	}
	return rc;
}

/* No room at the peer: keep msg (fds included) and pause e until the peer drains. */
static int
hold(struct end *e)
{
	e->held = true;
	return VHU_MSG_HOLD;
}

/* A send failed for another reason than a full queue; \return what on_message returns. */
static int
forward_failed(struct end *e, struct vhu_msg *msg, int rc)
{
	if (rc == -ENOTCONN || rc == -EPIPE) {
		/* That side is already closing, or shut down: the message has nowhere to go. */
		return 0;
	}
	fprintf(stderr, "vhu-trace: session %u: cannot forward %s to the %s: %s (%s)\n",
		e->s->id, vhu_req_name((enum vhu_channel)e->chan, msg->hdr.request),
		side_name(!e->side), vhu_strerror(rc), vhu_errname(rc));
	session_fault(e->s, rc);
	e->s->ending = true;
	return rc;
}

/*
 * SET_BACKEND_REQ_FD: one end of a new socketpair goes to the back-end in
 * place of the front-end's channel socket; once it is queued, that socket
 * (taken from msg) and our end of the pair become the channel's two ends.
 * A channel set up earlier is closed.
 */
static int
backend_channel_open(struct end *e, struct vhu_msg *msg)
{
	struct session *s = e->s;
	struct end *old, *fe, *be;
	int sp[2], rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = send_to_peer(e, msg, sp[1]);
	if (rc < 0) {
		close(sp[0]);
		close(sp[1]);
		if (rc == -VHU_EQFULL) {
			return hold(e);
		}
		return forward_failed(e, msg, rc);
	}
	/* sp[1] belongs to the queue now; the back-end has its end of the channel. */
	for (old = s->ends; old != NULL; old = old->next) {
		if (old->chan == VHU_CHAN_BACKEND) {
			end_close_after_drain(old);
		}
	}
	rc = end_attach(s, VHU_CHAN_BACKEND, SIDE_FRONT, vhu_fds_take(&msg->fds, 0), &fe);
	if (rc < 0) {
		close(sp[0]);
		goto fail;
	}
	rc = end_attach(s, VHU_CHAN_BACKEND, SIDE_BACK, sp[0], &be);
	if (rc < 0) {
		vhu_conn_close(fe->conn);
		goto fail;
	}
	fe->peer = be;
	be->peer = fe;
	trace_event(s, "backend_channel", chan_name(VHU_CHAN_BACKEND), NULL, 0,
		    "backend-channel: opened, traced through a socketpair");
	return 0;
fail:
	fprintf(stderr, "vhu-trace: session %u: cannot set up the back-end channel: %s\n", s->id,
		vhu_strerror(rc));
	session_fault(s, rc);
	s->ending = true;
	return rc;
}

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct end *e = ctx;
	struct session *s = e->s;
	const struct vhu_hdr *h = &msg->hdr;
	/* A message held for want of room comes again: it was traced and judged the first time. */
	bool again = e->held;
	int bad = vhu_msg_check(&e->strict, h, msg->body, msg->fds.n);
	bool interpose;
	int rc;

	e->held = false;
	if (e->peer == NULL) {
		if (!again) {
			trace_message(e, msg, bad, "dropped: the other side is gone");
		}
		return 0;
	}
	if (bad != 0 && app.opt.strict) {
		trace_message(e, msg, bad, "strict: not forwarded");
		fprintf(stderr, "vhu-trace: session %u: %s from the %s breaks the rules: %s (%s); "
			"--strict: closing both sides\n", s->id,
			vhu_req_name((enum vhu_channel)e->chan, h->request), side_name(e->side),
			vhu_strerror(bad), vhu_errname(bad));
		session_fault(s, bad);
		s->refused = bad;
		s->ending = true;
		return bad;
	}
	interpose = e->chan == VHU_CHAN_FRONTEND && e->side == SIDE_FRONT &&
		    h->request == VHU_REQ_SET_BACKEND_REQ_FD && (h->flags & VHU_FLAG_REPLY) == 0 &&
		    msg->fds.n == 1 && is_unix_stream(msg->fds.fd[0]);
	if (interpose && !again) {
		const char *why;

		rc = channel_fd_check(e, msg, &why);
		if (rc < 0) {
			trace_message(e, msg, rc, "refused: not forwarded");
			fprintf(stderr, "vhu-trace: session %u: %s from the %s: the back-end channel "
				"fd %s (%s); closing both sides\n", s->id,
				vhu_req_name((enum vhu_channel)e->chan, h->request),
				side_name(e->side), why, vhu_errname(rc));
			session_fault(s, rc);
			s->refused = rc;
			s->ending = true;
			return rc;
		}
	}
	if (!again) {
		/* Traced first: the fd types shown are the front-end's, before any is replaced. */
		trace_message(e, msg, bad, interpose ? "back-end channel interposed" : NULL);
	}
	if (interpose) {
		return backend_channel_open(e, msg);
	}
	rc = send_to_peer(e, msg, -1);
	if (rc == -VHU_EQFULL) {
		return hold(e);
	}
	return rc < 0 ? forward_failed(e, msg, rc) : 0;
}

/* The peer's queue is half empty again: the end that feeds it may go on. */
static void
on_writable(struct vhu_conn *conn, void *ctx)
{
	struct end *e = ctx;

	(void)conn;
	if (e->peer != NULL && e->peer->held) {
		vhu_conn_resume_recv(e->peer->conn);
	}
}

/*
 * Did the peer on fd close its socket, rather than only shut down its
 * sending side? Both read as EOF; a closed peer also shut our sending
 * side (POLLHUP), a half-closed one did not (POLLRDHUP alone).
 */
static bool
peer_closed(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

/*
 * The peer e faces sent EOF, after its last message was forwarded. A peer
 * that closed its socket is gone: e closes, and with it (as any close does)
 * the other side once what is queued to it has left. A peer that shut down
 * only its sending side still reads: the other side gets the same
 * half-close once its queue is out, the other direction goes on, and each
 * connection closes by itself when both of its directions are over.
 */
static void
on_hangup(struct vhu_conn *conn, int reason, void *ctx)
{
	struct end *e = ctx;
	char text[256];

	e->rx_over = true;
	if (!e->tx_shut && peer_closed(vhu_conn_fd(conn))) {
		vhu_conn_close_reason(conn, reason);
		return;
	}
	snprintf(text, sizeof(text), "%s: the %s side shut down its sending side%s",
		 chan_name(e->chan), side_name(e->side), e->peer != NULL ? "; forwarded" : "");
	trace_event(e->s, "hangup", chan_name(e->chan), side_name(e->side), reason, text);
	if (e->peer != NULL) {
		e->peer->tx_shut = true;
		vhu_conn_shutdown(e->peer->conn);
	} else {
		/* Nothing can come for it any more either. */
		end_close_after_drain(e);
	}
}

void
on_accept(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx)
{
	struct vhu_conn_opts o;
	struct session *s = calloc(1, sizeof(*s));
	struct end *front = NULL, *back = NULL;
	char text[256];
	int rc;

	if (!app.opt.keep) {
		/* One session only: no second front-end can find the path from now on. */
		vhu_ulistener_close(l);
		app.listener = NULL;
	}
	if (s != NULL) {
		front = end_new(s, VHU_CHAN_FRONTEND, SIDE_FRONT);
		back = end_new(s, VHU_CHAN_FRONTEND, SIDE_BACK);
	}
	if (s == NULL || front == NULL || back == NULL) {
		fprintf(stderr, "vhu-trace: out of memory for a session; closing the front-end\n");
		free(front);
		free(back);
		free(s);
		vhu_conn_close_reason(conn, -ENOMEM);
		if (!app.opt.keep) {
			app.status = ST_FAIL;
			app.done = true;
		}
		return;
	}
	s->id = ++app.next_id;
	s->next = app.sessions;
	app.sessions = s;
	front->conn = conn;
	vhu_conn_set_ctx(conn, front);
	end_link(front);
	snprintf(text, sizeof(text), "front-end connected; connecting to %s", app.opt.connect);
	trace_event(s, "session_start", NULL, NULL, 0, text);

	conn_opts(&o, VHU_CHAN_FRONTEND);
	rc = vhu_conn_connect(app.ring, app.opt.connect, &o, &conn_ops, back, &back->conn);
	if (rc < 0) {
		free(back);
		fprintf(stderr, "vhu-trace: cannot connect to %s: %s (%s)\n", app.opt.connect,
			vhu_strerror(rc), vhu_errname(rc));
		snprintf(text, sizeof(text), "cannot connect to the back-end: %s",
			 vhu_strerror(rc));
		trace_event(s, "connect_failed", NULL, NULL, rc, text);
		s->connect_failed = true;
		s->fault = rc;
		session_shutdown(s);
		return;
	}
	end_link(back);
	front->peer = back;
	back->peer = front;
}
