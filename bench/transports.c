/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "peer.h"

/* The transport table: which client and server make each transport. */
static const struct bench_transport transports[BENCH_NTRANSPORTS] = {
	[BENCH_TR_BLOCKING] = {
		.id = BENCH_TR_BLOCKING,
		.client = &bench_client_endpoint,
		.server = &bench_server_blocking,
	},
	[BENCH_TR_URING_EXACT] = {
		.id = BENCH_TR_URING_EXACT,
		.client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_EXACT,
	},
	[BENCH_TR_URING_STREAM] = {
		.id = BENCH_TR_URING_STREAM,
		.client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_STREAM,
	},
	[BENCH_TR_URING_EXACT_POLL] = {
		.id = BENCH_TR_URING_EXACT_POLL,
		.client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_EXACT,
		.busy_poll = true,
	},
	[BENCH_TR_URING_STREAM_POLL] = {
		.id = BENCH_TR_URING_STREAM_POLL,
		.client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_STREAM,
		.busy_poll = true,
	},
	[BENCH_TR_RAW] = {
		.id = BENCH_TR_RAW,
		.client = &bench_client_raw,
		.server = &bench_server_raw,
	},
};

const struct bench_transport *
bench_transport_get(enum bench_transport_id id)
{
	return &transports[id];
}

void
bench_fill_requests(uint8_t *buf, unsigned int n)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);

	for (unsigned int i = 0; i < n; i++) {
		memcpy(buf + (size_t)i * BENCH_REQ_SIZE, &h, sizeof(h));
	}
}

void
bench_fill_replies(uint8_t *buf, unsigned int n)
{
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, sizeof(uint64_t));
	uint64_t features = BENCH_FEATURES;

	for (unsigned int i = 0; i < n; i++) {
		uint8_t *p = buf + (size_t)i * BENCH_REPLY_SIZE;

		memcpy(p, &h, sizeof(h));
		memcpy(p + sizeof(h), &features, sizeof(features));
	}
}

_Static_assert(sizeof(struct vhu_hdr) == BENCH_REQ_SIZE, "request is a bare header");
_Static_assert(sizeof(struct vhu_hdr) + sizeof(uint64_t) == BENCH_REPLY_SIZE, "reply is a u64");
