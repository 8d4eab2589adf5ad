/* SPDX-License-Identifier: MIT */
/**
 * \file
 * vhu-bench's command line: scenario and transport names, options,
 * parsing and usage text. No side effects beyond the options struct.
 */
#ifndef VHU_BENCH_CLI_H
#define VHU_BENCH_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum bench_scenario_id {
	BENCH_SC_RT,	 /**< one request in flight: round trips and latency */
	BENCH_SC_PIPE,	 /**< depth requests in flight: messages per second */
	BENCH_SC_ONEWAY, /**< messages without replies, per payload size: msgs/s, MB/s */
	BENCH_SC_FDS,	 /**< requests carrying fds, with replies, per fd count */
	BENCH_SC_CONNS,	 /**< depth requests in flight spread over N connections */
	BENCH_NSCENARIOS,
};

/** Built-in transports, in the order they run and print (baselines first and last). */
enum bench_transport_id {
	BENCH_TR_BLOCKING,
	BENCH_TR_URING_EXACT,
	BENCH_TR_URING_STREAM,
	BENCH_TR_URING_EXACT_SPIN,
	BENCH_TR_URING_STREAM_SPIN,
	BENCH_TR_URING_EXACT_POLL,
	BENCH_TR_URING_STREAM_POLL,
	BENCH_TR_RAW,
	BENCH_TR_RAW_POLL,
	BENCH_NTRANSPORTS,
};

extern const char *const bench_scenario_names[BENCH_NSCENARIOS];
extern const char *const bench_transport_names[BENCH_NTRANSPORTS];

#define BENCH_DEF_REPS		5u
#define BENCH_DEF_DURATION_MS	200u
#define BENCH_DEF_WARMUP_MS	100u
#define BENCH_DEF_DEPTH		256u
/*
 * Requests in flight at most. The blocking server replies one message per
 * sendmsg, and blocks once a few hundred unread replies fill the client's
 * socket; there is no deadlock because the client's requests of a refill go
 * in one send that fits the server's socket, so the client always goes on
 * to read. 4096 keeps those requests (48 KiB) well within it.
 */
#define BENCH_MAX_DEPTH		4096u
/** Values of one scenario parameter (sizes, fd counts, connection counts). */
#define BENCH_MAX_PARAMS	8u
/** Largest oneway payload (the SET_CONFIG config space). */
#define BENCH_MAX_PAYLOAD	4096u
/** Most fds on one fds-scenario message (SET_MEM_TABLE's 8 regions). */
#define BENCH_MAX_MSG_FDS	8u
/** Most connections of the conns scenario. */
#define BENCH_MAX_CONNS		512u
/** Most --connect targets. */
#define BENCH_MAX_TARGETS	8u

/** A list of parameter values, in the order given. */
struct bench_params {
	unsigned int v[BENCH_MAX_PARAMS];
	unsigned int n;
};

/** An outside back-end measured with --connect [NAME=]PATH. */
struct bench_target {
	char name[24];		/**< transport name in the output (NAME, or "connect:N") */
	char path[108];		/**< socket path (sun_path) */
};

struct bench_opts {
	uint32_t scenarios;	/**< bit per enum bench_scenario_id */
	uint32_t transports;	/**< bit per enum bench_transport_id */
	bool baselines;		/**< add blocking and raw so every ratio exists */
	unsigned int reps;
	unsigned int duration_ms;	/**< per repetition (when count is 0) */
	uint64_t count;		/**< messages per repetition; 0: use duration_ms */
	unsigned int warmup_ms;
	unsigned int depth;	/**< pipe and conns: requests in flight in all */
	struct bench_params sizes;	/**< oneway payload sizes */
	struct bench_params nfds;	/**< fds per message in the fds scenario */
	struct bench_params conns;	/**< connection counts of the conns scenario */
	struct bench_target targets[BENCH_MAX_TARGETS];
	unsigned int ntargets;
	const char *listen;	/**< --listen PATH: serve instead of measuring */
	unsigned int exit_after;	/**< --listen: stop once this many closed; 0: never */
	const char *plot;	/**< --plot FILE (PNG) */
	int cpu_client;		/**< -1: choose */
	int cpu_server;		/**< -1: choose */
	bool json;
	bool quick;
	bool help;
	bool version;
};

/** Defaults: every scenario and built-in transport, 5 x 200 ms, depth 256. */
void bench_opts_default(struct bench_opts *o);

/**
 * Parse argv into o (which starts from the defaults). Leaves stdio alone.
 * \param err  receives a one-line message on failure.
 * \return 0, or -EINVAL with err set.
 */
int bench_opts_parse(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen);

/** Print --help. */
void bench_usage(FILE *f, const char *prog);

#endif
