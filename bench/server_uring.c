/* SPDX-License-Identifier: MIT */
/*
 * The engine server: one vhu_ring with the server end of the socket
 * attached, replying from on_message with vhu_conn_send. It waits in
 * vhu_ring_wait(), or, for the +poll transports, spins on vhu_ring_poll()
 * with a ring set up for busy polling.
 */
#include <stdio.h>
#include <unistd.h>

#include "peer.h"

static void
queue_owed(struct bench_server *s)
{
	const struct vhu_hdr reply = vhu_hdr_reply(VHU_REQ_GET_FEATURES, sizeof(uint64_t));
	const uint64_t features = BENCH_FEATURES;

	while (s->owed && !s->closed) {
		int ret = vhu_conn_send(s->conn, &reply, &features, sizeof(features), NULL, 0,
					NULL, 0);

		if (ret == -VHU_EQFULL) {
			return;
		}
		if (ret < 0) {
			vhu_conn_close_reason(s->conn, ret);
			return;
		}
		s->owed--;
		s->msgs++;
	}
}

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct bench_server *s = ctx;

	if (msg->hdr.request != VHU_REQ_GET_FEATURES) {
		return -VHU_EREQUEST;
	}
	/* a full send queue is backpressure: the reply waits for the next turn */
	s->owed++;
	queue_owed(s);
	return 0;
}

static void
on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct bench_server *s = ctx;

	s->closed = true;
	s->close_reason = reason;
	s->conn = NULL;
}

static const struct vhu_conn_ops conn_ops = {
	.on_message = on_message,
	.on_close = on_close,
};

static int
ur_setup(struct bench_server *s, int fd)
{
	struct vhu_ring_opts ropts = {
		.max_conns = 1,
		.busy_poll = s->t->busy_poll,
	};
	struct vhu_conn_opts copts = {
		.recv_mode = s->t->recv_mode,
		.rules = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST },
		/* room for every reply the client can have outstanding */
		.sendq_msgs = s->depth > 256 ? s->depth : 256,
		.sendq_bytes = s->depth * BENCH_REPLY_SIZE * 2 > 65536 ?
			       s->depth * BENCH_REPLY_SIZE * 2 : 65536,
	};
	int ret;

	ret = vhu_ring_create(&ropts, &s->ring);
	if (ret < 0) {
		snprintf(s->detail, sizeof(s->detail), "vhu_ring_create: %s (%s)",
			 vhu_strerror(ret), vhu_ring_error_hint(ret));
		close(fd);
		s->ring = NULL;
		return ret;
	}
	ret = vhu_conn_attach(s->ring, fd, &copts, &conn_ops, s, &s->conn);
	if (ret < 0) {
		snprintf(s->detail, sizeof(s->detail), "vhu_conn_attach: %s", vhu_strerror(ret));
		vhu_ring_destroy(s->ring);
		s->ring = NULL;
		s->conn = NULL;
		return ret;
	}
	return 0;
}

static int
ur_run(struct bench_server *s)
{
	while (!s->closed) {
		int ret = s->t->busy_poll ? vhu_ring_poll(s->ring) : vhu_ring_wait(s->ring, -1);

		if (ret < 0 && ret != -EINTR) {
			snprintf(s->detail, sizeof(s->detail), "%s: %s",
				 s->t->busy_poll ? "vhu_ring_poll" : "vhu_ring_wait",
				 vhu_strerror(ret));
			return ret;
		}
		queue_owed(s);
	}
	vhu_ring_get_stats(s->ring, &s->stats);
	s->has_stats = true;
	if (s->close_reason == -VHU_EDISCONNECT) {
		return 0;
	}
	snprintf(s->detail, sizeof(s->detail), "connection closed: %s",
		 vhu_strerror(s->close_reason));
	return s->close_reason ? s->close_reason : -VHU_EPARTIAL;
}

static void
ur_teardown(struct bench_server *s)
{
	if (s->ring) {
		vhu_ring_destroy(s->ring);
		s->ring = NULL;
		s->conn = NULL;
	}
}

const struct bench_server_ops bench_server_uring = {
	.setup = ur_setup,
	.run = ur_run,
	.teardown = ur_teardown,
};
