/* SPDX-License-Identifier: MIT */
/*
 * The rt client of every vhost-user transport: the lib/ endpoint used as
 * the seed uses it. Each request goes out with send_header; each reply
 * comes in as two recvmsg calls, recv_header then recv_body_bytes, and is
 * validated by both.
 */
#include <errno.h>
#include <unistd.h>

#include "peer.h"

/* A front-end on the main socket: it receives replies. */
static const struct vhu_rules client_rules = {
	.channel = VHU_CHAN_FRONTEND,
	.expect = VHU_EXPECT_REPLY,
};

static int
ep_open(struct bench_client *c)
{
	int ret;

	vhu_fds_init(&c->rfds);
	ret = vhu_endpoint_from_fd(c->fds[0], &client_rules, &c->ep);
	c->fds[0] = -1;	/* the endpoint owns it, also on failure */
	return ret;
}

static int
recv_reply(struct bench_client *c)
{
	struct vhu_hdr hdr;
	uint64_t features;
	int ret;

	ret = vhu_endpoint_recv_header(c->ep, &hdr, &c->rfds);
	if (ret < 0) {
		return ret;
	}
	ret = vhu_endpoint_recv_body_bytes(c->ep, &hdr, &features, sizeof(features), &c->rfds);
	if (ret < 0) {
		return ret;
	}
	if (c->rfds.n != 0) {
		vhu_fds_close(&c->rfds);
		return -VHU_EFDS;
	}
	/* an outside back-end answers with its own features */
	if (hdr.request != VHU_REQ_GET_FEATURES || hdr.size != sizeof(features) ||
	    (!c->foreign && features != BENCH_FEATURES)) {
		return -VHU_EREPLY;
	}
	c->replies++;
	return 0;
}

static int
ep_rt(struct bench_client *c, struct bench_window *w)
{
	const struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	uint64_t t0 = bench_now_ns();

	for (;;) {
		uint64_t t1;
		int ret;

		ret = vhu_endpoint_send_header(c->ep, &req, NULL, 0);
		if (ret < 0) {
			return ret;
		}
		c->sent++;
		ret = recv_reply(c);
		if (ret < 0) {
			return ret;
		}
		t1 = bench_now_ns();
		if (w->nsamples < w->cap) {
			w->samples[w->nsamples++] = t1 - t0;
		}
		w->msgs++;
		if (bench_window_done(w, t1)) {
			return 0;
		}
		/* one clock read per round trip: the next starts now */
		t0 = t1;
	}
}

static int
ep_finish(struct bench_client *c)
{
	vhu_fds_close(&c->rfds);
	vhu_endpoint_destroy(c->ep);
	c->ep = NULL;
	return 0;
}

const struct bench_client_ops bench_client_endpoint = {
	.open = ep_open,
	.run = ep_rt,
	.finish = ep_finish,
};
