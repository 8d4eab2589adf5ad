/* SPDX-License-Identifier: MIT */
#include "peer.h"

/* The transport table: which client and server make each built-in transport. */
static const struct bench_transport transports[BENCH_NTRANSPORTS] = {
	[BENCH_TR_BLOCKING] = {
		.name = "blocking",
		.rt_client = &bench_client_endpoint,
		.server = &bench_server_blocking,
		.validate = true,
	},
	[BENCH_TR_URING_EXACT] = {
		.name = "uring-exact",
		.rt_client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_EXACT,
		.validate = true,
	},
	[BENCH_TR_URING_STREAM] = {
		.name = "uring-stream",
		.rt_client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_STREAM,
		.validate = true,
	},
	[BENCH_TR_URING_EXACT_POLL] = {
		.name = "uring-exact+poll",
		.rt_client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_EXACT,
		.busy_poll = true,
		.validate = true,
	},
	[BENCH_TR_URING_STREAM_POLL] = {
		.name = "uring-stream+poll",
		.rt_client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_STREAM,
		.busy_poll = true,
		.validate = true,
	},
	[BENCH_TR_RAW] = {
		.name = "raw",
		.rt_client = &bench_client_raw,
		.server = &bench_server_raw,
	},
	[BENCH_TR_RAW_POLL] = {
		.name = "raw+poll",
		.rt_client = &bench_client_raw,
		.server = &bench_server_raw,
		.busy_poll = true,
	},
};

const struct bench_transport *
bench_transport_get(enum bench_transport_id id)
{
	return &transports[id];
}
