/* SPDX-License-Identifier: MIT */
#include "peer.h"

/*
 * The +spin transports: a waiting server that spins this long before it
 * sleeps, past the 20-40 µs a blocking client takes to answer a reply on
 * this kind of VM (see bench/README.md).
 */
#define BENCH_WAIT_SPIN_US	50u

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
	[BENCH_TR_URING_EXACT_SPIN] = {
		.name = "uring-exact+spin",
		.rt_client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_EXACT,
		.wait_spin_us = BENCH_WAIT_SPIN_US,
		.validate = true,
	},
	[BENCH_TR_URING_STREAM_SPIN] = {
		.name = "uring-stream+spin",
		.rt_client = &bench_client_endpoint,
		.server = &bench_server_uring,
		.recv_mode = VHU_RECV_STREAM,
		.wait_spin_us = BENCH_WAIT_SPIN_US,
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
