/* SPDX-License-Identifier: MIT */
/*
 * The engine server: one vhu_ring with every connection of the case
 * attached, replying from on_message with vhu_conn_send. It waits in
 * vhu_ring_wait(), or, for the +poll transports, spins on vhu_ring_poll()
 * with a ring set up for busy polling.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listen.h"
#include "peer.h"

/* --listen: each connection's send queue holds the replies of the deepest --depth. */
#define LISTEN_DEPTH	BENCH_MAX_DEPTH

struct ustate;

/* What on_message and on_close get: where to count, and (--listen) the connection's line. */
struct uconn {
	struct ustate *st;
	struct bench_counts *k;
	struct bench_counts own;	/* --listen: this connection's counts */
	struct bench_conn_stat cs;	/* --listen */
};

struct ustate {
	const struct bench_transport *t;
	struct vhu_ring *ring;
	struct uconn all;	/* a case: every connection counts into the server's */
	unsigned int open;	/* connections attached and not closed */
	int err;		/* the first abnormal close */
	char detail[160];
	/* --listen */
	bool listening;
	unsigned int accepted;
	unsigned int closed;
};

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct uconn *uc = ctx;
	uint8_t reply[BENCH_REPLY_SIZE];
	int r = bench_serve(uc->k, &msg->hdr, msg->fds.fd, msg->fds.n, reply);

	if (r == 1) {
		/* the queue holds every reply a case can have outstanding: full is an error */
		r = vhu_conn_send(conn, (const struct vhu_hdr *)reply, reply + sizeof(struct vhu_hdr),
				  sizeof(uint64_t), NULL, 0, NULL, 0);
	}
	return r < 0 ? r : 0;
}

static void
on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct uconn *uc = ctx;
	struct ustate *st = uc->st;
	char detail[160] = "";

	(void)conn;
	st->open--;
	if (reason == -VHU_EDISCONNECT) {
		reason = 0;	/* the peer closed between messages: the normal end */
	}
	if (reason < 0) {
		snprintf(detail, sizeof(detail), "connection closed: %s", vhu_strerror(reason));
		if (st->err == 0) {
			st->err = reason;
			snprintf(st->detail, sizeof(st->detail), "%s", detail);
		}
	}
	if (st->listening) {
		st->closed++;
		if (uc != &st->all) {
			bench_conn_end(&uc->cs, st->t->name, uc->k, reason, detail);
			free(uc);
		}
	}
}

static const struct vhu_conn_ops conn_ops = {
	.on_message = on_message,
	.on_close = on_close,
};

static void
conn_opts(const struct bench_transport *t, unsigned int depth, struct vhu_conn_opts *o)
{
	unsigned int msgs = 2 * depth > 256 ? 2 * depth : 256;

	memset(o, 0, sizeof(*o));
	o->recv_mode = t->recv_mode;
	o->rules = bench_server_rules;
	/* room for every reply a peer can have outstanding, twice */
	o->sendq_msgs = msgs;
	o->sendq_bytes = msgs * BENCH_REPLY_SIZE > 65536 ? msgs * BENCH_REPLY_SIZE : 65536;
}

static int
make_ring(const struct bench_transport *t, unsigned int max_conns, struct vhu_ring **out,
	  char *detail, size_t len)
{
	struct vhu_ring_opts ropts = {
		.max_conns = max_conns,
		.busy_poll = t->busy_poll,
		.wait_spin_us = t->wait_spin_us,
	};
	int ret = vhu_ring_create(&ropts, out);

	if (ret < 0) {
		snprintf(detail, len, "vhu_ring_create: %s (%s)", vhu_strerror(ret),
			 vhu_ring_error_hint(ret));
		*out = NULL;
	}
	return ret;
}

