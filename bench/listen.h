/* SPDX-License-Identifier: MIT */
/**
 * \file
 * --listen: vhu-bench as the back-end of someone else's front-end. The
 * servers' listen operations share this: signals, and the line printed for
 * each connection when it closes (what it sent, how fast, at what cost).
 */
#ifndef VHU_BENCH_LISTEN_H
#define VHU_BENCH_LISTEN_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "peer.h"

/** One served connection. */
struct bench_conn_stat {
	unsigned int id;	/**< 1, 2, ... in accept order */
	clockid_t clock;	/**< whose CPU time: the thread's or the process's */
	uint64_t t0_ns;
	uint64_t cpu0_ns;
	uint64_t allocs0;
};

/** Catch SIGINT and SIGTERM (without SA_RESTART, so a blocked accept returns). */
void bench_listen_signals(void);

/** True once SIGINT or SIGTERM arrived. */
bool bench_listen_stopping(void);

/** Say on stdout that the back-end is up. */
void bench_listen_ready(const char *path, const char *transport);

/** A connection was accepted; clock says whose CPU time its line reports. */
void bench_conn_begin(struct bench_conn_stat *cs, unsigned int id, clockid_t clock);

/**
 * The connection closed after counts k with err (0, or why it failed):
 * print its line on stdout. Called where cs->clock is measured (the same
 * thread, for a thread clock).
 */
void bench_conn_end(const struct bench_conn_stat *cs, const char *transport,
		    const struct bench_counts *k, int err, const char *detail);

#endif
