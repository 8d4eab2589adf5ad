/* SPDX-License-Identifier: MIT */
/*
 * vhu-bench: every selected case x transport in one run, so that the
 * ratios against the baselines compare figures taken on the same machine
 * state. Output: a table per case, or JSON lines with --json; optionally a
 * plot. With --listen it is a back-end instead, for someone else's client.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cli.h"
#include "listen.h"
#include "plot.h"
#include "report.h"
#include "runner.h"

#define MAX_CASES	(2u + 3u * BENCH_MAX_PARAMS)
#define MAX_TRANSPORTS	(BENCH_NTRANSPORTS + BENCH_MAX_TARGETS)

struct progress {
	bool on;
	unsigned int index;	/* 1-based, of total */
	unsigned int total;
};

static void
show_progress(void *ctx, const char *label, const char *transport, unsigned int rep,
	      unsigned int reps)
{
	struct progress *p = ctx;

	if (!p->on) {
		return;
	}
	if (rep == 0) {
		fprintf(stderr, "\r\033[K[%u/%u] %s %s: warm-up", p->index, p->total, label,
			transport);
	} else {
		fprintf(stderr, "\r\033[K[%u/%u] %s %s: repetition %u/%u", p->index, p->total,
			label, transport, rep, reps);
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

/* conns/512 holds over 1024 socket ends at once in the parent: lift the soft limit. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The cases of the selected scenarios, in order. */
static unsigned int
make_cases(const struct bench_opts *o, struct bench_case *cs)
{
	unsigned int n = 0;

	for (int s = 0; s < BENCH_NSCENARIOS; s++) {
		const struct bench_params *p = s == BENCH_SC_ONEWAY ? &o->sizes :
					       s == BENCH_SC_FDS ? &o->nfds :
					       s == BENCH_SC_CONNS ? &o->conns : NULL;
		unsigned int k = p ? p->n : 1;

		if (!(o->scenarios >> s & 1)) {
			continue;
		}
		for (unsigned int i = 0; i < k; i++) {
			cs[n].sc = s;
			cs[n].param = p ? p->v[i] : 0;
			bench_case_label(cs[n].label, sizeof(cs[n].label), bench_scenario_names[s],
					 p != NULL, cs[n].param);
			n++;
		}
	}
	return n;
}

/* The built-in transports selected, then the --connect targets. */
static unsigned int
make_transports(const struct bench_opts *o, struct bench_transport *tt)
{
	unsigned int n = 0;

	for (int t = 0; t < BENCH_NTRANSPORTS; t++) {
		if (o->transports >> t & 1) {
			tt[n++] = *bench_transport_get(t);
		}
	}
	for (unsigned int i = 0; i < o->ntargets; i++) {
		tt[n++] = (struct bench_transport){
			.name = o->targets[i].name,
			.rt_client = &bench_client_endpoint,
			.validate = true,
			.path = o->targets[i].path,
		};
	}
	return n;
}

static int
listen_main(const struct bench_opts *o, const struct bench_run_info *info)
{
	const struct bench_transport *t = NULL;
	cpu_set_t set;

	for (int i = 0; i < BENCH_NTRANSPORTS; i++) {
		if (o->transports >> i & 1) {
			t = bench_transport_get(i);
		}
	}
	CPU_ZERO(&set);
	CPU_SET(info->cpu_server, &set);
	if (o->cpu_client >= 0 && sched_setaffinity(0, sizeof(set), &set) < 0) {
		fprintf(stderr, "vhu-bench: pinning to CPU %d: %s\n", info->cpu_server,
			strerror(errno));
		return 2;
	}
	bench_listen_signals();
	return t->server->listen(t, o->listen, o->exit_after) < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct bench_case cases[MAX_CASES];
	struct bench_transport tt[MAX_TRANSPORTS];
	struct bench_run_info info = { 0 };
	struct progress prog = { 0 };
	struct bench_plan plan = { .info = &info, .progress = show_progress,
				   .progress_ctx = &prog };
	struct bench_result *res;
	struct bench_opts o;
	struct utsname un;
	unsigned int ncases, ntr;
	char err[200];
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
	raise_fd_limit();
	if (o.listen) {
		return listen_main(&o, &info);
	}
	info.reps = o.reps;
	info.duration_ms = o.count ? 0 : o.duration_ms;
	info.count = o.count;
	info.warmup_ms = o.warmup_ms;
	info.ntargets = o.ntargets;
	if (uname(&un) == 0) {
		snprintf(info.kernel, sizeof(info.kernel), "%s", un.release);
	}
	plan.depth = o.depth;
	ncases = make_cases(&o, cases);
	ntr = make_transports(&o, tt);
	res = calloc((size_t)ncases * ntr, sizeof(*res));
	if (res == NULL) {
		fprintf(stderr, "vhu-bench: out of memory\n");
		return 2;
	}
	prog.on = isatty(STDERR_FILENO);
	prog.total = ncases * ntr;
	if (!o.json) {
		bench_print_header(stdout, &info);
		fflush(stdout);
	}
	for (unsigned int c = 0; c < ncases; c++) {
		for (unsigned int t = 0; t < ntr; t++) {
			prog.index = (unsigned int)n + 1;
			bench_run_one(&plan, &cases[c], &tt[t], &res[n]);
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
	for (unsigned int c = 0; !o.json && c < ncases; c++) {
		bench_print_table(stdout, res, n, cases[c].label);
	}
	fflush(stdout);
	if (o.plot && bench_plot(o.plot, &info, res, n, err, sizeof(err)) < 0) {
		fprintf(stderr, "vhu-bench: --plot %s: %s\n", o.plot, err);
		status = 1;
	}
	free(res);
	return status;
}
