/* SPDX-License-Identifier: MIT */
/*
 * The blocking client every vhost-user transport but raw is measured with:
 * the lib/ endpoint used as the seed uses it. Requests go out with
 * send_header (rt) or as one batch of back-to-back requests (pipe); each
 * reply comes in as two recvmsg calls, recv_header then recv_body_bytes,
 * and is validated by both.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer.h"

/* A front-end on the main socket: it receives replies. */
static const struct vhu_rules client_rules = {
	.channel = VHU_CHAN_FRONTEND,
	.expect = VHU_EXPECT_REPLY,
};

static int
ep_open(struct bench_client *c, int fd)
{
	int ret;

	vhu_fds_init(&c->fds);
	c->inflight = 0;
	c->reqs = malloc((size_t)c->depth * BENCH_REQ_SIZE);
	if (c->reqs == NULL) {
		close(fd);
		return -ENOMEM;
	}
	bench_fill_requests(c->reqs, c->depth);
	ret = vhu_endpoint_from_fd(fd, &client_rules, &c->ep);
	if (ret < 0) {
		free(c->reqs);
		c->reqs = NULL;
		return ret;
	}
	return 0;
}

static int
recv_reply(struct bench_client *c)
{
	struct vhu_hdr hdr;
	uint64_t features;
	int ret;

	ret = vhu_endpoint_recv_header(c->ep, &hdr, &c->fds);
	if (ret < 0) {
		return ret;
	}
	ret = vhu_endpoint_recv_body_bytes(c->ep, &hdr, &features, sizeof(features), &c->fds);
	if (ret < 0) {
		return ret;
	}
	if (c->fds.n != 0) {
		vhu_fds_close(&c->fds);
		return -VHU_EFDS;
	}
	if (hdr.request != VHU_REQ_GET_FEATURES || hdr.size != sizeof(features) ||
	    features != BENCH_FEATURES) {
		return -VHU_EREPLY;
	}
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
ep_pipe(struct bench_client *c, struct bench_window *w)
{
	for (;;) {
		int ret;

		if (c->depth - c->inflight >= c->batch) {
			unsigned int n = c->depth - c->inflight;
			struct iovec iov = { c->reqs, (size_t)n * BENCH_REQ_SIZE };

			ret = vhu_endpoint_send_all(c->ep, &iov, 1, NULL, 0);
			if (ret < 0) {
				return ret;
			}
			c->inflight += n;
		}
		ret = recv_reply(c);
		if (ret < 0) {
			return ret;
		}
		c->inflight--;
		w->msgs++;
		if (w->count) {
			if (w->msgs >= w->count) {
				return 0;
			}
		} else if ((w->msgs & 31) == 0 && bench_now_ns() >= w->deadline_ns) {
			return 0;
		}
	}
}

static int
ep_finish(struct bench_client *c)
{
	int ret = 0;

	while (c->inflight && ret == 0 && c->ep) {
		ret = recv_reply(c);
		c->inflight--;
	}
	vhu_fds_close(&c->fds);
	vhu_endpoint_destroy(c->ep);
	c->ep = NULL;
	free(c->reqs);
	c->reqs = NULL;
	return ret;
}

const struct bench_client_ops bench_client_endpoint = {
	.open = ep_open,
	.rt = ep_rt,
	.pipe = ep_pipe,
	.finish = ep_finish,
};
