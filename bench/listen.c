/* SPDX-License-Identifier: MIT */
#include "listen.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/signals.h"
#include "report.h"

void
bench_listen_signals(void)
{
	tool_signals_install();
}

bool
bench_listen_stopping(void)
{
	return tool_stop_signal() != 0;
}

void
bench_listen_ready(const char *path, const char *transport)
{
	printf("vhu-bench: serving %s with %s (a line per connection when it closes; "
	       "Ctrl-C stops)\n", path, transport);
	fflush(stdout);
}

void
bench_conn_begin(struct bench_conn_stat *cs, unsigned int id, clockid_t clock)
{
	cs->id = id;
	cs->clock = clock;
	cs->t0_ns = bench_now_ns();
	cs->cpu0_ns = (uint64_t)tool_clock_ns(clock);
	cs->allocs0 = bench_allocs();
}

void
bench_conn_end(const struct bench_conn_stat *cs, const char *transport,
	       const struct bench_counts *k, int err, const char *detail)
{
	double secs = (double)(bench_now_ns() - cs->t0_ns) / 1e9;
	double n = k->msgs ? (double)k->msgs : 1.0;
	char rate[16], cpu[16], allocs[40] = "", fault[160] = "";

	bench_fmt_rate(rate, sizeof(rate), secs > 0 ? (double)k->msgs / secs : 0);
	bench_fmt_us(cpu, sizeof(cpu), (double)((uint64_t)tool_clock_ns(cs->clock) - cs->cpu0_ns) / n);
	if (bench_allocs_counted()) {
		snprintf(allocs, sizeof(allocs), ", %.2g allocs/msg",
			 (double)(bench_allocs() - cs->allocs0) / n);
	}
	if (err < 0) {
		snprintf(fault, sizeof(fault), "; failed: %s",
			 detail && *detail ? detail : vhu_strerror(err));
	}
	/* one printf: lines of connections closing at once do not interleave */
	printf("conn %u (%s): %llu requests, %llu replies, %llu fds in %.3f s: %s msgs/s, "
	       "%s CPU %s us/msg%s%s\n", cs->id, transport, (unsigned long long)k->msgs,
	       (unsigned long long)k->replies, (unsigned long long)k->fds, secs, rate,
	       cs->clock == CLOCK_THREAD_CPUTIME_ID ? "its thread's" : "server", cpu, allocs,
	       fault);
	fflush(stdout);
}