static int
ur_setup(struct bench_server *s)
{
	struct ustate *st = calloc(1, sizeof(*st));
	struct vhu_conn_opts copts;
	int ret;

	s->priv = st;
	if (st == NULL) {
		snprintf(s->detail, sizeof(s->detail), "out of memory");
		return -ENOMEM;
	}
	st->t = s->t;
	st->all.st = st;
	st->all.k = &s->k;
	ret = make_ring(s->t, s->nconns, &st->ring, s->detail, sizeof(s->detail));
	if (ret < 0) {
		return ret;
	}
	conn_opts(s->t, s->tr->depth, &copts);
	for (unsigned int i = 0; i < s->nconns; i++) {
		ret = vhu_conn_attach(st->ring, s->fds[i], &copts, &conn_ops, &st->all, NULL);
		s->fds[i] = -1;	/* the connection owns it, also on failure */
		if (ret < 0) {
			snprintf(s->detail, sizeof(s->detail), "vhu_conn_attach: %s",
				 vhu_strerror(ret));
			return ret;
		}
		st->open++;
	}
	return 0;
}

static int
loop_once(struct ustate *st, int timeout_ms)
{
	int ret = st->t->busy_poll ? vhu_ring_poll(st->ring) : vhu_ring_wait(st->ring, timeout_ms);

	return ret == -EINTR ? 0 : ret;
}

static int
ur_run(struct bench_server *s)
{
	struct ustate *st = s->priv;

	while (st->open > 0) {
		int ret = loop_once(st, -1);

		if (ret < 0) {
			snprintf(s->detail, sizeof(s->detail), "%s: %s",
				 st->t->busy_poll ? "vhu_ring_poll" : "vhu_ring_wait",
				 vhu_strerror(ret));
			return ret;
		}
	}
	vhu_ring_get_stats(st->ring, &s->stats);
	s->has_stats = true;
	if (st->err < 0) {
		snprintf(s->detail, sizeof(s->detail), "%s", st->detail);
	}
	return st->err;
}

static void
ur_teardown(struct bench_server *s)
{
	struct ustate *st = s->priv;

	if (st && st->ring) {
		vhu_ring_destroy(st->ring);
	}
	free(st);
	s->priv = NULL;
}

static void
on_accept(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx)
{
	struct ustate *st = ctx;
	struct uconn *uc = calloc(1, sizeof(*uc));

	(void)l;
	st->open++;
	st->accepted++;
	if (uc == NULL) {
		vhu_conn_close_reason(conn, -ENOMEM);
		uc = &st->all;	/* on_close still comes; nothing is freed for it */
	} else {
		uc->st = st;
		uc->k = &uc->own;
		bench_conn_begin(&uc->cs, st->accepted, CLOCK_PROCESS_CPUTIME_ID);
	}
	vhu_conn_set_ctx(conn, uc);
}

static int
ur_listen(const struct bench_transport *t, const char *path, unsigned int exit_after)
{
	struct ustate st = { .t = t, .listening = true };
	struct vhu_ulistener_opts lo = {
		.path = path,
		.unlink_stale = true,
		.ops = conn_ops,
		.ctx = &st,
		.on_accept = on_accept,
	};
	struct vhu_ulistener *l;
	char detail[200];
	int ret;

	st.all.st = &st;
	st.all.k = &st.all.own;
	ret = make_ring(t, 0, &st.ring, detail, sizeof(detail));
	if (ret < 0) {
		fprintf(stderr, "vhu-bench: %s\n", detail);
		return ret;
	}
	conn_opts(t, LISTEN_DEPTH, &lo.conn);
	ret = vhu_ring_listen(st.ring, &lo, &l);
	if (ret < 0) {
		fprintf(stderr, "vhu-bench: --listen %s: %s\n", path, vhu_strerror(ret));
		vhu_ring_destroy(st.ring);
		return ret;
	}
	bench_listen_ready(path, t->name);
	while (!bench_listen_stopping() && (exit_after == 0 || st.closed < exit_after)) {
		/* a bounded wait, so that a signal is noticed */
		ret = loop_once(&st, 200);
		if (ret < 0) {
			fprintf(stderr, "vhu-bench: %s\n", vhu_strerror(ret));
			break;
		}
	}
	vhu_ulistener_close(l);
	vhu_ring_destroy(st.ring);
	return ret < 0 ? ret : 0;
}

const struct bench_server_ops bench_server_uring = {
	.setup = ur_setup,
	.run = ur_run,
	.teardown = ur_teardown,
	.listen = ur_listen,
};
