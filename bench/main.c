/* SPDX-License-Identifier: MIT */
/*
 * vhu-bench: every selected scenario x transport in one run, so that the
 * ratios against the baselines compare figures taken on the same machine
 * state. Output: a table, or JSON lines with --json.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cli.h"
#include "report.h"
#include "runner.h"

struct progress {
	bool on;
	unsigned int index;	/* 1-based, of total */
	unsigned int total;
};

static void
show_progress(void *ctx, const char *scenario, const char *transport, unsigned int rep,
	      unsigned int reps)
{
	struct progress *p = ctx;

	if (!p->on) {
		return;
	}
	if (rep == 0) {
		fprintf(stderr, "\r\033[K[%u/%u] %s %s: warm-up", p->index, p->total, scenario,
			transport);
	} else {
		fprintf(stderr, "\r\033[K[%u/%u] %s %s: repetition %u/%u", p->index, p->total,
			scenario, transport, rep, reps);
	}
	fflush(stderr);
}

/* The CPUs this process may run on; pick or check the placement. */
static int
place(struct bench_opts *o, struct bench_run_info *info)
{
	cpu_set_t set;
	int first = -1, second = -1;

	if (sched_getaffinity(0, sizeof(set), &set) < 0) {
		int err = errno;

		fprintf(stderr, "vhu-bench: sched_getaffinity: %s\n", strerror(err));
		return -err;
	}
	info->ncpus = (unsigned int)CPU_COUNT(&set);
	for (int i = 0; i < CPU_SETSIZE; i++) {
		if (!CPU_ISSET(i, &set)) {
			continue;
		}
		if (first < 0) {
			first = i;
		} else if (second < 0) {
			second = i;
		}
	}
	if (o->cpu_client < 0) {
		info->cpu_client = first;
		info->cpu_server = second >= 0 ? second : first;
		return 0;
	}
	if (o->cpu_client >= CPU_SETSIZE || o->cpu_server >= CPU_SETSIZE ||
	    !CPU_ISSET(o->cpu_client, &set) || !CPU_ISSET(o->cpu_server, &set)) {
		fprintf(stderr, "vhu-bench: --cpus %d,%d: not among the CPUs this process "
			"may use\n", o->cpu_client, o->cpu_server);
		return -EINVAL;
	}
	info->cpu_client = o->cpu_client;
	info->cpu_server = o->cpu_server;
	return 0;
}

int
main(int argc, char **argv)
{
	struct bench_result res[BENCH_NSCENARIOS * BENCH_NTRANSPORTS];
	struct bench_run_info info = { 0 };
	struct progress prog = { 0 };
	struct bench_plan plan = { .info = &info, .progress = show_progress,
				   .progress_ctx = &prog };
	struct bench_opts o;
	struct utsname un;
	char err[160];
	size_t n = 0;
	int status = 0;

	if (bench_opts_parse(&o, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "vhu-bench: %s (try --help)\n", err);
		return 2;
	}
	if (o.help) {
		bench_usage(stdout, "vhu-bench");
		return 0;
	}
	if (place(&o, &info) < 0) {
		return 2;
	}
	info.reps = o.reps;
	info.duration_ms = o.count ? 0 : o.duration_ms;
	info.count = o.count;
	info.warmup_ms = o.warmup_ms;
	if (uname(&un) == 0) {
		snprintf(info.kernel, sizeof(info.kernel), "%s", un.release);
	}
	plan.depth = o.depth;
	prog.on = isatty(STDERR_FILENO);
	for (int s = 0; s < BENCH_NSCENARIOS; s++) {
		for (int t = 0; t < BENCH_NTRANSPORTS; t++) {
			if ((o.scenarios >> s & 1) && (o.transports >> t & 1)) {
				prog.total++;
			}
		}
	}
	if (!o.json) {
		bench_print_header(stdout, &info);
		fflush(stdout);
	}
	for (int s = 0; s < BENCH_NSCENARIOS; s++) {
		for (int t = 0; t < BENCH_NTRANSPORTS; t++) {
			if (!(o.scenarios >> s & 1) || !(o.transports >> t & 1)) {
				continue;
			}
			prog.index = (unsigned int)n + 1;
			bench_run_one(&plan, s, t, &res[n]);
			if (res[n].status == BENCH_FAILED) {
				status = 1;
			}
			n++;
		}
	}
	if (prog.on) {
		fprintf(stderr, "\r\033[K");
	}
	bench_compute_ratios(res, n);
	for (size_t i = 0; o.json && i < n; i++) {
		bench_print_json(stdout, &info, &res[i]);
	}
	for (int s = 0; !o.json && s < BENCH_NSCENARIOS; s++) {
		if (o.scenarios >> s & 1) {
			bench_print_table(stdout, res, n, bench_scenario_names[s]);
		}
	}
	return status;
}
