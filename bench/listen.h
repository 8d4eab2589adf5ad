/* SPDX-License-Identifier: MIT */
/**
 * \file
 * --listen: vhu-bench as the back-end of someone else's front-end. The
 * servers' listen operations share this: signals, and sessions. A session
 * runs from the first connection accepted while none is open to the close
 * of the last one; its figures are printed as one line when it ends.
 */
#ifndef VHU_BENCH_LISTEN_H
#define VHU_BENCH_LISTEN_H

#include <stdbool.h>
#include <stdint.h>

#include "peer.h"

struct bench_session {
	unsigned int index;	/**< sessions ended so far */
	unsigned int conns;	/**< connections of the current one */
	unsigned int open;	/**< of which still open */
	uint64_t t0_ns;
	uint64_t cpu0_ns;
	uint64_t allocs0;
	struct bench_counts k;
	int err;		/**< the first connection error of the session */
	char detail[120];
};

/** Catch SIGINT and SIGTERM (without SA_RESTART, so a blocked accept returns). */
void bench_listen_signals(void);

/** True once SIGINT or SIGTERM arrived. */
bool bench_listen_stopping(void);

/** Say on stdout that the back-end is up. */
void bench_listen_ready(const char *path, const char *transport);

/** A connection was accepted: begins a session if none is open. */
void bench_session_open(struct bench_session *s);

/**
 * A connection closed with counts k (added in, unless the caller counted
 * into s->k directly: pass NULL) and err (0, or why it failed).
 * \return true if that ended the session (its line is printed).
 */
bool bench_session_close(struct bench_session *s, const char *transport,
			 const struct bench_counts *k, int err, const char *detail);

#endif
