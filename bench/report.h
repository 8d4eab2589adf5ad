/* SPDX-License-Identifier: MIT */
/**
 * \file
 * Results of vhu-bench and their output: ratios against the baselines of
 * the same run, the readable table, and JSON lines. Pure formatting: no
 * clock, no sockets.
 */
#ifndef VHU_BENCH_REPORT_H
#define VHU_BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stats.h"

/** Latency percentiles reported, in this order. */
enum bench_lat {
	BENCH_P50,
	BENCH_P90,
	BENCH_P99,
	BENCH_P999,
	BENCH_NLAT,
};

/** The two baselines every figure is compared with. */
enum bench_base {
	BENCH_BASE_BLOCKING,
	BENCH_BASE_RAW,
	BENCH_NBASE,
};

/** Names of the baselines' transports ("blocking", "raw"). */
extern const char *const bench_base_names[BENCH_NBASE];

/** What was measured: the same for every result of a run. */
struct bench_run_info {
	int cpu_client;		/**< CPU the client is pinned to */
	int cpu_server;		/**< CPU the server is pinned to */
	unsigned int ncpus;	/**< CPUs this process may run on */
	unsigned int reps;
	unsigned int duration_ms;	/**< per repetition; 0 when count is used */
	uint64_t count;		/**< messages per repetition; 0 when duration_ms is used */
	unsigned int warmup_ms;
	unsigned int ntargets;	/**< outside back-ends measured (--connect) */
	char kernel[65];	/**< uname release */
};

enum bench_status {
	BENCH_OK = 0,
	/** The transport cannot run here (no io_uring, engine missing, one CPU). */
	BENCH_UNAVAILABLE,
	/** It started and then broke: an error, a crash or a hang (a bug). */
	BENCH_FAILED,
};

/** One case (scenario and its parameter) x transport. Unset figures are NaN. */
struct bench_result {
	const char *scenario;	/**< "rt", "oneway", ... */
	/** The case: the scenario, with its parameter where it has one ("oneway/64"). */
	char label[24];
	/** oneway: payload bytes; fds: fds per message; conns: connections; else 0. */
	unsigned int param;
	const char *transport;
	enum bench_status status;
	/** Why it did not run or broke (when status != BENCH_OK). */
	char reason[320];
	/** FAILED because an outside back-end could not be connected to at all (exit 3). */
	bool connect_failed;
	unsigned int depth;	/**< requests in flight (oneway: 0, none is answered) */
	unsigned int conns;	/**< connections */
	unsigned int msg_bytes;	/**< bytes of one request on the wire */
	uint64_t msgs;		/**< messages counted over the measured repetitions */
	struct bench_summary rate;	/**< messages per second, over repetitions */
	bool has_latency;
	/** Median over repetitions of each repetition's percentile, ns. */
	double lat_ns[BENCH_NLAT];
	double cpu_client_ns;	/**< client user+sys per message */
	double cpu_server_ns;	/**< server user+sys per message */
	double enters_per_msg;	/**< io_uring_enter calls per message (engine servers) */
	double sendmsgs_per_msg;	/**< sendmsg operations per message (engine servers) */
	double allocs_client;	/**< client heap allocations per message, measured reps */
	double allocs_server;	/**< server heap allocations per message, after set-up */
	/** fds scenario: fds that arrived and were checked to be the files sent. */
	uint64_t fds_checked;
	/** rate / baseline rate (> 1: faster). */
	double rate_ratio[BENCH_NBASE];
	/** latency / baseline latency (> 1: slower), per percentile. */
	double lat_ratio[BENCH_NBASE][BENCH_NLAT];
	/** (client + server CPU per message) / the baseline's (> 1: costlier). */
	double cpu_ratio[BENCH_NBASE];
};

/** What both sides counted over a whole case, warm-up included. */
struct bench_totals {
	uint64_t sent;		/**< client: requests sent */
	uint64_t replies;	/**< client: replies received */
	bool want_replies;	/**< every request gets one */
	unsigned int nfds;	/**< fds per request */
	/** client: each eventfd's counter at the end (how often the server wrote to it) */
	uint64_t counters[8];
	bool has_server;	/**< false for an outside back-end */
	uint64_t srv_msgs;	/**< server: requests received */
	uint64_t srv_fds;	/**< server: fds received */
	uint64_t srv_probes;	/**< server: requests whose fds it wrote to */
};

/**
 * Did every request, reply and fd arrive, and were the fds the files sent?
 * Marks res BENCH_FAILED with a reason that names the loss if not; on
 * success sets res->fds_checked to the fds that arrived.
 */
void bench_check_totals(struct bench_result *res, const struct bench_totals *t);

/** Set every figure of a result to "not measured". */
void bench_result_init(struct bench_result *r, const char *scenario, const char *transport);

/** The case label of a scenario and its parameter ("rt", "oneway/64"). */
void bench_case_label(char *buf, size_t len, const char *scenario, bool has_param,
		      unsigned int param);

/**
 * Fill the ratio fields of every result from the baselines of the same
 * scenario in the same array. A ratio whose baseline is absent, failed, or
 * zero stays NaN.
 */
void bench_compute_ratios(struct bench_result *res, size_t n);

/**
 * A ratio with a trailing x: two significant digits below 1 ("0.87x",
 * "0.0046x"), three from 1 up ("1.00x", "12.3x", "250x"); "-" for NaN or
 * infinity. \return the length written (snprintf rules).
 */
int bench_fmt_ratio(char *buf, size_t len, double ratio);

/** Rate with an SI suffix: 950, 52.1k, 1.23M; "-" for NaN. */
int bench_fmt_rate(char *buf, size_t len, double rate);

/** Nanoseconds as microseconds with 3 significant figures ("18.2"); "-" for NaN. */
int bench_fmt_us(char *buf, size_t len, double ns);

/** The run header: placement, kernel, method. */
void bench_print_header(FILE *f, const struct bench_run_info *info);

/**
 * The table of one case (by label): a line saying what was sent, a row of
 * figures per transport, then a row of ratios against each baseline (not
 * for the baseline itself).
 */
void bench_print_table(FILE *f, const struct bench_result *res, size_t n, const char *label);

/** One JSON object on one line, with every field (null for unset figures). */
void bench_print_json(FILE *f, const struct bench_run_info *info, const struct bench_result *r);

#endif
