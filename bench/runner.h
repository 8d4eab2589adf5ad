/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The runner: one scenario x transport at a time. It connects a socket
 * pair, forks a server and a client process pinned to their CPUs, collects
 * the client's per-repetition figures and the server's totals through
 * pipes, and turns them into a bench_result. It never hangs on a broken
 * transport: a side that stops reporting is killed and the result says so.
 */
#ifndef VHU_BENCH_RUNNER_H
#define VHU_BENCH_RUNNER_H

#include "cli.h"
#include "report.h"

struct bench_plan {
	const struct bench_run_info *info;
	unsigned int depth;	/**< pipe scenario */
	/** Called in the parent as repetitions complete (may be NULL). */
	void (*progress)(void *ctx, const char *scenario, const char *transport,
			 unsigned int rep, unsigned int reps);
	void *progress_ctx;
};

/** Measure one scenario x transport into res (always filled, status says how it went). */
void bench_run_one(const struct bench_plan *plan, enum bench_scenario_id sc,
		   enum bench_transport_id tr, struct bench_result *res);

#endif
