/* SPDX-License-Identifier: MIT */
/*
 * The baseline server: the lib/ endpoint in a plain loop, as the seed
 * serves a connection. Header and body are separate recvmsg calls; the
 * reply is one send_message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "peer.h"

static const struct vhu_rules server_rules = {
	.channel = VHU_CHAN_FRONTEND,
	.expect = VHU_EXPECT_REQUEST,
};

static int
blk_setup(struct bench_server *s, int fd)
{
	int ret = vhu_endpoint_from_fd(fd, &server_rules, &s->ep);

	if (ret < 0) {
		snprintf(s->detail, sizeof(s->detail), "vhu_endpoint_from_fd: %s",
			 vhu_strerror(ret));
	}
	return ret;
}

static int
blk_run(struct bench_server *s)
{
	const struct vhu_hdr reply = vhu_hdr_reply(VHU_REQ_GET_FEATURES, sizeof(uint64_t));
	const uint64_t features = BENCH_FEATURES;
	/* the largest body the default rules let through */
	static uint8_t body[VHU_DEFAULT_MAX_SIZE];
	struct vhu_fds fds;

	vhu_fds_init(&fds);
	for (;;) {
		struct vhu_hdr hdr;
		int ret;

		ret = vhu_endpoint_recv_header(s->ep, &hdr, &fds);
		if (ret == -VHU_EDISCONNECT) {
			return 0;
		}
		if (ret < 0) {
			return ret;
		}
		if (hdr.size) {
			ret = vhu_endpoint_recv_body_bytes(s->ep, &hdr, body, sizeof(body), &fds);
			if (ret < 0) {
				return ret;
			}
		}
		vhu_fds_close(&fds);
		if (hdr.request != VHU_REQ_GET_FEATURES) {
			return -VHU_EREQUEST;
		}
		ret = vhu_endpoint_send_message(s->ep, &reply, &features, sizeof(features),
						NULL, 0);
		if (ret < 0) {
			return ret;
		}
		s->msgs++;
	}
}

static void
blk_teardown(struct bench_server *s)
{
	vhu_endpoint_destroy(s->ep);
	s->ep = NULL;
}

const struct bench_server_ops bench_server_blocking = {
	.setup = blk_setup,
	.run = blk_run,
	.teardown = blk_teardown,
};
