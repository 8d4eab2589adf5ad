/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The runner: one case x transport at a time. It connects socket pairs (or
 * connects to an outside back-end), forks a server and a client process
 * pinned to their CPUs, collects the client's per-repetition figures and
 * both sides' totals through pipes, checks that no message or fd was lost,
 * and turns it all into a bench_result. It never hangs on a broken
 * transport: a side that stops reporting is killed and the result says so.
 */
#ifndef VHU_BENCH_RUNNER_H
#define VHU_BENCH_RUNNER_H

#include "cli.h"
#include "peer.h"
#include "report.h"

/** A scenario with its parameter. */
struct bench_case {
	enum bench_scenario_id sc;
	unsigned int param;
	char label[24];
};

struct bench_plan {
	const struct bench_run_info *info;
	unsigned int depth;	/**< --depth */
	/** Called in the parent as repetitions complete (may be NULL). */
	void (*progress)(void *ctx, const char *label, const char *transport,
			 unsigned int rep, unsigned int reps);
	void *progress_ctx;
};

/** Measure one case x transport into res (always filled, status says how it went). */
void bench_run_one(const struct bench_plan *plan, const struct bench_case *cs,
		   const struct bench_transport *t, struct bench_result *res);

#endif
