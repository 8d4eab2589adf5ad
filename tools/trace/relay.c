/* SPDX-License-Identifier: MIT */
/*
 * Forwarding: every message goes to the peer of the connection it came
 * from, unmodified, fds included, after its trace line; SET_BACKEND_REQ_FD
 * gets the back-end channel interposed through a socketpair of ours.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "trace.h"

static int on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx);

const struct vhu_conn_ops conn_ops = {
	.on_message = on_message,
	.on_close = on_close,
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
 * SET_BACKEND_REQ_FD: the front-end's channel socket (taken from msg)
 * becomes an end of ours, and one end of a new socketpair goes to the
 * back-end in its place (*subst). A channel set up earlier is closed.
 */
static int
backend_channel_open(struct session *s, struct vhu_msg *msg, int *subst)
{
	struct end *old, *fe, *be;
	int sp[2], rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
		return -errno;
	}
	for (old = s->ends; old != NULL; old = old->next) {
		if (old->chan == VHU_CHAN_BACKEND) {
			end_close_after_drain(old);
		}
	}
	rc = end_attach(s, VHU_CHAN_BACKEND, SIDE_FRONT, vhu_fds_take(&msg->fds, 0), &fe);
	if (rc < 0) {
		close(sp[0]);
		close(sp[1]);
		return rc;
	}
	rc = end_attach(s, VHU_CHAN_BACKEND, SIDE_BACK, sp[0], &be);
	if (rc < 0) {
		vhu_conn_close(fe->conn);
		close(sp[1]);
		return rc;
	}
	fe->peer = be;
	be->peer = fe;
	*subst = sp[1];
	return 0;
}

/* Queue msg to the peer of e; its fds (subst first, if any) go with it. */
static int
forward(struct end *e, struct vhu_msg *msg, int subst)
{
	int fds[VHU_MAX_FDS];
	unsigned int n = 0, i;
	int rc;

	if (subst >= 0) {
		fds[n++] = subst;
	}
	for (i = 0; i < msg->fds.n && n < VHU_MAX_FDS; i++) {
		int fd = vhu_fds_take(&msg->fds, i);

		if (fd >= 0) {
			fds[n++] = fd;
		}
	}
	rc = vhu_conn_send(e->peer->conn, &msg->hdr, msg->body, msg->hdr.size, NULL, 0, fds, n);
	if (rc == 0) {
		return 0;
	}
	for (i = 0; i < n; i++) {
		close(fds[i]);
	}
	if (rc == -ENOTCONN) {
		/* That side is already closing: the message has nowhere to go. */
		return 0;
	}
	fprintf(stderr, "vhu-trace: session %u: cannot forward %s to the %s: %s (%s)\n",
		e->s->id, vhu_req_name((enum vhu_channel)e->chan, msg->hdr.request),
		side_name(!e->side), vhu_strerror(rc), vhu_errname(rc));
	session_fault(e->s, rc);
	e->s->ending = true;
	return rc;
}

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct end *e = ctx;
	struct session *s = e->s;
	const struct vhu_hdr *h = &msg->hdr;
	int bad = vhu_msg_check(&e->strict, h, msg->body, msg->fds.n);
	bool interpose;
	int subst = -1;
	int rc;

	if (e->peer == NULL) {
		trace_message(e, msg, bad, "dropped: the other side is gone");
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
	/* Traced first: the fd types shown are the front-end's, before any is replaced. */
	trace_message(e, msg, bad, interpose ? "back-end channel interposed" : NULL);
	if (interpose) {
		rc = backend_channel_open(s, msg, &subst);
		if (rc < 0) {
			fprintf(stderr, "vhu-trace: session %u: cannot set up the back-end "
				"channel: %s\n", s->id, vhu_strerror(rc));
			session_fault(s, rc);
			s->ending = true;
			return rc;
		}
		trace_event(s, "backend_channel", chan_name(VHU_CHAN_BACKEND), NULL, 0,
			    "backend-channel: opened, traced through a socketpair");
	}
	return forward(e, msg, subst);
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
