/* SPDX-License-Identifier: MIT */
/*
 * What each case sends, and what every vhost-user bench server does with
 * a request: the one place that decides request bytes, replies and the fd
 * identity probe, so that all servers are measured doing the same work.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

const struct vhu_rules bench_server_rules = {
	.channel = VHU_CHAN_FRONTEND,
	.expect = VHU_EXPECT_REQUEST,
	.max_size = BENCH_MAX_SIZE,
};

bool
bench_scenario_has_param(enum bench_scenario_id sc)
{
	return sc == BENCH_SC_ONEWAY || sc == BENCH_SC_FDS || sc == BENCH_SC_CONNS;
}

static void
put_msg(struct bench_traffic *tr, uint32_t request, bool need_reply, const void *body,
	uint32_t len)
{
	struct vhu_hdr h = vhu_hdr_request(request, len, need_reply);

	tr->request = request;
	memcpy(tr->msg, &h, sizeof(h));
	if (len) {
		memcpy(tr->msg + sizeof(h), body, len);
	}
	tr->msg_len = (uint32_t)sizeof(h) + len;
}

static void
mem_table(struct bench_traffic *tr, unsigned int n)
{
	struct vhu_mem_table t;

	memset(&t, 0, sizeof(t));
	t.nregions = n;
	for (unsigned int i = 0; i < n; i++) {
		/* 1 MiB apart, 4 KiB each: valid, non-overlapping regions */
		t.regions[i].guest_phys_addr = (uint64_t)i << 20;
		t.regions[i].size = 4096;
		t.regions[i].user_addr = UINT64_C(0x7f0000000000) + ((uint64_t)i << 20);
	}
	put_msg(tr, VHU_REQ_SET_MEM_TABLE, true, &t, VHU_MEM_TABLE_SIZE(n));
}

static void
set_config(struct bench_traffic *tr, unsigned int payload)
{
	uint8_t body[BENCH_MAX_BODY];
	struct vhu_config c = { .offset = 0, .size = payload, .flags = 0 };

	memcpy(body, &c, VHU_CONFIG_HDR_SIZE);
	for (unsigned int i = 0; i < payload; i++) {
		body[VHU_CONFIG_HDR_SIZE + i] = (uint8_t)(i * 7 + 1);
	}
	put_msg(tr, VHU_REQ_SET_CONFIG, false, body, VHU_CONFIG_HDR_SIZE + payload);
}

void
bench_traffic_init(struct bench_traffic *tr, enum bench_scenario_id sc, unsigned int param,
		   unsigned int depth)
{
	memset(tr, 0, sizeof(*tr));
	tr->sc = sc;
	tr->param = param;
	tr->nconns = 1;
	tr->depth = depth;
	switch (sc) {
	case BENCH_SC_RT:
		tr->depth = 1;
		/* fall through */
	case BENCH_SC_PIPE:
		put_msg(tr, VHU_REQ_GET_FEATURES, false, NULL, 0);
		break;
	case BENCH_SC_ONEWAY:
		tr->depth = 0;
		if (param == 0) {
			put_msg(tr, VHU_REQ_SET_OWNER, false, NULL, 0);
		} else {
			set_config(tr, param);
		}
		break;
	case BENCH_SC_FDS: {
		uint64_t index = 0;

		tr->depth = depth < BENCH_FDS_DEPTH ? depth : BENCH_FDS_DEPTH;
		tr->nfds = param;
		if (param == 1) {
			put_msg(tr, VHU_REQ_SET_VRING_CALL, true, &index, sizeof(index));
		} else {
			mem_table(tr, param);
		}
		break;
	}
	case BENCH_SC_CONNS:
		tr->nconns = param;
		tr->depth = depth / param ? depth / param : 1;
		put_msg(tr, VHU_REQ_GET_FEATURES, false, NULL, 0);
		break;
	case BENCH_NSCENARIOS:
		break;
	}
}

int
bench_send_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void
bench_fill_requests(const struct bench_traffic *tr, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memcpy(buf + i * tr->msg_len, tr->msg, tr->msg_len);
	}
}

static void
reply_u64(uint8_t reply[BENCH_REPLY_SIZE], uint32_t request, uint64_t v)
{
	struct vhu_hdr h = vhu_hdr_reply(request, sizeof(v));

	memcpy(reply, &h, sizeof(h));
	memcpy(reply + sizeof(h), &v, sizeof(v));
}

int
bench_serve(struct bench_counts *k, const struct vhu_hdr *hdr, const int *fds,
	    unsigned int nfds, uint8_t reply[BENCH_REPLY_SIZE])
{
	k->msgs++;
	if (nfds) {
		k->fds += nfds;
		if (k->fd_msgs++ % BENCH_PROBE_EVERY == 0) {
			const uint64_t one = 1;

			for (unsigned int i = 0; i < nfds; i++) {
				if (write(fds[i], &one, sizeof(one)) != (ssize_t)sizeof(one)) {
					return -VHU_EFDS;
				}
			}
			k->probes++;
		}
	}
	switch (hdr->request) {
	case VHU_REQ_GET_FEATURES:
		reply_u64(reply, hdr->request, BENCH_FEATURES);
		break;
	case VHU_REQ_GET_PROTOCOL_FEATURES:
		reply_u64(reply, hdr->request, BENCH_PROTOCOL_FEATURES);
		break;
	default:
		if (!(hdr->flags & VHU_FLAG_NEED_REPLY)) {
			return 0;
		}
		reply_u64(reply, hdr->request, 0);
		break;
	}
	k->replies++;
	return 1;
}
