/* SPDX-License-Identifier: MIT */
#include "fdlimit.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>

#include "log.h"

#define CONNS_MAX	(1u << 20)

unsigned long long
tool_fd_budget(unsigned int slots, unsigned int queues)
{
	return slots + 3ull * queues + 1u;
}

int
tool_fit_fd_limit(const char *name, unsigned int slots, unsigned int queues,
		  unsigned int *max_conns)
{
	unsigned long long budget = tool_fd_budget(slots, queues);
	unsigned long long fit;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		return 0;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = { rl.rlim_max, rl.rlim_max };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
			rl = up;
		}
	}
	fit = rl.rlim_cur > TOOL_FD_RESERVE ? (rl.rlim_cur - TOOL_FD_RESERVE) / budget : 0;
	if (fit > CONNS_MAX) {
		fit = CONNS_MAX;
	}
	if (*max_conns == 0) {
		if (fit == 0) {
			fprintf(stderr, "%s: RLIMIT_NOFILE (%llu) leaves no room for one "
				"front-end's %llu fds; raise it (ulimit -n)\n", name,
				(unsigned long long)rl.rlim_cur, budget);
			return -EMFILE;
		}
		*max_conns = (unsigned int)fit;
	} else if (*max_conns > fit) {
		fprintf(stderr, "%s: --max-conns %u needs up to %llu fds (%llu per "
			"front-end with --queues %u), but RLIMIT_NOFILE is %llu: raise it "
			"(ulimit -n) or lower --max-conns to %llu\n", name, *max_conns,
			*max_conns * budget + TOOL_FD_RESERVE, budget, queues,
			(unsigned long long)rl.rlim_cur, fit);
		return -EMFILE;
	}
	tool_log_info("at most %u front-ends, %llu fds each (RLIMIT_NOFILE %llu)", *max_conns,
		      budget, (unsigned long long)rl.rlim_cur);
	return 0;
}
